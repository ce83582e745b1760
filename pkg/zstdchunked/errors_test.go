package zstdchunked

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Bad input fails like upstream's (an error from Close, no hang), and empty
// input gives upstream's bytes.
func TestInputErrors(t *testing.T) {
	for _, in := range [][]byte{nil, bytes.Repeat([]byte("not a tar "), 1000), mkTar(t, cases()["mixed"])[:5000]} {
		var ob, ub bytes.Buffer
		ow, _ := NewWriter(&ob, map[string]string{}, 3)
		uw, _ := NewUpstreamWriter(&ub, map[string]string{}, 3)
		_, owErr := ow.Write(in)
		_, uwErr := uw.Write(in)
		oErr := errors.Join(owErr, ow.Close())
		uErr := errors.Join(uwErr, uw.Close())
		if (oErr == nil) != (uErr == nil) {
			t.Errorf("%d bytes in: ours %v, upstream %v", len(in), oErr, uErr)
		}
		if oErr == nil && !bytes.Equal(ob.Bytes(), ub.Bytes()) {
			t.Errorf("%d bytes in: output differs", len(in))
		}
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestDestinationError(t *testing.T) {
	tarball := mkTar(t, cases()["many-small"])
	w, _ := NewWriter(&failWriter{n: 100000}, map[string]string{}, 3)
	_, werr := w.Write(tarball)
	if err := errors.Join(werr, w.Close()); err == nil {
		t.Fatal("no error from a failing destination")
	}
}

// A path twice fails in tar-split's packer, upstream and here.
func TestDuplicatePath(t *testing.T) {
	data := []byte("x")
	in := mkTar(t, []entry{{hdr: tar.Header{Name: "a", Typeflag: tar.TypeReg}, data: data}, {hdr: tar.Header{Name: "./a", Typeflag: tar.TypeReg}, data: data}})
	var ob, ub bytes.Buffer
	ow, _ := NewWriter(&ob, map[string]string{}, 3)
	uw, _ := NewUpstreamWriter(&ub, map[string]string{}, 3)
	_, owErr := ow.Write(in)
	_, uwErr := uw.Write(in)
	oErr := errors.Join(owErr, ow.Close())
	uErr := errors.Join(uwErr, uw.Close())
	if oErr == nil || uErr == nil {
		t.Errorf("ours %v, upstream %v", oErr, uErr)
	}
}

// Sparse entries are refused, naming the file. Upstream either fails too
// (GNU type 'S') or writes a stream that does not decompress to the tar it
// was given, which is why. testdata/sparse holds a 64 KiB file with two
// holes, written by GNU tar 1.34 (--sparse --format=gnu, and --format=pax
// with --sparse-version 0.1 and 1.0).
func TestSparseRefused(t *testing.T) {
	files, err := filepath.Glob("testdata/sparse/*.tar")
	if err != nil || len(files) != 3 {
		t.Fatalf("sparse fixtures: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			w, _ := NewWriter(io.Discard, map[string]string{}, 3)
			_, werr := w.Write(in)
			err = errors.Join(werr, w.Close())
			if !errors.Is(err, ErrSparse) || !strings.Contains(err.Error(), `"f" is a sparse file`) {
				t.Errorf("err = %v, want ErrSparse naming \"f\"", err)
			}
			var ub bytes.Buffer
			uw, _ := NewUpstreamWriter(&ub, map[string]string{}, 3)
			_, uwErr := uw.Write(in)
			if errors.Join(uwErr, uw.Close()) != nil {
				return
			}
			dec, _ := zstd.NewReader(nil)
			plain, err := dec.DecodeAll(ub.Bytes(), nil)
			if err == nil && bytes.Equal(plain, in) {
				t.Errorf("upstream's stream now decompresses to the sparse tar: refusing sparse entries may no longer be needed")
			}
		})
	}
}
