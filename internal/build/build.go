// Package build builds a Containerfile once per platform with buildah, used as
// a library, into a containers/storage store. It knows nothing of registries
// beyond pulling base images; publishing is internal/publish's job.
package build

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/buildah/define"
	"go.podman.io/buildah/imagebuildah"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"golang.org/x/sys/unix"

	"github.com/mcbuild/mcbuild/internal/choice"
	"github.com/mcbuild/mcbuild/internal/oci"
)

// Options describe one build; the same Options are used for every platform.
type Options struct {
	// ContextDir is the build context; Containerfile is an absolute path
	// (see ResolveContainerfile).
	ContextDir    string
	Containerfile string
	Args          map[string]string
	Labels        []string // KEY=VALUE
	Annotations   []string // KEY=VALUE
	Target        string
	// SourceDateEpoch pins every timestamp (config, history and layer
	// contents), so the same inputs give the same digests.
	SourceDateEpoch *time.Time
	// Isolation is "chroot" (default; needs no OCI runtime) or "oci".
	Isolation string
	// Secrets are buildah --secret specs (id=ID,src=PATH or id=ID,env=VAR).
	Secrets []string
	// Env is KEY=VALUE pairs set at the start of every stage, as buildah's
	// --env: RUN steps see them and the image's config keeps them.
	Env []string
	// Network is how RUN steps reach the network: "host" (default; the
	// host's network namespace) or "none" (a namespace of their own with
	// only loopback; see Networks). Base images are pulled either way.
	Network Network
	// ProxyToRun passes mcbuild's HTTP_PROXY, HTTPS_PROXY and NO_PROXY (and
	// their lower-case forms) to RUN steps, as buildah's --http-proxy does.
	ProxyToRun bool
	// BuildUnusedStages builds the stages the target does not depend on
	// too (buildah's --skip-unused-stages=false); by default they are
	// skipped.
	BuildUnusedStages bool
	// Provenance adds the labels and annotations that say where the image
	// came from (source, revision, expiry; Konflux's set).
	Provenance Provenance
	// SystemContext carries registry auth and TLS settings for pulling bases.
	SystemContext *types.SystemContext
	// TmpDir holds buildah's scratch mounts; a private one means a crash
	// leaves nothing in the shared /var/tmp.
	TmpDir string
	// Log receives the build's step-by-step output.
	Log io.Writer
}

// Image is the result of building for one platform.
type Image struct {
	ID       string
	Platform ocispec.Platform
}

// Isolations lists the accepted Options.Isolation values.
var Isolations = []string{"chroot", "oci"}

func parseIsolation(s string) (define.Isolation, error) {
	switch s {
	case "", "chroot":
		return define.IsolationChroot, nil
	case "oci":
		return define.IsolationOCI, nil
	}
	_, err := choice.Parse("isolation", s, Isolations)
	return 0, err
}

// ResolveContainerfile finds the Containerfile to build. An empty file means
// "Containerfile, else Dockerfile, in the context". A relative file is looked
// up in the context first (Konflux's DOCKERFILE convention), then in the
// working directory.
func ResolveContainerfile(contextDir, file string) (string, error) {
	st, err := os.Stat(contextDir)
	if err != nil {
		return "", fmt.Errorf("build context %q: %w", contextDir, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("build context %q is not a directory", contextDir)
	}
	var candidates []string
	switch {
	case file == "":
		candidates = []string{filepath.Join(contextDir, "Containerfile"), filepath.Join(contextDir, "Dockerfile")}
	case filepath.IsAbs(file):
		candidates = []string{file}
	default:
		candidates = []string{filepath.Join(contextDir, file), file}
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return filepath.Abs(c)
		}
	}
	return "", fmt.Errorf("no Containerfile found: tried %s", strings.Join(candidates, ", "))
}

// CheckPlatform refuses, before any work, a platform buildah cannot build:
// windows (its FROM fails; windows images need a windows builder). Other
// operating systems build when no RUN step needs to execute their binaries
// (FROM scratch plus COPY, as the results-budget tests do for BSDs). The
// error starts with the platform, for the caller to name the flag.
func CheckPlatform(p ocispec.Platform) error {
	if p.OS == "windows" {
		return fmt.Errorf("%q: buildah does not build windows images; want e.g. linux/amd64", oci.PlatformString(p))
	}
	return nil
}

// Validate checks what can be checked before any work starts.
func (o Options) Validate() error {
	if _, err := parseIsolation(o.Isolation); err != nil {
		return err
	}
	if _, err := parseNetwork(string(o.Network)); err != nil {
		return err
	}
	if o.Containerfile == "" || !filepath.IsAbs(o.Containerfile) {
		return fmt.Errorf("containerfile %q: an absolute path is required (use ResolveContainerfile)", o.Containerfile)
	}
	if err := o.Provenance.Validate(); err != nil {
		return err
	}
	if o.Network == NetworkNone {
		return checkNoRemoteSources(o.Containerfile, o.Args)
	}
	return nil
}

// Build builds opts for one platform and returns the stored image.
func Build(ctx context.Context, store storage.Store, opts Options, platform ocispec.Platform) (Image, error) {
	network, err := parseNetwork(string(opts.Network))
	if err != nil {
		return Image{}, err
	}
	bo, err := opts.buildahOptions(platform, network)
	if err != nil {
		return Image{}, err
	}
	restore, err := useTmpDir(opts.TmpDir)
	if err != nil {
		return Image{}, err
	}
	defer restore()
	defer isolateRunNetwork(network == NetworkNone)()
	stopKilling := killRunsOnCancel(ctx)
	id, _, err := imagebuildah.BuildDockerfiles(ctx, store, bo, opts.Containerfile)
	stopKilling()
	if err != nil {
		if ctx.Err() != nil {
			// A cancelled RUN surfaces as whatever its process died of
			// ("exit status 1", "signal: terminated"); report the
			// cancellation itself, so callers see context.Canceled.
			return Image{}, fmt.Errorf("building %s for %s: %w (stopped at: %s)", opts.Containerfile, oci.PlatformString(platform), context.Cause(ctx), shorten(readable(err).Error(), 160))
		}
		return Image{}, fmt.Errorf("building %s for %s: %w", opts.Containerfile, oci.PlatformString(platform), readable(err))
	}
	return Image{ID: id, Platform: platform}, nil
}

// buildahOptions are opts as buildah's options for one platform.
func (opts Options) buildahOptions(platform ocispec.Platform, network Network) (define.BuildOptions, error) {
	isolation, err := parseIsolation(opts.Isolation)
	if err != nil {
		return define.BuildOptions{}, err
	}
	ulimits, err := HardUlimits()
	if err != nil {
		return define.BuildOptions{}, err
	}
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	sys := &types.SystemContext{}
	if opts.SystemContext != nil {
		copied := *opts.SystemContext
		sys = &copied
	}
	sys.OSChoice, sys.ArchitectureChoice, sys.VariantChoice = platform.OS, platform.Architecture, platform.Variant
	args := map[string]string{} // buildah may add to it
	maps.Copy(args, opts.Args)
	labels, annotations := opts.Provenance.labels(platform, opts.SourceDateEpoch)
	bo := define.BuildOptions{
		ContextDirectory: opts.ContextDir,
		PullPolicy:       define.PullIfMissing,
		Args:             args,
		Envs:             opts.Env,
		// The provenance labels first: the user's own labels win.
		Labels:           append(labels, opts.Labels...),
		Annotations:      append(annotations, opts.Annotations...),
		Target:           opts.Target,
		SkipUnusedStages: types.NewOptionalBool(!opts.BuildUnusedStages),
		Isolation:        isolation,
		Layers:           true,
		// The layer cache matches on os/arch but not the variant: arm/v7
		// would silently reuse arm/v6's image. Each platform builds once
		// per run anyway, so there is nothing to gain from it.
		NoCache:                 true,
		RemoveIntermediateCtrs:  true,
		ForceRmIntermediateCtrs: true,
		OutputFormat:            define.OCIv1ImageManifest,
		SystemContext:           sys,
		Platforms:               []struct{ OS, Arch, Variant string }{{platform.OS, platform.Architecture, platform.Variant}},
		NamespaceOptions:        network.namespaces(),
		ConfigureNetwork:        network.policy(),
		NetworkInterface:        noNetwork{},
		CommonBuildOpts: &define.CommonBuildOptions{
			Ulimit:    ulimits,
			Secrets:   opts.Secrets,
			HTTPProxy: opts.ProxyToRun && network != NetworkNone,
		},
		Out:          log,
		Err:          log,
		ReportWriter: log,
	}
	if opts.SourceDateEpoch != nil {
		t := opts.SourceDateEpoch.UTC()
		bo.SourceDateEpoch = &t
		bo.RewriteTimestamp = true
	}
	return bo, nil
}

// shorten cuts s to at most n bytes (on a rune boundary), marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// HardUlimits are the ulimits ("nofile=N:N", "nproc=N:N") every RUN gets:
// this process' hard limits, raising nothing. RUN would otherwise ask for
// 1048576 open files and processes and fail with EPERM where the pod's
// hard limit is lower. (The benchmark passes them to the buildah CLI too.)
func HardUlimits() ([]string, error) {
	var out []string
	for _, l := range []struct {
		name string
		res  int
	}{{"nofile", unix.RLIMIT_NOFILE}, {"nproc", unix.RLIMIT_NPROC}} {
		var r unix.Rlimit
		if err := unix.Getrlimit(l.res, &r); err != nil {
			return nil, fmt.Errorf("reading %s limit: %w", l.name, err)
		}
		out = append(out, fmt.Sprintf("%s=%d:%d", l.name, clampLimit(r.Max), clampLimit(r.Max)))
	}
	return out, nil
}

func clampLimit(v uint64) int64 {
	const max = 1 << 30
	if v > max {
		return max
	}
	return int64(v)
}

// useTmpDir points TMPDIR (read by buildah and containers/image) at dir for the
// duration of a build.
func useTmpDir(dir string) (func(), error) {
	if dir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating temporary directory %q: %w", dir, err)
	}
	return withEnv("TMPDIR", dir), nil
}

// withEnv sets the environment variable key to value ("" unsets it) and
// returns the func that restores it. Builds run one at a time, so a
// process-wide variable is safe.
func withEnv(key, value string) func() {
	old, had := os.LookupEnv(key)
	if value == "" {
		_ = os.Unsetenv(key)
	} else {
		_ = os.Setenv(key, value)
	}
	return func() {
		if had {
			_ = os.Setenv(key, old)
		} else {
			_ = os.Unsetenv(key)
		}
	}
}

// StoreOptions select where images are stored.
type StoreOptions struct {
	Driver  string // "vfs" or "overlay"; "" keeps storage.conf's choice
	Root    string
	RunRoot string
}

// StorageDrivers lists the accepted StoreOptions.Driver values.
var StorageDrivers = []string{"vfs", "overlay"}

// Validate checks the driver name before any work starts.
func (o StoreOptions) Validate() error {
	if o.Driver == "" {
		return nil
	}
	_, err := choice.Parse("storage driver", o.Driver, StorageDrivers)
	return err
}

// OpenStore opens (creating if needed) the containers/storage store.
func OpenStore(o StoreOptions) (storage.Store, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	so, err := storage.DefaultStoreOptions()
	if err != nil {
		return nil, fmt.Errorf("reading storage configuration: %w", err)
	}
	if o.Root != "" {
		so.GraphRoot = o.Root
	}
	if o.RunRoot != "" {
		so.RunRoot = o.RunRoot
	}
	if o.Driver != "" && o.Driver != so.GraphDriverName {
		so.GraphDriverName = o.Driver
		so.GraphDriverOptions = nil // options of another driver do not apply
	}
	store, err := storage.GetStore(so)
	if err != nil {
		return nil, fmt.Errorf("opening storage (driver %q, root %q): %w", so.GraphDriverName, so.GraphRoot, err)
	}
	return store, nil
}
