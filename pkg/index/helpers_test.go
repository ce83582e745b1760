package index

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"github.com/mcbuild/mcbuild/pkg/formats"
)

// plat parses "os/arch[/variant]".
func plat(s string) *ocispec.Platform {
	parts := strings.Split(s, "/")
	p := &ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) > 2 {
		p.Variant = parts[2]
	}
	return p
}

// fakeDesc is a manifest descriptor that exists nowhere (for Assemble).
func fakeDesc(platform, seed string) ocispec.Descriptor {
	d := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromString(seed),
		Size:      int64(100 + len(seed)),
	}
	if platform != "" {
		d.Platform = plat(platform)
	}
	return d
}

func entry(platform string, f formats.Format, seed string) Entry {
	return Entry{Descriptor: fakeDesc(platform, seed), Format: f}
}

// builder pushes tiny images and indexes into an oras target.
type builder struct {
	t      testing.TB
	ctx    context.Context
	target oras.Target
	n      int
}

func newBuilder(t testing.TB, target oras.Target) *builder {
	return &builder{t: t, ctx: context.Background(), target: target}
}

func (b *builder) pushBytes(mt string, data []byte) ocispec.Descriptor {
	b.t.Helper()
	d, err := oras.PushBytes(b.ctx, b.target, mt, data)
	if err != nil {
		b.t.Fatalf("push %s: %v", mt, err)
	}
	return d
}

func (b *builder) pushJSON(mt string, v any) ocispec.Descriptor {
	b.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.pushBytes(mt, data)
}

// layer pushes a unique small blob with the given media type; chunked adds
// the zstd:chunked checksum annotation.
func (b *builder) layer(mt string, chunked bool) ocispec.Descriptor {
	b.t.Helper()
	b.n++
	d := b.pushBytes(mt, []byte(strings.Repeat("l", b.n)))
	if chunked {
		d.Annotations = map[string]string{AnnotationZstdChunkedChecksum: digest.FromString("toc").String()}
	}
	return d
}

func (b *builder) gzipLayer() ocispec.Descriptor {
	return b.layer(ocispec.MediaTypeImageLayerGzip, false)
}
func (b *builder) zstdLayer() ocispec.Descriptor {
	return b.layer(ocispec.MediaTypeImageLayerZstd, false)
}
func (b *builder) chunkedLayer() ocispec.Descriptor {
	return b.layer(ocispec.MediaTypeImageLayerZstd, true)
}

// config pushes an image config for platform ("" for none).
func (b *builder) config(mt, platform string) ocispec.Descriptor {
	b.t.Helper()
	b.n++
	img := ocispec.Image{Author: strings.Repeat("a", b.n)}
	if platform != "" {
		img.Platform = *plat(platform)
	}
	return b.pushJSON(mt, img)
}

// image pushes an OCI image manifest (config of platform) with layers; the
// returned descriptor has no platform.
func (b *builder) image(platform string, layers ...ocispec.Descriptor) ocispec.Descriptor {
	b.t.Helper()
	if layers == nil {
		layers = []ocispec.Descriptor{}
	}
	return b.pushJSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    b.config(ocispec.MediaTypeImageConfig, platform),
		Layers:    layers,
	})
}

func (b *builder) gzipImage(platform string) ocispec.Descriptor {
	return b.image(platform, b.gzipLayer(), b.gzipLayer())
}

func (b *builder) chunkedImage(platform string) ocispec.Descriptor {
	return b.image(platform, b.chunkedLayer(), b.chunkedLayer())
}

// index pushes an OCI index of children.
func (b *builder) index(children ...ocispec.Descriptor) ocispec.Descriptor {
	b.t.Helper()
	if children == nil {
		children = []ocispec.Descriptor{}
	}
	return b.pushJSON(ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: children,
	})
}

func (b *builder) tag(d ocispec.Descriptor, ref string) {
	b.t.Helper()
	if err := b.target.Tag(b.ctx, d, ref); err != nil {
		b.t.Fatalf("tag %s: %v", ref, err)
	}
}

// on returns d with platform set.
func on(d ocispec.Descriptor, platform string) ocispec.Descriptor {
	d.Platform = plat(platform)
	return d
}

// annotate returns d with one more annotation.
func annotate(d ocispec.Descriptor, k, v string) ocispec.Descriptor {
	ann := map[string]string{}
	for kk, vv := range d.Annotations {
		ann[kk] = vv
	}
	ann[k] = v
	d.Annotations = ann
	return d
}

// summary renders entries as "platform format digest-prefix" lines.
func summary(entries []Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = platformKey(e.Descriptor.Platform) + " " + string(e.Format) + " " + e.Descriptor.Digest.Encoded()[:8]
	}
	return out
}

func short(d ocispec.Descriptor) string { return d.Digest.Encoded()[:8] }
