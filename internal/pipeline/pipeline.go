// Package pipeline runs a validated plan. `mcbuild build`: for each
// platform build → stage → publish (package build, stage, publish), with
// the platform's SBOM generated alongside (package sbom), then the release
// (package release: index → subjects → SBOMs → verify → tag → results).
// `mcbuild index`: collect the inputs (package index), then the same
// release. It times every phase in one summary.Phases record.
package pipeline

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/build"
	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/publish"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/release"
	"github.com/mcbuild/mcbuild/internal/reuse"
	"github.com/mcbuild/mcbuild/internal/stage"
	"github.com/mcbuild/mcbuild/internal/summary"
)

// BuildPlan is a validated `mcbuild build`.
type BuildPlan struct {
	Dest      imageref.Ref
	Platforms []ocispec.Platform
	Formats   []formats.Format
	// Build is the build of every platform; Build sets its SystemContext,
	// TmpDir and Log.
	Build build.Options
	Store build.StoreOptions
	// Publisher makes the variants; Stage says how layers are compressed.
	// Stage.TmpDir is where the run's scratch directory and staged blobs go
	// (default stage.DefaultTmpDir()).
	Publisher publish.Kind
	Stage     stage.Settings
	// CompressWhileBuilding starts compressing each layer as soon as the
	// build commits it (stage.Early); Stream publisher only.
	CompressWhileBuilding bool
	// Reuse lands layer blobs that exist already instead of compressing
	// them (package reuse), also looking in ReuseFrom; Stream publisher
	// only (Copy compresses everything).
	Reuse     bool
	ReuseFrom []string
	Registry  *registry.Session
	Results   Results
	// SBOM says whether each platform's SBOM is generated (alongside its
	// publish) and attached with the index SBOM.
	SBOM SBOMPlan
	// Log receives progress lines; ProgressInterval paces the upload
	// progress lines (0: none).
	Log              io.Writer
	ProgressInterval time.Duration
}

// IndexPlan is a validated `mcbuild index`: merge From (references in
// Dest's repository) into one index at Dest.
type IndexPlan struct {
	Dest     imageref.Ref
	From     []string
	Registry *registry.Session
	Results  Results
	// SBOM says whether the index SBOM is attached (the inputs carry their
	// manifests' own).
	SBOM SBOMPlan
	Log  io.Writer
}

// Results say where the Tekton results and the summary go.
type Results struct {
	Dir    string // "" writes none
	Budget int    // bytes all results may take; 0 means results.DefaultBudget
	// SummaryJSON is a file to write the summary (Outcome.Report) to as
	// JSON, with the results: before the tag moves, in place after; ""
	// writes none.
	SummaryJSON string
}

// Outcome is what a run published, and how long each phase took.
type Outcome struct {
	release.Outcome
	Phases summary.Phases
	// Variants say how each manifest's layers were made (build only).
	Variants []summary.Variant
}

// Build runs a build plan: every platform is built, then published in every
// format, then the release is made.
func Build(ctx context.Context, p BuildPlan) (Outcome, error) {
	started := time.Now()
	repo, err := Open(ctx, p.Registry, p.Dest.Repository)
	if err != nil {
		return Outcome{}, err
	}
	store, err := build.OpenStore(p.Store)
	if err != nil {
		return Outcome{}, err
	}
	defer func() { _, _ = store.Shutdown(false) }()
	sboms := startSBOMs(ctx, p.SBOM, store, p.Dest.Repository, p.Log)
	defer sboms.stop()
	tmpRoot := p.Stage.TmpDir
	if tmpRoot == "" {
		tmpRoot = stage.DefaultTmpDir()
	}
	// The build's TMPDIR receives a copy of every layer's tar while buildah
	// commits it: with containers/image's big files, not in the run root,
	// often a tmpfs that a big layer would fill.
	scratch, err := os.MkdirTemp(tmpRoot, "mcbuild-")
	if err != nil {
		return Outcome{}, fmt.Errorf("creating a scratch directory under %s: %w", tmpRoot, err)
	}
	defer os.RemoveAll(scratch)

	sys := p.Registry.SystemContext(filepath.Join(scratch, "blob-info-cache"))
	p.Build.SystemContext, p.Build.TmpDir, p.Build.Log = sys, filepath.Join(scratch, "tmp"), p.Log
	p.Stage.TmpDir = tmpRoot
	var phases summary.Phases
	var variants []summary.Variant
	pub, err := publish.New(p.Publisher, store, p.Dest.Repository, p.Formats, publish.Options{
		Dest: repo, SystemContext: sys, Registry: p.Registry.Options(), Stage: p.Stage, BlobInfoCacheDir: sys.BlobInfoCacheDir,
		Log: p.Log, ProgressInterval: p.ProgressInterval,
		Pushed: func(e index.Entry, took time.Duration, st publish.Stats) {
			phases.AddPublishFormat(string(e.Format), took)
			variants = append(variants, variantOf(e, st))
		},
	})
	if err != nil {
		return Outcome{}, err
	}
	run := platformRun{BuildPlan: p, store: store, pub: pub, dest: repo, phases: &phases, sboms: sboms}
	var entries []index.Entry
	for _, platform := range p.Platforms {
		published, err := run.buildPlatform(ctx, platform)
		if err != nil {
			return Outcome{}, err
		}
		entries = append(entries, published...)
	}
	docs, busy, waited, err := sboms.wait()
	if err != nil {
		return Outcome{}, err
	}
	phases.SBOM, phases.SBOMWait = busy.Seconds(), waited.Seconds()
	return finish(ctx, repo, p.Dest, entries, p.Registry, p.Results, p.Log, phases, variants, p.SBOM.release(docs), started)
}

// platformRun is what every platform's build and publish share.
type platformRun struct {
	BuildPlan
	store  storage.Store
	pub    publish.Publisher
	dest   *remote.Repository
	phases *summary.Phases
	sboms  *sbomRun
}

// variantOf is one pushed variant's line of the summary.
func variantOf(e index.Entry, st publish.Stats) summary.Variant {
	v := summary.Variant{
		Platform: oci.PlatformString(*e.Descriptor.Platform), Compression: string(e.Format),
		BytesCompressed: st.BytesCompressed, BytesUploaded: st.BytesUploaded,
	}
	for origin, n := range st.Origins {
		v.Layers += n
		if from, ok := strings.CutPrefix(string(origin), reuse.OriginPrefix); ok {
			if v.Reused == nil {
				v.Reused = map[string]int{}
			}
			v.Reused[from] += n
		} else {
			v.Compressed += n
		}
	}
	return v
}

// buildPlatform builds for one platform and publishes the image in every
// format. Its phases are labelled for --cpu-profile (pprof -tagfocus
// phase=publish).
func (p platformRun) buildPlatform(ctx context.Context, platform ocispec.Platform) ([]index.Entry, error) {
	store, phases := p.store, p.phases
	t0 := time.Now()
	logf(p.Log, "building %s for %s", p.Build.Containerfile, oci.PlatformString(platform))
	var early *stage.Early
	if p.CompressWhileBuilding {
		var err error
		if early, err = stage.StartEarly(ctx, store, p.Formats, p.Stage, p.Build.TmpDir); err != nil {
			return nil, err
		}
		defer early.Close()
	}
	var img build.Image
	var err error
	pprof.Do(ctx, pprof.Labels("phase", "build"), func(ctx context.Context) {
		img, err = build.Build(ctx, store, p.Build, platform)
	})
	early.StopWatching()
	if err != nil {
		return nil, err
	}
	phases.Build += time.Since(t0).Seconds()
	p.sboms.add(img)
	t0 = time.Now()
	var published []index.Entry
	pprof.Do(ctx, pprof.Labels("phase", "publish"), func(ctx context.Context) {
		var sources []stage.Source
		if sources, err = p.sources(ctx, img, early); err == nil {
			published, err = p.pub.Publish(ctx, img, sources...)
		}
	})
	phases.Publish += time.Since(t0).Seconds()
	phases.CompressDuringBuild += early.Busy().Seconds()
	return published, err
}

// sources are where the stager looks before compressing a layer: blobs
// that exist already (reuse), then what Early compressed during the build.
func (p platformRun) sources(ctx context.Context, img build.Image, early *stage.Early) ([]stage.Source, error) {
	var sources []stage.Source
	if p.Reuse && p.Publisher != publish.Copy {
		found, err := reuse.Find(ctx, p.store, img.ID, img.Platform, reuse.Options{
			Session: p.Registry, Dest: p.dest, DestName: p.Dest.Repository, DestTag: p.Dest.Tag,
			ReuseFrom: p.ReuseFrom, Log: p.Log,
		})
		if err != nil {
			return nil, err
		}
		logf(p.Log, "%s: %d existing blobs found for reuse", oci.PlatformString(img.Platform), found.Candidates())
		sources = append(sources, found)
	}
	if early != nil {
		sources = append(sources, early)
	}
	return sources, nil
}

// Index runs an index plan: the inputs are read and flattened, then the
// release is made.
func Index(ctx context.Context, p IndexPlan) (Outcome, error) {
	started := time.Now()
	repo, err := Open(ctx, p.Registry, p.Dest.Repository)
	if err != nil {
		return Outcome{}, err
	}
	entries, warnings, err := index.Merge(ctx, repo, p.From...)
	if err != nil {
		return Outcome{}, p.Registry.Options().Explain("reading the inputs to merge from "+p.Dest.Repository, err)
	}
	for _, w := range warnings {
		logf(p.Log, "Warning: %s", w)
	}
	phases := summary.Phases{Collect: time.Since(started).Seconds()}
	return finish(ctx, repo, p.Dest, entries, p.Registry, p.Results, p.Log, phases, nil, p.SBOM.release(nil), started)
}

// Open is the preflight every command makes before any work: the registry
// answers and takes the credentials (Session.Ping), so an untrusted
// certificate, plain HTTP or refused credentials get one explanation and
// remedy; then the repository.
func Open(ctx context.Context, sess *registry.Session, repo string) (*remote.Repository, error) {
	if err := sess.Ping(ctx, repo); err != nil {
		return nil, err
	}
	return sess.Repository(ctx, repo)
}

// finish makes the release of entries and completes the phases record,
// whose total runs to the moment before the tag moves: the summary JSON
// is written with the results, staged before the tag.
func finish(ctx context.Context, repo release.Target, dest imageref.Ref, entries []index.Entry, sess *registry.Session, rs Results, log io.Writer, phases summary.Phases, variants []summary.Variant, sboms *release.SBOMs, started time.Time) (Outcome, error) {
	// Called by Finish once the outcome is complete, before the tag moves.
	files := func(out release.Outcome) ([]release.File, error) {
		phases.Index = out.Phases.Index.Seconds()
		phases.Subjects = out.Phases.Subjects.Seconds()
		phases.SBOMAttach = out.Phases.SBOM.Seconds()
		phases.Verify = out.Phases.Verify.Seconds()
		phases.Total = time.Since(started).Seconds()
		if rs.SummaryJSON == "" {
			return nil, nil
		}
		data, err := Outcome{Outcome: out, Phases: phases, Variants: variants}.Report().JSON()
		if err != nil {
			return nil, fmt.Errorf("the summary: %w", err)
		}
		return []release.File{{Path: rs.SummaryJSON, What: "summary", Data: data}}, nil
	}
	out, err := release.Finish(ctx, repo, dest, entries, release.Options{
		ResultsDir: rs.Dir, ResultsBudget: rs.Budget, Files: files, Log: log, Registry: sess.Options(), SBOM: sboms,
	})
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Outcome: out, Phases: phases, Variants: variants}, nil
}

// Report is the outcome as the summary prints it and --summary-json
// writes it.
func (o Outcome) Report() summary.Report {
	r := summary.Report{
		ImageRef: o.Results.ImageRef, IndexDigest: o.Index.Digest.String(), IndexSize: o.Index.Size,
		SubjectsRef: o.Results.SubjectsRef, Warnings: o.Warnings, Phases: o.Phases, Variants: o.Variants,
		SBOMBlobURL: o.Results.SBOMBlobURL,
	}
	if o.SBOMs.Index.Digest != "" {
		r.IndexSBOM = o.SBOMs.Index.Digest.String()
	}
	for _, e := range o.Entries {
		size, ok := o.Sizes[e.Descriptor.Digest]
		if !ok {
			size = -1
		}
		r.Manifests = append(r.Manifests, summary.Row{
			Platform: oci.PlatformString(*e.Descriptor.Platform), Compression: string(e.Format),
			Digest: e.Descriptor.Digest.String(), Size: size, SBOM: o.SBOMs.Manifests[e.Descriptor.Digest].Digest.String(),
		})
	}
	return r
}

func logf(w io.Writer, format string, a ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", a...)
	}
}
