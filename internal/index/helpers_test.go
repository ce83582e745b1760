package index

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/testimage"
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

// builder adds the shapes index tests need to testimage's.
type builder struct{ *testimage.Builder }

func newBuilder(t testing.TB, target oras.Target) *builder {
	return &builder{testimage.New(t, target)}
}

func (b *builder) gzipLayer() ocispec.Descriptor {
	return b.Layer(ocispec.MediaTypeImageLayerGzip, false)
}
func (b *builder) zstdLayer() ocispec.Descriptor {
	return b.Layer(ocispec.MediaTypeImageLayerZstd, false)
}
func (b *builder) chunkedLayer() ocispec.Descriptor {
	return b.Layer(ocispec.MediaTypeImageLayerZstd, true)
}

// image pushes an OCI image manifest (config of platform) with layers; the
// returned descriptor has no platform.
func (b *builder) image(platform string, layers ...ocispec.Descriptor) ocispec.Descriptor {
	b.T.Helper()
	return b.Manifest(b.Config(ocispec.MediaTypeImageConfig, platform), layers...)
}

func (b *builder) gzipImage(platform string) ocispec.Descriptor {
	return b.image(platform, b.gzipLayer(), b.gzipLayer())
}

func (b *builder) chunkedImage(platform string) ocispec.Descriptor {
	return b.image(platform, b.chunkedLayer(), b.chunkedLayer())
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
