package reuse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/pgzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/stage"
)

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := pgzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil || zw.Close() != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// oneByteReader hands out one byte per Read, as a slow connection would.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

// TestVerifier: the blob passes through unchanged when it holds the layer;
// otherwise the error names the mismatch, and the last byte never goes out
// before the checks pass (an upload fed from it cannot complete).
func TestVerifier(t *testing.T) {
	tarBytes := bytes.Repeat([]byte("layer content "), 5000)
	blob := gzipped(t, tarBytes)
	other := gzipped(t, []byte("other content"))
	desc := func(b []byte) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: oci.MediaTypeImageLayerGzip, Digest: digest.FromBytes(b), Size: int64(len(b))}
	}
	layer := stage.Layer{ID: "l", DiffID: digest.FromBytes(tarBytes)}
	for _, tc := range []struct {
		name    string
		served  []byte
		desc    ocispec.Descriptor
		trusted bool
		want    string // "" passes
	}{
		{name: "holds the layer", served: blob, desc: desc(blob)},
		{name: "trusted", served: blob, desc: desc(blob), trusted: true},
		{name: "other layer, honest descriptor", served: other, desc: desc(other), want: "decompresses to"},
		{name: "other layer, trusted: digest still checked", served: other, desc: desc(blob), trusted: true, want: "bytes"},
		{name: "bytes not the digest", served: append(bytes.Clone(blob[:len(blob)-1]), blob[len(blob)-1]^1), desc: desc(blob), want: "hash to"},
		{name: "short", served: blob[:len(blob)-10], desc: desc(blob), want: "bytes, its descriptor says"},
		{name: "long", served: append(bytes.Clone(blob), 0), desc: desc(blob), want: "more than"},
		{name: "not gzip", served: tarBytes[:100], desc: desc(tarBytes[:100]), want: "not gzip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, slow := range []bool{false, true} {
				var src io.Reader = bytes.NewReader(tc.served)
				if slow {
					src = oneByteReader{src}
				}
				v, err := newVerifier(io.NopCloser(src), layer, Candidate{Desc: tc.desc, Trusted: tc.trusted})
				if err != nil {
					t.Fatal(err)
				}
				var got bytes.Buffer
				_, err = io.Copy(&got, v)
				v.Close()
				if tc.want == "" {
					if err != nil || !bytes.Equal(got.Bytes(), tc.served) {
						t.Errorf("slow %v: %d bytes out, err %v; want the blob unchanged", slow, got.Len(), err)
					}
					continue
				}
				if err == nil || !errors.Is(err, errMismatch) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("slow %v: err = %v, want a mismatch mentioning %q", slow, err, tc.want)
				}
				if int64(got.Len()) >= tc.desc.Size {
					t.Errorf("slow %v: %d bytes went out, all the descriptor's %d: the upload could have completed", slow, got.Len(), tc.desc.Size)
				}
			}
		})
	}
}

// TestTOCRange: the TOC checksum is the digest of the bytes at the TOC's
// position, however the stream is cut.
func TestTOCRange(t *testing.T) {
	data := []byte("0123456789abcdefghij")
	toc := data[5:12]
	ann := map[string]string{oci.AnnotationZstdChunkedPosition: "5:7:100:1"}
	for _, cut := range []int{1, 3, 6, 20} {
		r, err := tocRange(ann)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(data); i += cut {
			r.Write(data[i:min(i+cut, len(data))])
		}
		if err := r.check(digest.FromBytes(toc).String()); err != nil {
			t.Errorf("cut %d: %v", cut, err)
		}
		if err := r.check(digest.FromBytes(data).String()); err == nil {
			t.Errorf("cut %d: a wrong checksum passed", cut)
		}
	}
	for _, bad := range []string{"", "5", "x:7:1:1", "5:0:1:1", "-1:3:1:1"} {
		if _, err := tocRange(map[string]string{oci.AnnotationZstdChunkedPosition: bad}); err == nil {
			t.Errorf("position %q accepted", bad)
		}
	}
}
