// Package stage turns a stored image's layers into staged blobs: for every
// layer, one compressed blob per format, in an unlinked temporary file with
// its descriptor, ready for an uploader.
//
// A layer's blobs come from the first Source that has them (Early, which
// compressed them while the build ran; later, blobs that exist already),
// and otherwise from compressing the layer's tar read from storage, once,
// into every missing format at the same time.
package stage

import (
	"context"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/opencontainers/go-digest"
	"go.podman.io/storage"

	"github.com/mcbuild/mcbuild/internal/choice"
	"github.com/mcbuild/mcbuild/internal/formats"
)

// DefaultZstdLevel is the zstd level for zstd and zstd:chunked layers.
// Upstream's zstd:chunked default (10) is much slower for a few percent in
// size (README, "Performance").
const DefaultZstdLevel = 3

// Encoder names a zstd:chunked encoder.
type Encoder string

// zstd:chunked encoders.
const (
	// EncoderParallel is pkg/zstdchunked: every core, same bytes as upstream.
	EncoderParallel Encoder = "parallel"
	// EncoderUpstream is containers/storage's own encoder (one core).
	EncoderUpstream Encoder = "upstream"
)

// Encoders lists the encoders, default first.
var Encoders = []Encoder{EncoderParallel, EncoderUpstream}

// ParseEncoder checks an encoder name.
func ParseEncoder(s string) (Encoder, error) {
	return choice.Parse("zstd:chunked encoder", s, Encoders)
}

// DefaultTmpDir is where staged blobs go when the caller has no better
// place: $TMPDIR, else /var/tmp, as containers/image does for big files
// (/tmp is often a small tmpfs). The pipeline resolves it once, before any
// build points TMPDIR elsewhere.
func DefaultTmpDir() string {
	if d := os.Getenv("TMPDIR"); d != "" {
		return d
	}
	return "/var/tmp"
}

// withDefaults fills in what the zero value leaves open.
func (s Settings) withDefaults() Settings {
	if s.Level == 0 {
		s.Level = DefaultZstdLevel
	}
	if s.Encoder == "" {
		s.Encoder = EncoderParallel
	}
	if s.TmpDir == "" {
		s.TmpDir = DefaultTmpDir()
	}
	return s
}

// Origin says where a staged blob came from.
type Origin string

// Origins of staged blobs.
const (
	// OriginStorage: compressed from the layer's tar read from storage
	// after the build.
	OriginStorage Origin = "storage"
	// OriginCommitTar: compressed during the build from the tar buildah
	// wrote while committing the layer (Early).
	OriginCommitTar Origin = "commit-tar"
	// OriginEarlyStorage: compressed during the build from a copy of the
	// layer's tar taken from storage (Early).
	OriginEarlyStorage Origin = "early-storage"
)

// Source is one way of getting a layer's blobs without compressing it now.
type Source interface {
	// Stage returns l in formats fs made with settings s, one blob per
	// format in the order of fs; a nil entry (or a nil slice) is a format
	// this source does not have. An error ends the publish.
	Stage(ctx context.Context, l Layer, fs []formats.Format, s Settings) ([]*Blob, error)
}

// Stager stages the layers of stored images in a fixed list of formats.
type Stager struct {
	store    storage.Store
	read     func(Layer) (io.ReadCloser, error) // a layer's uncompressed tar
	formats  []formats.Format
	settings Settings
	sources  []Source
}

// NewStager stages layers of store's images in formats fs with settings s,
// asking sources (nil ones are skipped) in order before compressing.
func NewStager(store storage.Store, fs []formats.Format, s Settings, sources ...Source) *Stager {
	st := &Stager{store: store, formats: slices.Clone(fs), settings: s.withDefaults()}
	st.read = func(l Layer) (io.ReadCloser, error) { return readLayer(store, l.ID) }
	for _, src := range sources {
		if src != nil && !isNilEarly(src) {
			st.sources = append(st.sources, src)
		}
	}
	return st
}

func isNilEarly(s Source) bool {
	e, ok := s.(*Early)
	return ok && e == nil
}

// Prefetch lets the sources that can (reuse) start on img's layers before
// Stage asks for them, in the background until ctx ends.
func (st *Stager) Prefetch(ctx context.Context, img *Image) {
	for _, src := range st.sources {
		if p, ok := src.(interface {
			Prefetch(context.Context, []Layer, []formats.Format)
		}); ok {
			p.Prefetch(ctx, img.Layers, st.formats)
		}
	}
}

// CompressesEarly reports whether an Early is among the sources.
func (st *Stager) CompressesEarly() bool {
	for _, src := range st.sources {
		if _, ok := src.(*Early); ok {
			return true
		}
	}
	return false
}

// Formats are the formats each layer is staged in.
func (st *Stager) Formats() []formats.Format { return st.formats }

// Settings are the compression settings.
func (st *Stager) Settings() Settings { return st.settings }

// Load reads a stored image's manifest, config and layers, and tells the
// sources that hold layers ahead of time (Early) which ones this image uses.
func (st *Stager) Load(id string) (*Image, error) {
	img, err := Load(st.store, id)
	if err != nil {
		return nil, err
	}
	for _, src := range st.sources {
		if k, ok := src.(interface{ keep([]digest.Digest) }); ok {
			k.keep(img.DiffIDs())
		}
	}
	return img, nil
}

// Stage returns layer l in every format, in the order of Formats: from the
// sources where they have it, compressed from storage otherwise. The layer's
// own annotations are merged into each blob's descriptor.
func (st *Stager) Stage(ctx context.Context, l Layer) ([]*Blob, error) {
	blobs := make([]*Blob, len(st.formats))
	for _, src := range st.sources {
		missing, at := st.missing(blobs)
		if len(missing) == 0 {
			break
		}
		got, err := src.Stage(ctx, l, missing, st.settings)
		if err != nil {
			CloseAll(blobs)
			return nil, err
		}
		for i, b := range got {
			if b != nil {
				blobs[at[i]] = b
			}
		}
	}
	if missing, at := st.missing(blobs); len(missing) > 0 {
		compressed, err := st.compress(ctx, l, missing)
		if err != nil {
			CloseAll(blobs)
			return nil, err
		}
		for i, b := range compressed {
			blobs[at[i]] = b
		}
	}
	for _, b := range blobs {
		b.Desc.Annotations = mergeAnnotations(l.Annotations, b.Desc.Annotations)
	}
	return blobs, nil
}

// compress reads l's tar once and compresses it in every format of fs.
func (st *Stager) compress(ctx context.Context, l Layer, fs []formats.Format) ([]*Blob, error) {
	rc, err := st.read(l)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return compressStream(ctx, rc, l, fs, st.settings)
}

// missing lists the formats without a blob yet and their positions.
func (st *Stager) missing(blobs []*Blob) ([]formats.Format, []int) {
	var fs []formats.Format
	var at []int
	for i, b := range blobs {
		if b == nil {
			fs = append(fs, st.formats[i])
			at = append(at, i)
		}
	}
	return fs, at
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

// CloseAll closes every blob of bs (nil entries are skipped).
func CloseAll(bs []*Blob) {
	for _, b := range bs {
		if b != nil {
			b.Close()
		}
	}
}
