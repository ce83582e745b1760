package subjects

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/testimage"
)

// fixture is a published index: amd64 and arm64, gzip and zstd:chunked each.
type fixture struct {
	index   ocispec.Descriptor
	entries []Manifest
}

// newFixture pushes the fixture; the same seed gives the same digests.
func newFixture(t testing.TB, target oras.Target, seed string) fixture {
	b := testimage.Seeded(t, target, seed)
	var entries []Manifest
	var descs []ocispec.Descriptor
	for _, v := range []struct {
		platform string
		format   formats.Format
	}{{"linux/amd64", formats.Gzip}, {"linux/arm64", formats.Gzip}, {"linux/amd64", formats.ZstdChunked}, {"linux/arm64", formats.ZstdChunked}} {
		d := b.Image(v.platform, v.format)
		entries = append(entries, Manifest{Descriptor: d, Compression: string(v.format)})
		descs = append(descs, d)
	}
	return fixture{index: b.Index(descs...), entries: entries}
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
