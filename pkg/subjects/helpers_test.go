package subjects

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"github.com/mcbuild/mcbuild/pkg/formats"
	"github.com/mcbuild/mcbuild/pkg/index"
)

// builder pushes tiny images and indexes for tests.
type builder struct {
	t      testing.TB
	target oras.Target
}

func (b *builder) push(mt string, data []byte) ocispec.Descriptor {
	b.t.Helper()
	d := content.NewDescriptorFromBytes(mt, data)
	if err := b.target.Push(context.Background(), d, bytes.NewReader(data)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
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
	return b.push(mt, data)
}

func parsePlat(s string) *ocispec.Platform {
	p := parsePlatform(s)
	return &p
}

// image pushes a one-layer image for platform whose layers are in format f;
// seed makes distinct images.
func (b *builder) image(platform string, f formats.Format, seed string) index.Entry {
	b.t.Helper()
	p := parsePlat(platform)
	cfg := b.pushJSON(ocispec.MediaTypeImageConfig, map[string]any{
		"os": p.OS, "architecture": p.Architecture, "variant": p.Variant,
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest.FromString(seed).String()}},
	})
	mt := ocispec.MediaTypeImageLayerGzip
	if f.IsZstd() {
		mt = ocispec.MediaTypeImageLayerZstd
	}
	layer := b.push(mt, []byte(fmt.Sprintf("layer %s %s %s", platform, f, seed)))
	m := b.pushJSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfg,
		Layers:    []ocispec.Descriptor{layer},
	})
	m.Platform = p
	if f.IsZstd() {
		m.Annotations = map[string]string{formats.AnnotationZstd: "true"}
	}
	return index.Entry{Descriptor: m, Format: f}
}

// index pushes an OCI index of the children, in order.
func (b *builder) index(children ...ocispec.Descriptor) ocispec.Descriptor {
	b.t.Helper()
	return b.pushJSON(ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: children,
	})
}

// fixture is a published index: amd64 and arm64, gzip and zstd:chunked each.
type fixture struct {
	index   ocispec.Descriptor
	entries []index.Entry
}

func newFixture(t testing.TB, target oras.Target, seed string) fixture {
	b := &builder{t: t, target: target}
	entries := []index.Entry{
		b.image("linux/amd64", formats.Gzip, seed),
		b.image("linux/arm64", formats.Gzip, seed),
		b.image("linux/amd64", formats.ZstdChunked, seed),
		b.image("linux/arm64", formats.ZstdChunked, seed),
	}
	var descs []ocispec.Descriptor
	for _, e := range entries {
		descs = append(descs, e.Descriptor)
	}
	return fixture{index: b.index(descs...), entries: entries}
}

// mapFetcher serves bytes by digest without checking them (an untrusted
// registry).
type mapFetcher map[digest.Digest][]byte

func (m mapFetcher) Fetch(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	b, ok := m[d.Digest]
	if !ok {
		return nil, errdef.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// add stores data and returns its descriptor.
func (m mapFetcher) add(mt string, data []byte) ocispec.Descriptor {
	d := content.NewDescriptorFromBytes(mt, data)
	m[d.Digest] = data
	return d
}

func (m mapFetcher) addJSON(t testing.TB, mt string, v any) ocispec.Descriptor {
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return m.add(mt, data)
}

func mismatchStrings(ms []Mismatch) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.String()
	}
	return out
}
