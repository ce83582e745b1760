package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/mcbuild/mcbuild/internal/build"
	"github.com/mcbuild/mcbuild/internal/cpulimit"
	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/platforms"
	"github.com/mcbuild/mcbuild/internal/publish"
	"github.com/mcbuild/mcbuild/internal/results"
	"github.com/mcbuild/mcbuild/internal/summary"
)

type buildFlags struct {
	image, file, contextDir, platforms, formats string
	buildArgs                                   []string
	buildArgsFile                               string
	labels, annotations, secrets                []string
	target, sourceDateEpoch                     string
	storageDriver, root, runRoot, isolation     string
	zstdLevel                                   int
	publisher, zstdChunkedEncoder               string
	appendPlatform                              bool
	encoderSet                                  bool // --zstd-chunked-encoder given explicitly
	compressWhileBuilding                       bool
	resultsFlags
}

// resultsFlags are shared by the commands that finish a release.
type resultsFlags struct {
	resultsDir    string
	resultsBudget int
	summaryJSON   string
}

func (r *resultsFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.resultsDir, "results-dir", "", "directory to write Tekton results into (e.g. /tekton/results); empty writes none")
	cmd.Flags().IntVar(&r.resultsBudget, "results-budget", results.DefaultBudget, "bytes the step's results may take in Tekton's termination message; IMAGES is left out when it would not fit")
	cmd.Flags().StringVar(&r.summaryJSON, "summary-json", "", "also write the summary (digests, sizes, seconds per phase) as JSON to this file")
}

func (r *resultsFlags) validate() error {
	if r.resultsBudget <= 0 {
		return fmt.Errorf("--results-budget %d: must be a positive number of bytes (Tekton's default is %d)", r.resultsBudget, results.DefaultBudget)
	}
	if r.summaryJSON != "" {
		if err := results.CheckWritable(filepath.Dir(r.summaryJSON)); err != nil {
			return fmt.Errorf("--summary-json %s: %w", r.summaryJSON, err)
		}
	}
	return results.CheckWritable(r.resultsDir)
}

func newBuildCommand(g *globalFlags) *cobra.Command {
	f := &buildFlags{}
	cmd := &cobra.Command{
		Use:   "build --image REGISTRY/REPO[:TAG] [flags]",
		Short: "Build per platform, push every compression variant, the index and the subjects artifact",
		Example: `  mcbuild build --image registry.example/ns/app:v1 --context . \
    --platform linux/amd64,linux/arm64 --compression-formats gzip,zstd:chunked \
    --results-dir /tekton/results`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.encoderSet = cmd.Flags().Changed("zstd-chunked-encoder")
			return runBuild(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.image, "image", "", "destination REGISTRY/REPO[:TAG] for the index (required; the tag defaults to latest)")
	fl.StringVarP(&f.file, "file", "f", "", "Containerfile to build (default: Containerfile, else Dockerfile, in the context)")
	fl.StringVar(&f.contextDir, "context", ".", "build context directory")
	fl.StringVar(&f.platforms, "platform", "", "comma-separated os/arch[/variant] list to build (default: the host's platform)")
	fl.StringVar(&f.formats, "compression-formats", formats.Default, "comma-separated layer compression formats to publish: gzip, zstd, zstd:chunked")
	fl.BoolVar(&f.appendPlatform, "append-platform", false, "append -<os>-<arch>[-<variant>] of the one --platform to the tag (app:v1 becomes app:v1-linux-arm64), so the builds of a matrix do not move each other's tag")
	fl.IntVar(&f.zstdLevel, "zstd-level", publish.DefaultZstdLevel, "compression level for zstd and zstd:chunked layers (upstream's zstd:chunked default is 10, about 4x slower)")
	fl.StringVar(&f.publisher, "publisher", publish.PublisherStream, "how variants are made: stream (read each layer once, compress every format at the same time) or copy (one containers/image copy per format, the reference path)")
	fl.StringVar(&f.zstdChunkedEncoder, "zstd-chunked-encoder", publish.EncoderParallel, "zstd:chunked encoder of the stream publisher: parallel (every core, same bytes as upstream) or upstream (containers/storage's, one core)")
	fl.BoolVar(&f.compressWhileBuilding, "compress-while-building", false, "compress each layer as soon as the build commits it, in CPU time the build leaves idle (stream publisher; for hosts with idle cores and no CPU limit below them; layers of other stages are compressed in vain)")
	fl.StringArrayVar(&f.buildArgs, "build-arg", nil, "build argument KEY=VALUE (KEY alone takes the value from the environment); repeatable")
	fl.StringVar(&f.buildArgsFile, "build-args-file", "", "file of KEY=VALUE build arguments, one per line (# comments); --build-arg wins")
	fl.StringArrayVar(&f.labels, "label", nil, "image label KEY=VALUE; repeatable")
	fl.StringArrayVar(&f.annotations, "annotation", nil, "manifest annotation KEY=VALUE; repeatable")
	fl.StringArrayVar(&f.secrets, "secret", nil, "build secret id=ID,src=PATH for RUN --mount=type=secret (buildah's syntax); repeatable")
	fl.StringVar(&f.target, "target", "", "build stage to stop at")
	fl.StringVar(&f.sourceDateEpoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "seconds since the epoch to pin every timestamp to, for reproducible digests (default $SOURCE_DATE_EPOCH)")
	fl.StringVar(&f.storageDriver, "storage-driver", "", "containers/storage driver: vfs or overlay (default: storage.conf's)")
	fl.StringVar(&f.root, "root", "", "containers/storage root directory (default: storage.conf's)")
	fl.StringVar(&f.runRoot, "runroot", "", "containers/storage run root directory (default: storage.conf's)")
	fl.StringVar(&f.isolation, "isolation", "chroot", "how RUN steps are isolated: chroot (no OCI runtime needed) or oci")
	f.resultsFlags.register(cmd)
	_ = cmd.MarkFlagRequired("image")
	return cmd
}

// buildPlan is the validated form of buildFlags.
type buildPlan struct {
	dest      imageref.Ref
	platforms []ocispec.Platform
	formats   []formats.Format
	build     build.Options
	store     build.StoreOptions
}

func (f *buildFlags) plan() (buildPlan, []string, error) {
	var p buildPlan
	var warnings []string
	var err error
	if p.dest, err = imageref.ParseTagged(f.image); err != nil {
		return p, nil, err
	}
	if p.formats, warnings, err = formats.Parse(f.formats); err != nil {
		return p, nil, err
	}
	if f.platforms == "" {
		p.platforms = []ocispec.Platform{platforms.Host()}
	} else if p.platforms, err = platforms.Parse(f.platforms); err != nil {
		return p, nil, err
	}
	if f.appendPlatform {
		if p.dest, err = appendPlatform(p.dest, f.platforms, p.platforms); err != nil {
			return p, nil, err
		}
	}
	if f.zstdLevel < 1 || f.zstdLevel > 20 {
		return p, nil, fmt.Errorf("--zstd-level %d: valid levels are 1 to 20 (default %d)", f.zstdLevel, publish.DefaultZstdLevel)
	}
	if !slices.Contains(publish.Publishers, f.publisher) {
		return p, nil, fmt.Errorf("--publisher %q: valid publishers are %s", f.publisher, strings.Join(publish.Publishers, ", "))
	}
	if !slices.Contains(publish.Encoders, f.zstdChunkedEncoder) {
		return p, nil, fmt.Errorf("--zstd-chunked-encoder %q: valid encoders are %s", f.zstdChunkedEncoder, strings.Join(publish.Encoders, ", "))
	}
	if f.publisher == publish.PublisherCopy && f.compressWhileBuilding {
		return p, nil, fmt.Errorf("--compress-while-building needs --publisher %s: the %s publisher compresses inside containers/image's copy", publish.PublisherStream, publish.PublisherCopy)
	}
	if f.publisher == publish.PublisherCopy && f.zstdChunkedEncoder == publish.EncoderParallel {
		if f.encoderSet {
			return p, nil, fmt.Errorf("--zstd-chunked-encoder %s needs --publisher %s: the %s publisher always uses containers/storage's encoder", publish.EncoderParallel, publish.PublisherStream, publish.PublisherCopy)
		}
		f.zstdChunkedEncoder = publish.EncoderUpstream
	}
	contextDir, err := filepath.Abs(f.contextDir)
	if err != nil {
		return p, nil, err
	}
	containerfile, err := build.ResolveContainerfile(contextDir, f.file)
	if err != nil {
		return p, nil, err
	}
	args, err := build.ParseArgs(f.buildArgsFile, f.buildArgs, os.LookupEnv)
	if err != nil {
		return p, nil, err
	}
	for _, kv := range []struct {
		flag string
		vals []string
	}{{"--label", f.labels}, {"--annotation", f.annotations}} {
		for _, v := range kv.vals {
			if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
				return p, nil, fmt.Errorf("%s %q: want KEY=VALUE", kv.flag, v)
			}
		}
	}
	for _, s := range f.secrets {
		if err := build.CheckSecret(s); err != nil {
			return p, nil, err
		}
	}
	var epoch *time.Time
	if f.sourceDateEpoch != "" {
		secs, err := strconv.ParseInt(f.sourceDateEpoch, 10, 64)
		if err != nil || secs < 0 {
			return p, nil, fmt.Errorf("--source-date-epoch / SOURCE_DATE_EPOCH %q: want a non-negative number of seconds since 1970-01-01 UTC", f.sourceDateEpoch)
		}
		t := time.Unix(secs, 0).UTC()
		epoch = &t
	}
	p.build = build.Options{
		ContextDir: contextDir, Containerfile: containerfile, Args: args,
		Labels: f.labels, Annotations: f.annotations, Target: f.target,
		SourceDateEpoch: epoch, Isolation: f.isolation, Secrets: f.secrets,
	}
	if err := p.build.Validate(); err != nil {
		return p, nil, err
	}
	p.store = build.StoreOptions{Driver: f.storageDriver, Root: f.root, RunRoot: f.runRoot}
	if err := p.store.Validate(); err != nil {
		return p, nil, err
	}
	return p, warnings, f.resultsFlags.validate()
}

func runBuild(cmd *cobra.Command, g *globalFlags, f *buildFlags) error {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	started := time.Now()
	plan, warnings, err := f.plan()
	if err != nil {
		return err
	}
	sess, err := g.session()
	if err != nil {
		return err
	}
	ropts := sess.Options()
	if f.compressWhileBuilding {
		// The compression runs only on otherwise idle cores, but a CPU quota
		// counts every core: what it spends, the build loses.
		if limit, ok := cpulimit.Get(); ok && limit < float64(runtime.NumCPU()) {
			warnings = append(warnings, fmt.Sprintf("--compress-while-building under a CPU limit of %.3g CPUs (cgroup quota; %d cores here): the compression spends the build's quota, which can make the whole run slower", limit, runtime.NumCPU()))
		}
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "Warning:", w)
	}
	warnTLS(cmd, g)
	if err := sess.Ping(ctx, plan.dest.Repository); err != nil {
		return err
	}
	repo, err := sess.Repository(ctx, plan.dest.Repository)
	if err != nil {
		return err
	}

	store, err := build.OpenStore(plan.store)
	if err != nil {
		return err
	}
	defer func() { _, _ = store.Shutdown(false) }()
	// The build's TMPDIR receives a copy of every layer's tar while buildah
	// commits it: with containers/image's big files ($TMPDIR, else /var/tmp),
	// not in the run root, often a tmpfs that a big layer would fill.
	scratch, err := os.MkdirTemp(publish.DefaultTmpDir(), "mcbuild-")
	if err != nil {
		return fmt.Errorf("creating a scratch directory under %s: %w", publish.DefaultTmpDir(), err)
	}
	defer os.RemoveAll(scratch)

	sys := sess.SystemContext(filepath.Join(scratch, "blob-info-cache"))
	plan.build.SystemContext, plan.build.TmpDir, plan.build.Log = sys, filepath.Join(scratch, "tmp"), stderr
	popts := publish.Options{
		SystemContext: sys, ZstdLevel: f.zstdLevel, BlobInfoCacheDir: sys.BlobInfoCacheDir,
		Publisher: f.publisher, ZstdChunkedEncoder: f.zstdChunkedEncoder, TmpDir: publish.DefaultTmpDir(),
		Log: stderr, ProgressInterval: 10 * time.Second, Registry: ropts,
	}

	var phases summary.Phases
	popts.Pushed = func(e index.Entry, took time.Duration) { phases.AddPublishFormat(string(e.Format), took) }
	var entries []index.Entry
	for _, platform := range plan.platforms {
		t0 := time.Now()
		fmt.Fprintf(stderr, "building %s for %s\n", plan.build.Containerfile, platforms.String(platform))
		var early *publish.Early
		if f.compressWhileBuilding {
			if early, err = publish.StartEarly(ctx, store, plan.formats, popts, plan.build.TmpDir); err != nil {
				return err
			}
		}
		published, err := func() ([]index.Entry, error) {
			defer early.Close()
			var img build.Image
			var err error
			// Phase labels let --cpu-profile be read per phase (pprof -tagfocus phase=publish).
			pprof.Do(ctx, pprof.Labels("phase", "build"), func(ctx context.Context) {
				img, err = build.Build(ctx, store, plan.build, platform)
			})
			early.StopWatching()
			if err != nil {
				return nil, err
			}
			phases.Build += time.Since(t0).Seconds()
			t0 = time.Now()
			popts.Early = early
			var published []index.Entry
			pprof.Do(ctx, pprof.Labels("phase", "publish"), func(ctx context.Context) {
				published, err = publish.Publish(ctx, store, publish.Image{ID: img.ID, Platform: platform}, plan.dest.Repository, plan.formats, popts)
			})
			phases.Publish += time.Since(t0).Seconds()
			phases.CompressDuringBuild += early.Busy().Seconds()
			return published, err
		}()
		if err != nil {
			return err
		}
		entries = append(entries, published...)
	}
	return finishRelease(cmd, repo, ropts, plan.dest, entries, f.resultsFlags, phases, started)
}

func warnTLS(cmd *cobra.Command, g *globalFlags) {
	if !g.tlsVerify {
		fmt.Fprintln(cmd.ErrOrStderr(), "Warning: --tls-verify=false: registry certificates are not verified and plain HTTP is accepted")
	}
}

// appendPlatform gives each build of a matrix its own tag: the tag plus the
// platform's suffix (internal/platforms.Suffix), for exactly one platform.
func appendPlatform(dest imageref.Ref, flag string, ps []ocispec.Platform) (imageref.Ref, error) {
	if len(ps) != 1 {
		return dest, fmt.Errorf("--append-platform needs exactly one --platform, got %q", flag)
	}
	tagged := dest.Repository + ":" + dest.Tag + "-" + platforms.Suffix(ps[0])
	out, err := imageref.ParseTagged(tagged)
	if err != nil {
		return dest, fmt.Errorf("--append-platform: %w", err)
	}
	return out, nil
}
