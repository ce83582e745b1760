// Package publish uploads one stored image to a registry once per
// compression format, each variant by digest only (no tag is created or
// moved here). Two Publishers make the variants: Stream uploads the blobs
// package stage prepares, and Copy runs containers/image's copy.Image per
// format, the reference path.
package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/build"
	"github.com/mcbuild/mcbuild/internal/choice"
	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/stage"
)

// Publisher pushes a stored image once per format.
type Publisher interface {
	// Publish pushes img by digest, once per format, and returns one entry
	// per format in the order of the formats. sources are asked for a
	// layer's blobs before it is compressed (the Copy publisher compresses
	// everything itself and takes none).
	Publish(ctx context.Context, img build.Image, sources ...stage.Source) ([]index.Entry, error)
}

// Kind names a Publisher.
type Kind string

// Publishers: how the variants of one image are made.
const (
	// Stream reads each layer from storage once, compresses it in every
	// format at the same time (package stage) and uploads the results.
	Stream Kind = "stream"
	// Copy runs one containers/image copy.Image per format, with
	// containers/image's compressors: the reference path.
	Copy Kind = "copy"
)

// Kinds lists the publishers, default first.
var Kinds = []Kind{Stream, Copy}

// ParseKind checks a publisher name.
func ParseKind(s string) (Kind, error) { return choice.Parse("publisher", s, Kinds) }

// Options configure pushes.
type Options struct {
	// Dest is the destination repository's client (registry.Session):
	// the stream publisher uploads through it.
	Dest *remote.Repository
	// SystemContext carries auth and TLS settings to containers/image,
	// which the copy publisher pushes with.
	SystemContext *types.SystemContext
	// Registry carries the retry and timeout settings (Retry, RetryDelay,
	// RequestTimeout); auth and TLS are SystemContext's job. An upload that
	// fails transiently is retried (Stream: that blob or manifest, from its
	// staged file; Copy: the whole variant); one that makes no progress for
	// RequestTimeout is abandoned as a stall (and retried).
	Registry registry.Options
	// Stage says how layers are compressed: the zstd level (both
	// publishers), the zstd:chunked encoder and where staged blobs wait
	// (Stream).
	Stage stage.Settings
	// BlobInfoCacheDir keeps containers/image's blob-info cache private to
	// this run, so no push reuses blobs recorded by an unrelated one (Copy;
	// Stream uses no cache).
	BlobInfoCacheDir string
	// Log receives one line per variant started and finished.
	Log io.Writer
	// ProgressInterval, if set, prints a progress line per running variant.
	ProgressInterval time.Duration
	// Pushed, if set, is called after each variant is pushed with the
	// wall time its push took and how its layers were made (variants of one
	// image push concurrently; the calls are serialized).
	Pushed func(e index.Entry, took time.Duration, st Stats)
}

// New returns the publisher kind for store's images, pushing to repo (a
// repository name without tag) in the formats fs.
func New(kind Kind, store storage.Store, repo string, fs []formats.Format, opts Options) (Publisher, error) {
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
	t := target{store: store, repo: repo, destRef: destRef, formats: slices.Clone(fs), opts: opts}
	switch kind {
	case Stream, "":
		return &streamPublisher{t}, nil
	case Copy:
		return &copyPublisher{t}, nil
	}
	_, err = ParseKind(string(kind))
	return nil, err
}

// target is what both publishers push to, and how.
type target struct {
	store   storage.Store
	repo    string
	destRef types.ImageReference
	formats []formats.Format
	opts    Options
}

// systemContext is a copy of SystemContext (never nil) that a push may change.
func (t target) systemContext() *types.SystemContext {
	if t.opts.SystemContext == nil {
		return &types.SystemContext{}
	}
	copied := *t.opts.SystemContext
	return &copied
}

func (t target) zstdLevel() int {
	if t.opts.Stage.Level == 0 {
		return stage.DefaultZstdLevel
	}
	return t.opts.Stage.Level
}

func (t target) reporter() *reporter {
	return &reporter{log: t.opts.Log, pushed: t.opts.Pushed, start: time.Now()}
}

// Stats say how one variant's layers were made.
type Stats struct {
	// Origins counts the layers by where their blob came from: compressed
	// (stage.OriginStorage, OriginCommitTar, OriginEarlyStorage) or reused
	// ("reused-pulled", "reused-base", ...).
	Origins map[stage.Origin]int
	// BytesCompressed is the uncompressed size of the layers this variant
	// compressed; BytesUploaded the layer bytes sent to the registry.
	// -1: not known (the copy publisher).
	BytesCompressed int64
	BytesUploaded   int64
}

// reporter serializes log lines and Pushed calls of variants running
// concurrently.
type reporter struct {
	mu     sync.Mutex
	log    io.Writer
	pushed func(index.Entry, time.Duration, Stats)
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
func (r *reporter) done(e index.Entry, repo string, took time.Duration, st Stats) {
	if r.pushed != nil {
		r.mu.Lock()
		r.pushed(e, took, st)
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
