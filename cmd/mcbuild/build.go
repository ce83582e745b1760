package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/mcbuild/mcbuild/internal/build"
	"github.com/mcbuild/mcbuild/internal/cpulimit"
	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/pipeline"
	"github.com/mcbuild/mcbuild/internal/publish"
	"github.com/mcbuild/mcbuild/internal/results"
	"github.com/mcbuild/mcbuild/internal/sbom"
	"github.com/mcbuild/mcbuild/internal/stage"
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
	reuseLayers                                 bool
	reuseFrom                                   []string
	compressWhileBuilding                       bool
	env                                         []string
	network                                     string
	skipUnusedStages                            bool
	httpProxy, noProxy                          string
	provenance                                  build.Provenance
	resultsFlags
}

// resultsFlags are shared by the commands that finish a release.
type resultsFlags struct {
	resultsDir    string
	resultsBudget int
	summaryJSON   string
	sbom          bool
	sbomFormat    string
}

func (r *resultsFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.resultsDir, "results-dir", "", "directory to write Tekton results into (e.g. /tekton/results); empty writes none")
	cmd.Flags().IntVar(&r.resultsBudget, "results-budget", results.DefaultBudget, "bytes the step's results may take in Tekton's termination message; IMAGES is written empty when its digests would not fit")
	cmd.Flags().StringVar(&r.summaryJSON, "summary-json", "", "also write the summary (digests, sizes, seconds per phase) as JSON to this file")
	cmd.Flags().BoolVar(&r.sbom, "sbom", true, "attach SBOMs: each platform's (build only) to every manifest of the platform, and one listing every manifest to the index; false attaches none")
	cmd.Flags().StringVar(&r.sbomFormat, "sbom-format", string(sbom.SPDXJSON), "SBOM format: spdx-json (SPDX 2.3) or cyclonedx-json (Konflux's SBOM_TYPE names spdx and cyclonedx are accepted too)")
}

// sbomPlan checks the SBOM flags; epoch (--source-date-epoch) pins the
// SBOMs' creation time and identity.
func (r *resultsFlags) sbomPlan(epoch *time.Time) (pipeline.SBOMPlan, error) {
	f, err := sbom.ParseFormat(r.sbomFormat)
	if err != nil {
		return pipeline.SBOMPlan{}, flagError("--sbom-format", err)
	}
	return pipeline.SBOMPlan{Enabled: r.sbom, Format: f, Created: epoch, Version: version()}, nil
}

// plan checks the results flags for an index published at dest, before
// any work: what is written after the build must fit and have somewhere
// to go.
func (r *resultsFlags) plan(dest imageref.Ref) (pipeline.Results, error) {
	if err := results.CheckBudgetFor(r.resultsBudget, dest.Tagged(), dest.Repository, r.sbom); err != nil {
		return pipeline.Results{}, fmt.Errorf("--results-budget %w", err)
	}
	if r.summaryJSON != "" {
		if err := results.CheckFile(r.summaryJSON); err != nil {
			return pipeline.Results{}, fmt.Errorf("--summary-json %w", err)
		}
	}
	if err := results.CheckWritable(r.resultsDir); err != nil {
		return pipeline.Results{}, fmt.Errorf("--results-dir %w", err)
	}
	return pipeline.Results{Dir: r.resultsDir, Budget: r.resultsBudget, SummaryJSON: r.summaryJSON}, nil
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
		RunE: func(cmd *cobra.Command, _ []string) error { return runBuild(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.image, "image", "", "destination REGISTRY/REPO[:TAG] for the index (required; the tag defaults to latest)")
	fl.StringVarP(&f.file, "file", "f", "", "Containerfile to build (default: Containerfile, else Dockerfile, in the context)")
	fl.StringVar(&f.contextDir, "context", ".", "build context directory")
	fl.StringVar(&f.platforms, "platform", "", "comma-separated os/arch[/variant] list to build (default: the host's platform)")
	fl.StringVar(&f.formats, "compression-formats", formats.Default, "comma-separated layer compression formats to publish: gzip, zstd, zstd:chunked")
	fl.BoolVar(&f.appendPlatform, "append-platform", false, "append -<os>-<arch>[-<variant>] of the one --platform to the tag (app:v1 becomes app:v1-linux-arm64), so the builds of a matrix do not move each other's tag")
	fl.IntVar(&f.zstdLevel, "zstd-level", stage.DefaultZstdLevel, "compression level for zstd and zstd:chunked layers (upstream's zstd:chunked default is 10, about 4x slower)")
	fl.StringVar(&f.publisher, "publisher", string(publish.Stream), "how variants are made: stream (read each layer once, compress every format at the same time) or copy (one containers/image copy per format, the reference path)")
	fl.StringVar(&f.zstdChunkedEncoder, "zstd-chunked-encoder", string(stage.EncoderParallel), "zstd:chunked encoder of the stream publisher: parallel (every core, same bytes as upstream) or upstream (containers/storage's, one core)")
	fl.BoolVar(&f.compressWhileBuilding, "compress-while-building", false, "compress each layer as soon as the build commits it, in CPU time the build leaves idle (stream publisher; for hosts with idle cores and no CPU limit below them; layers of other stages are compressed in vain)")
	fl.BoolVar(&f.reuseLayers, "reuse-layers", true, "reuse layer blobs that exist already (pulled for FROM, the base's other variants, the previous release, --reuse-from) instead of compressing them again; false compresses every layer, for digests that depend on the inputs only")
	fl.StringArrayVar(&f.reuseFrom, "reuse-from", nil, "another image (REGISTRY/REPO[:TAG][@DIGEST]) whose layers this one may share, e.g. a cache repository; repeatable")
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
	f.registerKonflux(cmd)
	f.resultsFlags.register(cmd)
	_ = cmd.MarkFlagRequired("image")
	return cmd
}

// plan validates the flags into a pipeline.BuildPlan. It reads the flags
// and the environment only: nothing is built, pushed or written.
func (f *buildFlags) plan(g *globalFlags, encoderSet bool) (pipeline.BuildPlan, []string, error) {
	var p pipeline.BuildPlan
	var warnings []string
	var err error
	if p.Dest, err = imageref.ParseTagged(f.image); err != nil {
		return p, nil, fmt.Errorf("--image %w", err)
	}
	if p.Formats, warnings, err = formats.Parse(f.formats); err != nil {
		return p, nil, err
	}
	if f.platforms == "" {
		p.Platforms = []ocispec.Platform{oci.HostPlatform()}
	} else if p.Platforms, err = oci.ParsePlatforms(f.platforms); err != nil {
		return p, nil, err
	}
	for _, pl := range p.Platforms {
		if err := build.CheckPlatform(pl); err != nil {
			return p, nil, fmt.Errorf("--platform %w", err)
		}
	}
	if f.appendPlatform {
		if p.Dest, err = appendPlatform(p.Dest, f.platforms, p.Platforms); err != nil {
			return p, nil, err
		}
	}
	if err := f.planPublish(&p, encoderSet); err != nil {
		return p, nil, err
	}
	if p.Build, err = f.buildOptions(); err != nil {
		return p, nil, err
	}
	p.Store = build.StoreOptions{Driver: f.storageDriver, Root: f.root, RunRoot: f.runRoot}
	if err := p.Store.Validate(); err != nil {
		return p, nil, flagError("--storage-driver", err)
	}
	if p.Registry, err = g.session(); err != nil {
		return p, nil, err
	}
	if p.Results, err = f.resultsFlags.plan(p.Dest); err != nil {
		return p, nil, err
	}
	if p.SBOM, err = f.resultsFlags.sbomPlan(p.Build.SourceDateEpoch); err != nil {
		return p, nil, err
	}
	p.ProgressInterval = 10 * time.Second
	return p, append(warnings, f.warnings(p)...), nil
}

// warnings are about what a valid plan does that its user may not want.
func (f *buildFlags) warnings(p pipeline.BuildPlan) []string {
	var warnings []string
	if keys := build.SecretLikeArgs(p.Build.Args); len(keys) > 0 {
		warnings = append(warnings, fmt.Sprintf("build argument %s looks like a secret: build argument values are recorded in the image's history (as Docker and buildah record them), readable by anyone who can pull it; pass secrets with --secret id=ID,src=FILE and RUN --mount=type=secret,id=ID",
			strings.Join(keys, ", ")))
	}
	env := map[string]string{}
	for _, kv := range p.Build.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if keys := build.SecretLikeArgs(env); len(keys) > 0 {
		warnings = append(warnings, fmt.Sprintf("--env %s looks like a secret: --env values are recorded in the image's config and history, readable by anyone who can pull it; pass secrets with --secret id=ID,src=FILE and RUN --mount=type=secret,id=ID",
			strings.Join(keys, ", ")))
	}
	if f.compressWhileBuilding {
		// The compression runs only on otherwise idle cores, but a CPU quota
		// counts every core: what it spends, the build loses.
		if limit, ok := cpulimit.Get(); ok && limit < float64(runtime.NumCPU()) {
			warnings = append(warnings, fmt.Sprintf("--compress-while-building under a CPU limit of %.3g CPUs (cgroup quota; %d cores here): the compression spends the build's quota, which can make the whole run slower", limit, runtime.NumCPU()))
		}
	}
	return warnings
}

// planPublish checks the flags that say how the variants are made.
func (f *buildFlags) planPublish(p *pipeline.BuildPlan, encoderSet bool) error {
	if f.zstdLevel < 1 || f.zstdLevel > 20 {
		return fmt.Errorf("--zstd-level %d: valid levels are 1 to 20 (default %d)", f.zstdLevel, stage.DefaultZstdLevel)
	}
	kind, err := publish.ParseKind(f.publisher)
	if err != nil {
		return flagError("--publisher", err)
	}
	encoder, err := stage.ParseEncoder(f.zstdChunkedEncoder)
	if err != nil {
		return flagError("--zstd-chunked-encoder", err)
	}
	if kind == publish.Copy && f.compressWhileBuilding {
		return fmt.Errorf("--compress-while-building needs --publisher %s: the %s publisher compresses inside containers/image's copy", publish.Stream, publish.Copy)
	}
	if kind == publish.Copy && encoderSet && encoder == stage.EncoderParallel {
		return fmt.Errorf("--zstd-chunked-encoder %s needs --publisher %s: the %s publisher always uses containers/storage's encoder", stage.EncoderParallel, publish.Stream, publish.Copy)
	}
	if kind == publish.Copy && len(f.reuseFrom) > 0 {
		return fmt.Errorf("--reuse-from needs --publisher %s: the %s publisher compresses every layer", publish.Stream, publish.Copy)
	}
	for _, ref := range f.reuseFrom {
		if _, err := imageref.Parse(ref); err != nil {
			return fmt.Errorf("--reuse-from: %w", err)
		}
	}
	p.Publisher, p.CompressWhileBuilding = kind, f.compressWhileBuilding
	p.Reuse, p.ReuseFrom = f.reuseLayers && kind == publish.Stream, f.reuseFrom
	// Staged blobs and the run's scratch directory go under $TMPDIR (else
	// /var/tmp), read here once.
	p.Stage = stage.Settings{Level: f.zstdLevel, Encoder: encoder, TmpDir: stage.DefaultTmpDir()}
	return nil
}

// buildOptions checks the flags of the build itself.
func (f *buildFlags) buildOptions() (build.Options, error) {
	contextDir, err := filepath.Abs(f.contextDir)
	if err != nil {
		return build.Options{}, err
	}
	containerfile, err := build.ResolveContainerfile(contextDir, f.file)
	if err != nil {
		return build.Options{}, err
	}
	args, err := build.ParseArgs(f.buildArgsFile, f.buildArgs, os.LookupEnv)
	if err != nil {
		var ae *build.ArgError
		if errors.As(err, &ae) && ae.File != "" {
			return build.Options{}, fmt.Errorf("--build-args-file %w", err)
		}
		return build.Options{}, fmt.Errorf("--build-arg %w", err)
	}
	for _, kv := range []struct {
		flag string
		vals []string
	}{{"--label", f.labels}, {"--annotation", f.annotations}} {
		for _, v := range kv.vals {
			if err := build.CheckKeyValue(v); err != nil {
				return build.Options{}, fmt.Errorf("%s %w", kv.flag, err)
			}
		}
	}
	for _, s := range f.secrets {
		if err := build.CheckSecret(s); err != nil {
			return build.Options{}, fmt.Errorf("--secret %w", err)
		}
	}
	epoch, err := parseEpoch("--source-date-epoch / SOURCE_DATE_EPOCH", f.sourceDateEpoch)
	if err != nil {
		return build.Options{}, err
	}
	o := build.Options{
		ContextDir: contextDir, Containerfile: containerfile, Args: args,
		Labels: f.labels, Annotations: f.annotations, Target: f.target,
		SourceDateEpoch: epoch, Isolation: f.isolation, Secrets: f.secrets,
	}
	if err := f.konfluxOptions(&o); err != nil {
		return o, err
	}
	if err := o.Validate(); err != nil {
		return o, optionFlag(err)
	}
	return o, nil
}

// parseEpoch reads a SOURCE_DATE_EPOCH value ("" is nil); errors start
// with what, the flag or variable.
func parseEpoch(what, s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	secs, err := strconv.ParseInt(s, 10, 64)
	if err != nil || secs < 0 {
		return nil, fmt.Errorf("%s %q: want a non-negative number of seconds since 1970-01-01 UTC", what, s)
	}
	t := time.Unix(secs, 0).UTC()
	return &t, nil
}

func runBuild(cmd *cobra.Command, g *globalFlags, f *buildFlags) error {
	plan, warnings, err := f.plan(g, cmd.Flags().Changed("zstd-chunked-encoder"))
	if err != nil {
		return err
	}
	f.proxyEnv()
	stderr := cmd.ErrOrStderr()
	for _, w := range warnings {
		fmt.Fprintln(stderr, "Warning:", w)
	}
	warnTLS(cmd, g)
	plan.Log = stderr
	out, err := pipeline.Build(cmd.Context(), plan)
	if err != nil {
		return err
	}
	return printOutcome(cmd, out, f.resultsFlags)
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
	tagged := dest.Repository + ":" + dest.Tag + "-" + oci.PlatformSuffix(ps[0])
	out, err := imageref.ParseTagged(tagged)
	if err != nil {
		return dest, fmt.Errorf("--append-platform: the tag %w", err)
	}
	return out, nil
}
