// Package testimage pushes tiny, valid OCI images and indexes into any oras
// target (a memory store or a real registry) for tests of code that reads
// them back. Layers are small opaque blobs: enough for media types,
// annotations and digests, not for unpacking.
package testimage

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/oci"
)

// Builder pushes into Target; every blob it makes is distinct from every
// other Builder's, unless two are given the same seed.
type Builder struct {
	T      testing.TB
	Target oras.Target
	seed   string
	n      int
}

var builders atomic.Int64

// New returns a Builder for target whose images are unique in this process.
func New(t testing.TB, target oras.Target) *Builder {
	return Seeded(t, target, fmt.Sprintf("%s#%d", t.Name(), builders.Add(1)))
}

// Seeded returns a Builder whose images depend only on seed and the order of
// calls: two Builders with one seed push the same images.
func Seeded(t testing.TB, target oras.Target, seed string) *Builder {
	return &Builder{T: t, Target: target, seed: seed}
}

// Platform parses "os/arch[/variant]".
func Platform(s string) *ocispec.Platform {
	parts := strings.Split(s, "/")
	p := &ocispec.Platform{OS: parts[0]}
	if len(parts) > 1 {
		p.Architecture = parts[1]
	}
	if len(parts) > 2 {
		p.Variant = parts[2]
	}
	return p
}

// Bytes pushes data (an existing blob is fine) and returns its descriptor.
func (b *Builder) Bytes(mediaType string, data []byte) ocispec.Descriptor {
	b.T.Helper()
	d, err := oras.PushBytes(context.Background(), b.Target, mediaType, data)
	if err != nil {
		b.T.Fatalf("push %s: %v", mediaType, err)
	}
	return d
}

// JSON pushes v marshaled.
func (b *Builder) JSON(mediaType string, v any) ocispec.Descriptor {
	b.T.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		b.T.Fatal(err)
	}
	return b.Bytes(mediaType, data)
}

// Layer pushes a unique blob of mediaType; chunked adds the zstd:chunked
// checksum annotation.
func (b *Builder) Layer(mediaType string, chunked bool) ocispec.Descriptor {
	b.T.Helper()
	b.n++
	d := b.Bytes(mediaType, []byte(fmt.Sprintf("layer %s %d", b.seed, b.n)))
	if chunked {
		d.Annotations = map[string]string{oci.AnnotationZstdChunkedChecksum: digest.FromString("toc").String()}
	}
	return d
}

// FormatLayer pushes a layer as mcbuild would publish it in format f.
func (b *Builder) FormatLayer(f formats.Format) ocispec.Descriptor {
	return b.Layer(f.LayerMediaType(), f == formats.ZstdChunked)
}

// Config pushes a unique image config of mediaType for platform ("" for none).
func (b *Builder) Config(mediaType, platform string) ocispec.Descriptor {
	b.T.Helper()
	b.n++
	img := ocispec.Image{Author: fmt.Sprintf("config %s %d", b.seed, b.n)}
	if platform != "" {
		img.Platform = *Platform(platform)
	}
	return b.JSON(mediaType, img)
}

// Manifest pushes an OCI image manifest with config and layers; the returned
// descriptor has no platform.
func (b *Builder) Manifest(config ocispec.Descriptor, layers ...ocispec.Descriptor) ocispec.Descriptor {
	b.T.Helper()
	if layers == nil {
		layers = []ocispec.Descriptor{}
	}
	return b.JSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config,
		Layers:    layers,
	})
}

// Image pushes a two-layer image for platform in format f and returns its
// descriptor as mcbuild's publish step would: platform set, zstd annotation
// on zstd. (Not an index.Entry: internal/index's own tests use this package.)
func (b *Builder) Image(platform string, f formats.Format) ocispec.Descriptor {
	b.T.Helper()
	d := b.Manifest(b.Config(ocispec.MediaTypeImageConfig, platform), b.FormatLayer(f), b.FormatLayer(f))
	d.Platform = Platform(platform)
	if f.IsZstd() {
		d.Annotations = map[string]string{oci.AnnotationZstd: "true"}
	}
	return d
}

// Index pushes an OCI index of children, in order.
func (b *Builder) Index(children ...ocispec.Descriptor) ocispec.Descriptor {
	b.T.Helper()
	if children == nil {
		children = []ocispec.Descriptor{}
	}
	return b.JSON(ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: children,
	})
}

// Tag points ref at d.
func (b *Builder) Tag(d ocispec.Descriptor, ref string) {
	b.T.Helper()
	if err := b.Target.Tag(context.Background(), d, ref); err != nil {
		b.T.Fatalf("tag %s: %v", ref, err)
	}
}
