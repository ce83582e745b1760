package pipeline

import (
	"context"
	"fmt"
	"io"
	"runtime/pprof"
	"sync"
	"time"

	"go.podman.io/storage"

	"github.com/mcbuild/mcbuild/internal/build"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/release"
	"github.com/mcbuild/mcbuild/internal/sbom"
)

// SBOMPlan says whether and how SBOMs are made and attached.
type SBOMPlan struct {
	Enabled bool
	Format  sbom.Format
	// Created pins every SBOM's creation time and derives its document
	// namespace or serial number from the inputs (--source-date-epoch);
	// nil: the time of the run and a random one.
	Created *time.Time
	// Version is mcbuild's, recorded as the SBOMs' tool.
	Version string
}

func (p SBOMPlan) stamp() sbom.Stamp {
	if p.Created == nil {
		return sbom.Stamp{}
	}
	return sbom.Stamp{Created: *p.Created, Pinned: true}
}

// release is what the release attaches: nil when SBOMs are off.
func (p SBOMPlan) release(docs map[string]sbom.Document) *release.SBOMs {
	if !p.Enabled {
		return nil
	}
	return &release.SBOMs{Format: p.Format, Platforms: docs, Stamp: p.stamp(), Version: p.Version}
}

// sbomRun generates each built platform's SBOM in the background, while
// the platform is published and the next one built.
type sbomRun struct {
	plan   SBOMPlan
	store  storage.Store
	repo   string
	log    io.Writer
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// prepared is closed once ctx carries syft's shared license scanner
	// (sbom.Prepare, started at once so that it overlaps the build).
	prepared chan struct{}

	mu   sync.Mutex
	docs map[string]sbom.Document
	busy time.Duration
	err  error
}

func startSBOMs(ctx context.Context, plan SBOMPlan, store storage.Store, repo string, log io.Writer) *sbomRun {
	ctx, cancel := context.WithCancel(ctx)
	r := &sbomRun{plan: plan, store: store, repo: repo, log: log, ctx: ctx, cancel: cancel, docs: map[string]sbom.Document{}, prepared: make(chan struct{})}
	if !plan.Enabled {
		close(r.prepared)
		return r
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(r.prepared)
		t0 := time.Now()
		var prepared context.Context
		var err error
		pprof.Do(ctx, pprof.Labels("phase", "sbom"), func(ctx context.Context) { prepared, err = sbom.Prepare(ctx) })
		r.mu.Lock()
		defer r.mu.Unlock()
		r.busy += time.Since(t0)
		if err != nil {
			r.fail(err)
			return
		}
		r.ctx = prepared
	}()
	return r
}

// fail records the first error and stops the rest; r.mu is held.
func (r *sbomRun) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.cancel()
}

// add starts generating img's SBOM (nothing when SBOMs are off).
func (r *sbomRun) add(img build.Image) {
	if !r.plan.Enabled {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		<-r.prepared
		r.mu.Lock()
		ctx := r.ctx
		r.mu.Unlock()
		t0 := time.Now()
		var doc sbom.Document
		var err error
		pprof.Do(ctx, pprof.Labels("phase", "sbom"), func(ctx context.Context) {
			doc, err = generate(ctx, r.store, sbom.Image{ID: img.ID, Name: r.repo, Platform: img.Platform}, r.plan)
		})
		took := time.Since(t0)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.busy += took
		if err != nil {
			r.fail(err)
			return
		}
		r.docs[oci.PlatformString(img.Platform)] = doc
		logf(r.log, "%s: SBOM (%s, %d bytes) generated in %.1fs", oci.PlatformString(img.Platform), doc.Format, len(doc.Data), took.Seconds())
	}()
}

// generate catalogs img and encodes its SBOM; with a pinned stamp, the
// document's identity derives from the image ID (its config digest, which
// covers the layers' diff IDs and the platform).
func generate(ctx context.Context, store storage.Store, img sbom.Image, plan SBOMPlan) (sbom.Document, error) {
	s, err := sbom.Catalog(ctx, store, img, plan.Version)
	if err != nil {
		return sbom.Document{}, err
	}
	doc, err := sbom.Encode(s, plan.Format, plan.stamp(), "sha256:"+img.ID)
	if err != nil {
		return sbom.Document{}, fmt.Errorf("the %s SBOM: %w", oci.PlatformString(img.Platform), err)
	}
	return doc, nil
}

// wait waits for every SBOM started and returns them by platform, with the
// time spent generating them and the time this wait took.
func (r *sbomRun) wait() (docs map[string]sbom.Document, busy, waited time.Duration, err error) {
	t0 := time.Now()
	r.wg.Wait()
	waited = time.Since(t0)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, 0, 0, fmt.Errorf("generating the SBOM: %w; nothing was tagged", r.err)
	}
	return r.docs, r.busy, waited, nil
}

// stop cancels what is still running and waits for it (the images are
// unmounted before the store shuts down).
func (r *sbomRun) stop() {
	r.cancel()
	r.wg.Wait()
}
