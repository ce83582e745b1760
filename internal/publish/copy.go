package publish

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"golang.org/x/sync/errgroup"

	"github.com/mcbuild/mcbuild/internal/build"
	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/stage"
)

// The copy publisher: one containers/image copy.Image per format. Each copy
// reads every layer from storage again and compresses it with
// containers/image's own compressors (storage's zstd:chunked encoder on one
// core). It is the reference the stream publisher is measured and checked
// against.

// sourceReadMarker is how containers/image's copy annotates an error from
// the stream it uploads (copy/blob.go, errorAnnotationReader): here, the
// layer read from storage and compressed. Not a registry failure, whatever
// it is (an unexpected EOF from a tar the compressor cannot parse looks
// like a cut connection otherwise).
const sourceReadMarker = "happened during read: "

// copyVariant is one copy.Image of src to the destination in format f.
func (p *copyPublisher) copyVariant(ctx context.Context, src types.ImageReference, f formats.Format, progress func(done, total int)) (ocispec.Descriptor, error) {
	algo, err := compression.AlgorithmByName(string(f))
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	opts := p.opts
	sys := p.systemContext()
	sys.CompressionFormat = &algo
	if f.IsZstd() {
		level := p.zstdLevel()
		sys.CompressionLevel = &level
	}
	if opts.BlobInfoCacheDir != "" {
		sys.BlobInfoCacheDir = opts.BlobInfoCacheDir
	}
	policy, err := signature.NewPolicyContext(&signature.Policy{
		// The source is the image this run just built in local storage.
		Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer func() { _ = policy.Destroy() }()

	co := &copy.Options{
		DestinationCtx:        sys,
		ForceManifestMIMEType: ocispec.MediaTypeImageManifest,
		// Without forcing, a push may reuse blobs of another format.
		ForceCompressionFormat: true,
	}
	stall := opts.Registry.RequestTimeoutOrDefault()
	var manifestBytes []byte
	err = registry.GuardStall(ctx, stall, func(ctx context.Context, touch func()) error {
		stopProgress := watchProgress(co, opts.ProgressInterval, progress, stall, touch)
		defer stopProgress()
		var err error
		manifestBytes, err = copy.Image(ctx, policy, p.destRef, src, co)
		return err
	})
	if err != nil {
		if errors.Is(err, registry.ErrNoProgress) {
			return ocispec.Descriptor{}, err
		}
		if strings.Contains(err.Error(), sourceReadMarker) {
			return ocispec.Descriptor{}, &registry.LocalError{Err: fmt.Errorf("reading or compressing a layer from local storage: %w", err)}
		}
		return ocispec.Descriptor{}, err
	}
	if err := CheckLayers(manifestBytes, f); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromBytes(manifestBytes),
		Size:      int64(len(manifestBytes)),
	}, nil
}

// watchProgress follows a copy's progress events: every interval (if > 0)
// it reports blob counts, and it calls touch (the stall guard's) on every
// event. Events flow while layer bytes move to the registry (the progress
// reader sits after compression, right before the upload) and at every
// blob's start and end, so a registry that stops answering, or stops
// reading, lets the guard end the attempt instead of hanging it;
// containers/image sets no response timeout of its own. stall (if > 0) is
// the guard's bound: events are asked for well within it.
func watchProgress(co *copy.Options, interval time.Duration, report func(done, total int), stall time.Duration, touch func()) (stop func()) {
	if (interval <= 0 || report == nil) && stall <= 0 {
		return func() {}
	}
	events := make(chan types.ProgressProperties)
	// Read events come at most once per ProgressInterval while bytes move:
	// keep it well below the stall bound.
	eventEvery := time.Second
	if stall > 0 {
		eventEvery = min(eventEvery, max(stall/4, 10*time.Millisecond))
	}
	co.Progress, co.ProgressInterval = events, eventEvery
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		seen, done := map[digest.Digest]bool{}, map[digest.Digest]bool{}
		var reportC <-chan time.Time
		if interval > 0 && report != nil {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			reportC = tick.C
		}
		for {
			select {
			case ev := <-events:
				touch()
				seen[ev.Artifact.Digest] = true
				if ev.Event == types.ProgressEventDone || ev.Event == types.ProgressEventSkipped {
					done[ev.Artifact.Digest] = true
				}
			case <-reportC:
				if len(seen) > 0 {
					report(len(done), len(seen))
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

// copyPublisher runs one containers/image copy.Image per format,
// concurrently; it compresses every layer itself (sources are not used).
type copyPublisher struct{ target }

func (p *copyPublisher) Publish(ctx context.Context, img build.Image, _ ...stage.Source) ([]index.Entry, error) {
	srcRef, err := istorage.Transport.NewStoreReference(p.store, nil, img.ID)
	if err != nil {
		return nil, fmt.Errorf("image %s in storage: %w", img.ID, err)
	}
	r := p.reporter()
	entries := make([]index.Entry, len(p.formats))
	platform := oci.PlatformString(img.Platform)
	g, gctx := errgroup.WithContext(ctx)
	for i, f := range p.formats {
		g.Go(func() error {
			start := time.Now()
			r.logf("pushing %s %s to %s", platform, f, p.repo)
			var desc ocispec.Descriptor
			onRetry := func(attempt int, wait time.Duration, err error) {
				r.logf("retrying %s %s push in %s (retry %d of %d): %s", platform, f, wait.Round(time.Millisecond), attempt, p.opts.Registry.Retry, reasonOr(err))
			}
			err := registry.Do(gctx, p.opts.Registry, onRetry, func(ctx context.Context) error {
				var err error
				desc, err = p.copyVariant(ctx, srcRef, f, func(done, total int) {
					r.logf("  %s %s: %d of %d blobs pushed (%s)", platform, f, done, total, time.Since(start).Round(time.Second))
				})
				return err
			})
			if err != nil {
				return p.opts.Registry.Explain(fmt.Sprintf("pushing %s %s variant to %s", platform, f, p.repo), err)
			}
			desc.Platform = &img.Platform
			entries[i] = index.Entry{Descriptor: desc, Format: f}
			r.done(entries[i], p.repo, time.Since(start), Stats{BytesCompressed: -1, BytesUploaded: -1})
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return entries, nil
}
