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
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"golang.org/x/sync/errgroup"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/platforms"
	"github.com/mcbuild/mcbuild/internal/registry"
)

// The stream publisher. Layers are read from storage one after another,
// each exactly once; every block read goes to one compressor per format,
// all running at once, into unlinked temporary files. The config is the
// stored one, pushed once (while the first layer compresses) and shared by
// every variant. Then each format has an uploader that pushes its layers as
// they become ready, up to maxParallelUploads at a time (so layer N uploads
// while layer N+1 compresses; at most maxQueuedLayers more wait), then its
// manifest. Blobs and
// manifests go through containers/image's registry client, the same as the
// copy publisher, and a failed upload is retried from its file without
// compressing again.

func publishStream(ctx context.Context, store storage.Store, img Image, repo string, destRef types.ImageReference, fs []formats.Format, opts Options, r *reporter) ([]index.Entry, error) {
	src, err := loadSource(store, img.ID)
	if err != nil {
		return nil, err
	}
	sys := opts.systemContext()
	dest, err := destRef.NewImageDestination(ctx, sys)
	if err != nil {
		return nil, fmt.Errorf("pushing to %s: %w", repo, err)
	}
	defer dest.Close()

	platform := platforms.String(img.Platform)
	cs := opts.compressSettings()
	diffIDs := make([]digest.Digest, len(src.layers))
	for i, l := range src.layers {
		diffIDs[i] = l.diffID
	}
	opts.Early.keep(diffIDs)
	up := &uploader{dest: dest, opts: opts, r: r, platform: platform}
	variants := make([]*variant, len(fs))
	for i, f := range fs {
		r.logf("pushing %s %s to %s", platform, f, repo)
		variants[i] = &variant{format: f, queue: make(chan *stagedBlob, maxQueuedLayers)}
	}

	g, gctx := errgroup.WithContext(ctx)
	configPushed := make(chan struct{})
	g.Go(func() error {
		cfg := src.manifest.Config
		err := up.put(gctx, "", fmt.Sprintf("config %s", cfg.Digest), func(ctx context.Context, touch func()) error {
			_, err := dest.PutBlob(ctx, registry.TouchReader(bytes.NewReader(src.config), touch),
				types.BlobInfo{Digest: cfg.Digest, Size: cfg.Size, MediaType: cfg.MediaType}, none.NoCache, true)
			return err
		})
		if err != nil {
			return opts.Registry.Explain(fmt.Sprintf("pushing %s config (shared by the %s variants) to %s", platform, formats.Join(fs), repo), err)
		}
		close(configPushed)
		return nil
	})
	g.Go(func() error {
		defer func() {
			for _, v := range variants {
				close(v.queue)
			}
		}()
		early, fromCommits := 0, 0
		for _, l := range src.layers {
			staged, fromCommit, err := opts.Early.take(gctx, l, fs, cs)
			if err != nil {
				return err
			}
			if fromCommit {
				fromCommits++
			}
			if staged != nil {
				early++
			} else if staged, err = compressLayer(gctx, store, l, fs, cs); err != nil {
				return err
			}
			for i, v := range variants {
				staged[i].desc.Annotations = mergeAnnotations(l.annotations, staged[i].desc.Annotations)
				select {
				case v.queue <- staged[i]:
				case <-gctx.Done(): // an upload failed
					closeStaged(staged[i:])
					return gctx.Err()
				}
			}
		}
		if opts.Early != nil {
			r.logf("%s: %d of %d layers were compressed during the build (%d from the tars buildah committed, %d read back from storage)",
				platform, early, len(src.layers), fromCommits, early-fromCommits)
		}
		return nil
	})
	for _, v := range variants {
		g.Go(func() error {
			err := up.pushVariant(gctx, v, src, configPushed)
			if err != nil {
				return opts.Registry.Explain(fmt.Sprintf("pushing %s %s variant to %s", platform, v.format, repo), err)
			}
			v.desc.Platform = &img.Platform
			r.done(index.Entry{Descriptor: v.desc, Format: v.format}, repo, time.Since(r.start))
			return nil
		})
	}
	stopProgress := up.reportProgress(variants, len(src.layers))
	err = g.Wait()
	stopProgress()
	for _, v := range variants { // what failed uploads left
		for b := range v.queue {
			b.close()
		}
	}
	if err != nil {
		return nil, err
	}
	entries := make([]index.Entry, len(fs))
	for i, v := range variants {
		entries[i] = index.Entry{Descriptor: v.desc, Format: v.format}
	}
	return entries, nil
}

// maxQueuedLayers bounds the compressed layers of one format waiting for
// their upload: when the registry is slower than the compressors, staging
// stops there instead of filling $TMPDIR with the whole image.
const maxQueuedLayers = 2

// maxParallelUploads is how many layers of one format upload at once.
const maxParallelUploads = 3

// variant is one format's manifest in the making.
type variant struct {
	format formats.Format
	queue  chan *stagedBlob // compressed layers, in order
	pushed atomic.Int32     // layers uploaded so far
	done   atomic.Bool
	desc   ocispec.Descriptor // the pushed manifest, once done
}

type uploader struct {
	dest     types.ImageDestination
	opts     Options
	r        *reporter
	platform string
}

// pushVariant uploads v's layers as they arrive, then its manifest. It
// starts once the config is in: a registry refusing uploads then fails one
// small blob, not every format's layers at once.
func (u *uploader) pushVariant(ctx context.Context, v *variant, src *source, configPushed <-chan struct{}) error {
	select {
	case <-configPushed:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Layers go up maxParallelUploads at a time (as docker push and
	// containers/image do: one connection rarely fills a remote link); the
	// manifest lists them in the order they were compressed, which is the
	// image's.
	layers := make([]ocispec.Descriptor, 0, len(src.layers))
	uploads, uctx := errgroup.WithContext(ctx)
	uploads.SetLimit(maxParallelUploads)
	for b := range v.queue {
		if uctx.Err() != nil { // an upload failed: stop taking layers
			b.close()
			break
		}
		layers = append(layers, b.desc)
		uploads.Go(func() error {
			defer b.close()
			err := u.put(uctx, v.format, fmt.Sprintf("layer %s", b.desc.Digest), func(ctx context.Context, touch func()) error {
				if _, err := b.file.Seek(0, io.SeekStart); err != nil {
					return err
				}
				_, err := u.dest.PutBlob(ctx, registry.TouchReader(b.file, touch),
					types.BlobInfo{Digest: b.desc.Digest, Size: b.desc.Size, MediaType: b.desc.MediaType}, none.NoCache, false)
				return err
			})
			if err == nil {
				v.pushed.Add(1)
			}
			return err
		})
	}
	if err := uploads.Wait(); err != nil {
		return err
	}
	if len(layers) != len(src.layers) {
		return ctx.Err() // the compressing side stopped; its error is the one reported
	}
	m := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      src.manifest.Config,
		Layers:      layers,
		Annotations: src.manifest.Annotations,
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := CheckLayers(mb, v.format); err != nil {
		return err
	}
	err = u.put(ctx, v.format, "manifest", func(ctx context.Context, _ func()) error {
		return u.dest.PutManifest(ctx, mb, nil)
	})
	if err != nil {
		return err
	}
	v.desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	v.done.Store(true)
	return nil
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
		return registry.GuardStall(ctx, stall, op)
	})
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

// mergeAnnotations is a layer's own annotations plus its compressor's.
func mergeAnnotations(layer, compressor map[string]string) map[string]string {
	if len(layer) == 0 {
		return compressor
	}
	out := maps.Clone(layer)
	maps.Copy(out, compressor)
	return out
}
