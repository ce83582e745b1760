// Package publish pushes one stored image to a registry once per compression
// format, each variant by digest only (no tag is created or moved here).
package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"golang.org/x/sync/errgroup"

	"github.com/mcbuild/mcbuild/pkg/formats"
	"github.com/mcbuild/mcbuild/pkg/index"
	"github.com/mcbuild/mcbuild/pkg/platforms"
	"github.com/mcbuild/mcbuild/pkg/registry"
)

// DefaultZstdLevel is the zstd level used for zstd and zstd:chunked layers.
// Upstream's zstd:chunked default (10) runs at about 16 MiB/s on two cores;
// level 3 is about four times faster for a few percent in size.
const DefaultZstdLevel = 3

// Options configure pushes.
type Options struct {
	// SystemContext carries auth and TLS settings for the destination.
	SystemContext *types.SystemContext
	// ZstdLevel is the level for zstd and zstd:chunked; 0 means DefaultZstdLevel.
	ZstdLevel int
	// BlobInfoCacheDir keeps containers/image's blob-info cache private to
	// this run, so no push reuses blobs recorded by an unrelated one.
	BlobInfoCacheDir string
	// Log receives one line per variant started and finished.
	Log io.Writer
	// ProgressInterval, if set, prints a progress line per running variant.
	ProgressInterval time.Duration
	// Pushed, if set, is called after each variant is pushed with the
	// wall time its push took (variants of one image push concurrently;
	// the calls are serialized).
	Pushed func(e index.Entry, took time.Duration)
	// Registry carries the retry and timeout settings (Retry, RetryDelay,
	// RequestTimeout); auth and TLS are SystemContext's job. A variant push
	// that fails transiently is retried as a whole; one that makes no
	// progress for RequestTimeout is abandoned as a stall (and retried).
	Registry registry.Options
}

// Image names one stored image and the platform it was built for.
type Image struct {
	ID       string
	Platform ocispec.Platform
}

// Publish pushes img to repo (a repository name without tag) once per format,
// concurrently, and returns one entry per format in the order of fs.
func Publish(ctx context.Context, store storage.Store, img Image, repo string, fs []formats.Format, opts Options) ([]index.Entry, error) {
	named, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", repo, err)
	}
	if !reference.IsNameOnly(named) {
		return nil, fmt.Errorf("repository %q: must not carry a tag or digest", repo)
	}
	destRef, err := docker.NewReferenceUnknownDigest(named)
	if err != nil {
		return nil, err
	}
	srcRef, err := istorage.Transport.NewStoreReference(store, nil, img.ID)
	if err != nil {
		return nil, fmt.Errorf("image %s in storage: %w", img.ID, err)
	}
	entries := make([]index.Entry, len(fs))
	var logMu sync.Mutex
	logf := func(format string, a ...any) {
		if opts.Log == nil {
			return
		}
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(opts.Log, format+"\n", a...)
	}
	g, gctx := errgroup.WithContext(ctx)
	for i, f := range fs {
		g.Go(func() error {
			start := time.Now()
			platform := platforms.String(img.Platform)
			logf("pushing %s %s to %s", platform, f, repo)
			var desc ocispec.Descriptor
			onRetry := func(attempt int, wait time.Duration, err error) {
				logf("retrying %s %s push in %s (retry %d of %d): %s", platform, f, wait.Round(time.Millisecond), attempt, opts.Registry.Retry, reasonOr(err))
			}
			err := registry.Do(gctx, opts.Registry, onRetry, func(ctx context.Context) error {
				var err error
				desc, err = pushVariant(ctx, srcRef, destRef, f, opts, func(done, total int) {
					logf("  %s %s: %d of %d blobs pushed (%s)", platform, f, done, total, time.Since(start).Round(time.Second))
				})
				return err
			})
			if err != nil {
				return opts.Registry.Explain(fmt.Sprintf("pushing %s %s variant to %s", platform, f, repo), err)
			}
			desc.Platform = &img.Platform
			entries[i] = index.Entry{Descriptor: desc, Format: f}
			if opts.Pushed != nil {
				logMu.Lock() // variants run concurrently; the callback need not be safe for that
				opts.Pushed(entries[i], time.Since(start))
				logMu.Unlock()
			}
			logf("pushed %s %s as %s@%s (%d bytes manifest) in %s", platform, f, repo, desc.Digest, desc.Size, time.Since(start).Round(time.Millisecond))
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return entries, nil
}

func pushVariant(ctx context.Context, src, dest types.ImageReference, f formats.Format, opts Options, progress func(done, total int)) (ocispec.Descriptor, error) {
	algo, err := compression.AlgorithmByName(string(f))
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	sys := &types.SystemContext{}
	if opts.SystemContext != nil {
		copied := *opts.SystemContext
		sys = &copied
	}
	sys.CompressionFormat = &algo
	if f.IsZstd() {
		level := opts.ZstdLevel
		if level == 0 {
			level = DefaultZstdLevel
		}
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
	attemptCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopProgress := watchProgress(co, opts.ProgressInterval, progress, stall, func() {
		cancel(&registry.StallError{After: stall})
	})
	manifestBytes, err := copy.Image(attemptCtx, policy, dest, src, co)
	stopProgress()
	if err != nil {
		var se *registry.StallError
		if errors.As(context.Cause(attemptCtx), &se) && ctx.Err() == nil {
			// containers/image's own message already ends with the cause.
			return ocispec.Descriptor{}, fmt.Errorf("%v%.0w", err, se)
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
// it reports blob counts, and when no event arrived for stall (if > 0) it
// calls onStall once. Events flow while layer bytes move to the registry
// (the progress reader sits after compression, right before the upload) and
// at every blob's start and end, so a registry that stops answering, or
// stops reading, ends the attempt instead of hanging it; containers/image
// sets no response timeout of its own.
func watchProgress(co *copy.Options, interval time.Duration, report func(done, total int), stall time.Duration, onStall func()) (stop func()) {
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
		var reportC, stallC <-chan time.Time
		if interval > 0 && report != nil {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			reportC = tick.C
		}
		last := time.Now()
		if stall > 0 {
			check := time.NewTicker(max(stall/10, 5*time.Millisecond))
			defer check.Stop()
			stallC = check.C
		}
		stalled := false
		for {
			select {
			case ev := <-events:
				last = time.Now()
				seen[ev.Artifact.Digest] = true
				if ev.Event == types.ProgressEventDone || ev.Event == types.ProgressEventSkipped {
					done[ev.Artifact.Digest] = true
				}
			case <-reportC:
				if len(seen) > 0 {
					report(len(done), len(seen))
				}
			case <-stallC:
				if !stalled && time.Since(last) > stall {
					stalled = true
					onStall()
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

func reasonOr(err error) string {
	if r := registry.Reason(err); r != "" {
		return registry.Redact(r + ": " + err.Error())
	}
	return registry.Redact(err.Error())
}

// CheckLayers verifies that every layer of an OCI manifest is in format f.
// containers/image has been seen to reuse blobs of another format when not
// forced; this makes such a mistake an error instead of a mislabeled variant.
func CheckLayers(manifestBytes []byte, f formats.Format) error {
	var m ocispec.Manifest
	if err := json.Unmarshal(manifestBytes, &m); err != nil {
		return fmt.Errorf("reading pushed manifest: %w", err)
	}
	want := ocispec.MediaTypeImageLayerGzip
	if f.IsZstd() {
		want = ocispec.MediaTypeImageLayerZstd
	}
	for i, l := range m.Layers {
		if l.MediaType != want {
			return fmt.Errorf("%s variant: layer %d (%s) has media type %s, want %s", f, i, l.Digest, l.MediaType, want)
		}
		_, chunked := l.Annotations[ChunkedManifestChecksumAnnotation]
		if f == formats.ZstdChunked && !chunked {
			return fmt.Errorf("zstd:chunked variant: layer %d (%s) lacks the %s annotation", i, l.Digest, ChunkedManifestChecksumAnnotation)
		}
	}
	return nil
}

// ChunkedManifestChecksumAnnotation marks a zstd:chunked layer (its TOC digest).
const ChunkedManifestChecksumAnnotation = "io.github.containers.zstd-chunked.manifest-checksum"
