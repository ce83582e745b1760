package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/build"
	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/stage"
)

// The stream publisher. Package stage gives each layer in every format
// (compressed from storage, all formats at once, unless a source has it);
// the config is the stored one, pushed once (while the first layer
// compresses) and shared by every variant. Each format has an uploader that
// pushes its layers as they become ready, up to maxParallelUploads at a time
// (so layer N uploads while layer N+1 compresses; at most maxQueuedLayers
// more wait), then its manifest. Blobs and manifests go through the run's
// registry session (Options.Dest), so every answer's status is known, and
// a failed upload is retried from its file without compressing again.
type streamPublisher struct{ target }

// streamRun is one image's publish.
type streamRun struct {
	target
	stager   *stage.Stager
	src      *stage.Image
	img      build.Image
	up       *uploader
	variants []*variant
	r        *reporter
}

func (p *streamPublisher) Publish(ctx context.Context, img build.Image, sources ...stage.Source) ([]index.Entry, error) {
	stager := stage.NewStager(p.store, p.formats, p.opts.Stage, sources...)
	src, err := stager.Load(img.ID)
	if err != nil {
		return nil, err
	}
	dest := p.opts.Dest
	if dest == nil {
		return nil, fmt.Errorf("pushing to %s: the stream publisher needs the destination repository (Options.Dest)", p.repo)
	}
	run := &streamRun{target: p.target, stager: stager, src: src, img: img, r: p.reporter()}
	run.up = &uploader{dest: dest, opts: p.opts, r: run.r, platform: oci.PlatformString(img.Platform)}
	for _, f := range p.formats {
		run.r.logf("pushing %s %s to %s", run.up.platform, f, p.repo)
		v := &variant{format: f, queue: make(chan *stage.Blob, maxQueuedLayers), origins: map[stage.Origin]int{}, overrides: map[string]string{}}
		for _, src := range sources {
			if a, ok := src.(interface {
				ManifestAnnotations(formats.Format) map[string]string
			}); ok {
				maps.Copy(v.overrides, a.ManifestAnnotations(f))
			}
		}
		run.variants = append(run.variants, v)
	}
	return run.publish(ctx)
}

// publish runs the config push, the staging and one uploader per format
// at once; the first failure stops them all.
func (s *streamRun) publish(ctx context.Context) ([]index.Entry, error) {
	g, gctx := errgroup.WithContext(ctx)
	s.stager.Prefetch(gctx, s.src)
	configPushed := make(chan struct{})
	g.Go(func() error { return s.pushConfig(gctx, configPushed) })
	g.Go(func() error { return s.stageLayers(gctx) })
	for _, v := range s.variants {
		g.Go(func() error {
			err := s.up.pushVariant(gctx, v, s.src, configPushed)
			if err != nil {
				return s.opts.Registry.Explain(fmt.Sprintf("pushing %s %s variant to %s", s.up.platform, v.format, s.repo), err)
			}
			v.desc.Platform = &s.img.Platform
			s.r.done(index.Entry{Descriptor: v.desc, Format: v.format}, s.repo, time.Since(s.r.start), v.stats())
			return nil
		})
	}
	stopProgress := s.up.reportProgress(s.variants, len(s.src.Layers))
	err := g.Wait()
	stopProgress()
	for _, v := range s.variants { // what failed uploads left
		for b := range v.queue {
			b.Close()
		}
	}
	if err != nil {
		return nil, err
	}
	entries := make([]index.Entry, len(s.variants))
	for i, v := range s.variants {
		entries[i] = index.Entry{Descriptor: v.desc, Format: v.format}
	}
	return entries, nil
}

// pushConfig pushes the stored config, shared by every variant, and closes
// pushed.
func (s *streamRun) pushConfig(ctx context.Context, pushed chan<- struct{}) error {
	cfg := s.src.Manifest.Config
	err := s.up.put(ctx, "", fmt.Sprintf("config %s", cfg.Digest), func(ctx context.Context, touch func()) error {
		return s.up.pushBlob(ctx, cfg, registry.TouchReader(bytes.NewReader(s.src.Config), touch))
	})
	if err != nil {
		return s.opts.Registry.Explain(fmt.Sprintf("pushing %s config (shared by the %s variants) to %s", s.up.platform, formats.Join(s.formats), s.repo), err)
	}
	close(pushed)
	return nil
}

// stageLayers stages every layer in order and hands each format's blob to
// that format's uploader; the queues close when it returns.
func (s *streamRun) stageLayers(ctx context.Context) error {
	defer func() {
		for _, v := range s.variants {
			close(v.queue)
		}
	}()
	origins := map[stage.Origin]int{}
	for _, l := range s.src.Layers {
		blobs, err := s.stager.Stage(ctx, l)
		if err != nil {
			return err
		}
		origins[blobs[0].Origin]++
		for i, v := range s.variants {
			v.origins[blobs[i].Origin]++
			if !blobs[i].Present && l.Size > 0 {
				v.compressed += l.Size
			}
			select {
			case v.queue <- blobs[i]:
			case <-ctx.Done(): // an upload failed
				stage.CloseAll(blobs[i:])
				return ctx.Err()
			}
		}
	}
	if s.stager.CompressesEarly() {
		early := origins[stage.OriginCommitTar] + origins[stage.OriginEarlyStorage]
		s.r.logf("%s: %d of %d layers were compressed during the build (%d from the tars buildah committed, %d read back from storage)",
			s.up.platform, early, len(s.src.Layers), origins[stage.OriginCommitTar], origins[stage.OriginEarlyStorage])
	}
	return nil
}

// maxQueuedLayers bounds the compressed layers of one format waiting for
// their upload: when the registry is slower than the compressors, staging
// stops there instead of filling $TMPDIR with the whole image.
const maxQueuedLayers = 2

// maxParallelUploads is how many layers of one format upload at once.
const maxParallelUploads = 3

// variant is one format's manifest in the making.
type variant struct {
	format   formats.Format
	queue    chan *stage.Blob // compressed layers, in order
	pushed   atomic.Int32     // layers uploaded so far
	uploaded atomic.Int64     // layer bytes sent
	done     atomic.Bool
	desc     ocispec.Descriptor // the pushed manifest, once done
	// overrides are manifest annotations the sources give this format
	// (reuse: the base image of the same compression).
	overrides  map[string]string
	origins    map[stage.Origin]int // layers per origin (staging side)
	compressed int64                // uncompressed bytes compressed (staging side)
}

// annotations are the stored manifest's, with the overrides of keys it has.
func (v *variant) annotations(stored map[string]string) map[string]string {
	if len(v.overrides) == 0 {
		return stored
	}
	out := maps.Clone(stored)
	for k, val := range v.overrides {
		if _, ok := out[k]; ok {
			out[k] = val
		}
	}
	return out
}

// stats are v's figures once it is pushed.
func (v *variant) stats() Stats {
	return Stats{Origins: v.origins, BytesCompressed: v.compressed, BytesUploaded: v.uploaded.Load()}
}

type uploader struct {
	dest     *remote.Repository
	opts     Options
	r        *reporter
	platform string
}

// pushVariant uploads v's layers as they arrive, then its manifest. It
// starts once the config is in: a registry refusing uploads then fails one
// small blob, not every format's layers at once.
func (u *uploader) pushVariant(ctx context.Context, v *variant, src *stage.Image, configPushed <-chan struct{}) error {
	select {
	case <-configPushed:
	case <-ctx.Done():
		return ctx.Err()
	}
	layers, err := u.uploadLayers(ctx, v, len(src.Layers))
	if err != nil {
		return err
	}
	if len(layers) != len(src.Layers) {
		return ctx.Err() // the compressing side stopped; its error is the one reported
	}
	m := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      src.Manifest.Config,
		Layers:      layers,
		Annotations: v.annotations(src.Manifest.Annotations),
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := CheckLayers(mb, v.format); err != nil {
		return err
	}
	err = u.put(ctx, v.format, "manifest", func(ctx context.Context, _ func()) error {
		return u.dest.Push(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}, bytes.NewReader(mb))
	})
	if err != nil {
		return err
	}
	v.desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	v.done.Store(true)
	return nil
}

// uploadLayers uploads v's layers as they arrive, maxParallelUploads at a
// time (as docker push and containers/image do: one connection rarely
// fills a remote link), and returns their descriptors in the order they
// were staged, which is the image's. A blob a source put at the
// destination already (reuse) is not uploaded again.
func (u *uploader) uploadLayers(ctx context.Context, v *variant, n int) ([]ocispec.Descriptor, error) {
	layers := make([]ocispec.Descriptor, 0, n)
	uploads, uctx := errgroup.WithContext(ctx)
	uploads.SetLimit(maxParallelUploads)
	for b := range v.queue {
		if uctx.Err() != nil { // an upload failed: stop taking layers
			b.Close()
			break
		}
		layers = append(layers, b.Desc)
		if b.Present {
			v.pushed.Add(1)
			v.uploaded.Add(b.Uploaded)
			continue
		}
		uploads.Go(func() error {
			defer b.Close()
			err := u.put(uctx, v.format, fmt.Sprintf("layer %s", b.Desc.Digest), func(ctx context.Context, touch func()) error {
				if _, err := b.File.Seek(0, io.SeekStart); err != nil {
					return err
				}
				return u.pushBlob(ctx, b.Desc, registry.TouchReader(b.File, touch))
			})
			if err == nil {
				v.pushed.Add(1)
				v.uploaded.Add(b.Desc.Size)
			}
			return err
		})
	}
	return layers, uploads.Wait()
}

// put runs one upload with the retry policy and the stall bound: op calls
// touch whenever bytes move; an attempt during which nothing moved for the
// request timeout is abandoned as a stall (and retried).
func (u *uploader) put(ctx context.Context, f formats.Format, what string, op func(ctx context.Context, touch func()) error) error {
	onRetry := func(attempt int, wait time.Duration, err error) {
		u.r.logf("retrying %s %s push of the %s in %s (retry %d of %d): %s", u.platform, f, what, wait.Round(time.Millisecond), attempt, u.opts.Registry.Retry, reasonOr(err))
	}
	if f == "" {
		onRetry = func(attempt int, wait time.Duration, err error) {
			u.r.logf("retrying %s %s push in %s (retry %d of %d): %s", u.platform, what, wait.Round(time.Millisecond), attempt, u.opts.Registry.Retry, reasonOr(err))
		}
	}
	stall := u.opts.Registry.RequestTimeoutOrDefault()
	return registry.Do(ctx, u.opts.Registry, onRetry, func(ctx context.Context) error {
		// Retried here as a whole, from the staged file: its requests are
		// sent once (one retry layer).
		return registry.GuardStall(registry.SendOnce(ctx), stall, op)
	})
}

// pushBlob uploads a blob unless the destination has it already (HEAD
// first, as docker push does).
func (u *uploader) pushBlob(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	desc = ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
	if there, err := u.dest.Exists(ctx, desc); err != nil || there {
		return err
	}
	return u.dest.Push(ctx, desc, r)
}

// reportProgress logs, every ProgressInterval, how many layers of each
// unfinished variant are uploaded.
func (u *uploader) reportProgress(variants []*variant, layers int) (stop func()) {
	if u.opts.ProgressInterval <= 0 {
		return func() {}
	}
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(u.opts.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				for _, v := range variants {
					if !v.done.Load() {
						u.r.logf("  %s %s: %d of %d layers pushed (%s)", u.platform, v.format, v.pushed.Load(), layers, time.Since(u.r.start).Round(time.Second))
					}
				}
			case <-quit:
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}
