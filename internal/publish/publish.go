// Package publish pushes one stored image to a registry once per compression
// format, each variant by digest only (no tag is created or moved here).
package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/registry"
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
	// this run, so no push reuses blobs recorded by an unrelated one (the
	// copy publisher; the stream publisher uses no cache).
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
	// RequestTimeout); auth and TLS are SystemContext's job. An upload that
	// fails transiently is retried (the stream publisher: that blob or
	// manifest, from its staged file; the copy publisher: the whole variant);
	// one that makes no progress for RequestTimeout is abandoned as a stall
	// (and retried).
	Registry registry.Options
	// Publisher is PublisherStream (default, "") or PublisherCopy.
	Publisher string
	// ZstdChunkedEncoder is EncoderParallel (default, "") or
	// EncoderUpstream; only the stream publisher chooses.
	ZstdChunkedEncoder string
	// TmpDir holds compressed layers between compression and upload (the
	// stream publisher; the files are unlinked at once); "" means
	// DefaultTmpDir().
	TmpDir string
	// Early, if set, holds layers compressed while the image was being
	// built (StartEarly); the stream publisher uses them.
	Early *Early
}

// Image names one stored image and the platform it was built for.
type Image struct {
	ID       string
	Platform ocispec.Platform
}

// Publishers: how the variants of one image are made.
const (
	// PublisherStream reads each layer from storage once, compresses it in
	// every format at the same time, and uploads the results; zstd:chunked
	// uses pkg/zstdchunked on every core unless ZstdChunkedEncoder says
	// otherwise.
	PublisherStream = "stream"
	// PublisherCopy runs one containers/image copy.Image per format, with
	// containers/image's compressors: the reference path.
	PublisherCopy = "copy"
)

// Publishers lists the accepted Options.Publisher values, default first.
var Publishers = []string{PublisherStream, PublisherCopy}

// zstd:chunked encoders the stream publisher can use.
const (
	// EncoderParallel is pkg/zstdchunked: every core, same bytes as upstream.
	EncoderParallel = "parallel"
	// EncoderUpstream is containers/storage's own encoder (one core).
	EncoderUpstream = "upstream"
)

// Encoders lists the accepted Options.ZstdChunkedEncoder values, default first.
var Encoders = []string{EncoderParallel, EncoderUpstream}

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
	if err := opts.validate(); err != nil {
		return nil, err
	}
	destRef, err := docker.NewReferenceUnknownDigest(named)
	if err != nil {
		return nil, err
	}
	r := &reporter{log: opts.Log, pushed: opts.Pushed, start: time.Now()}
	if opts.Publisher == PublisherCopy {
		return publishCopy(ctx, store, img, repo, destRef, fs, opts, r)
	}
	return publishStream(ctx, store, img, repo, destRef, fs, opts, r)
}

func (o Options) validate() error {
	if o.Publisher != "" && !slices.Contains(Publishers, o.Publisher) {
		return fmt.Errorf("publisher %q: must be one of %s", o.Publisher, strings.Join(Publishers, ", "))
	}
	if o.ZstdChunkedEncoder != "" && !slices.Contains(Encoders, o.ZstdChunkedEncoder) {
		return fmt.Errorf("zstd:chunked encoder %q: must be one of %s", o.ZstdChunkedEncoder, strings.Join(Encoders, ", "))
	}
	if o.Publisher == PublisherCopy && o.ZstdChunkedEncoder == EncoderParallel {
		return fmt.Errorf("zstd:chunked encoder %q needs the %q publisher (the %q publisher always uses containers/storage's encoder)", EncoderParallel, PublisherStream, PublisherCopy)
	}
	return nil
}

// systemContext is a copy of SystemContext (never nil) that a push may change.
func (o Options) systemContext() *types.SystemContext {
	if o.SystemContext == nil {
		return &types.SystemContext{}
	}
	copied := *o.SystemContext
	return &copied
}

func (o Options) compressSettings() compressSettings {
	cs := compressSettings{level: o.zstdLevel(), encoder: o.ZstdChunkedEncoder, tmpDir: o.TmpDir}
	if cs.tmpDir == "" {
		cs.tmpDir = DefaultTmpDir()
	}
	return cs
}

// DefaultTmpDir is where layers wait between compression and upload unless
// Options.TmpDir says otherwise: $TMPDIR, else /var/tmp, as containers/image
// does for big files (/tmp is often a small tmpfs). Resolve it before a
// build, which points TMPDIR elsewhere while it runs.
func DefaultTmpDir() string {
	if d := os.Getenv("TMPDIR"); d != "" {
		return d
	}
	return "/var/tmp"
}

func (o Options) zstdLevel() int {
	if o.ZstdLevel == 0 {
		return DefaultZstdLevel
	}
	return o.ZstdLevel
}

// reporter serializes log lines and Pushed calls of variants running
// concurrently.
type reporter struct {
	mu     sync.Mutex
	log    io.Writer
	pushed func(index.Entry, time.Duration)
	start  time.Time
}

func (r *reporter) logf(format string, a ...any) {
	if r.log == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.log, format+"\n", a...)
}

// done reports one pushed variant: the Pushed callback and a log line.
func (r *reporter) done(e index.Entry, repo string, took time.Duration) {
	if r.pushed != nil {
		r.mu.Lock()
		r.pushed(e, took)
		r.mu.Unlock()
	}
	r.logf("pushed %s %s as %s@%s (%d bytes manifest) in %s", oci.PlatformString(*e.Descriptor.Platform), e.Format, repo, e.Descriptor.Digest, e.Descriptor.Size, took.Round(time.Millisecond))
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
	want := f.LayerMediaType()
	for i, l := range m.Layers {
		if l.MediaType != want {
			return fmt.Errorf("%s variant: layer %d (%s) has media type %s, want %s", f, i, l.Digest, l.MediaType, want)
		}
		_, chunked := l.Annotations[oci.AnnotationZstdChunkedChecksum]
		if f == formats.ZstdChunked && !chunked {
			return fmt.Errorf("zstd:chunked variant: layer %d (%s) lacks the %s annotation", i, l.Digest, oci.AnnotationZstdChunkedChecksum)
		}
	}
	return nil
}
