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

// writeBoth writes in, in one Write, through our encoder and upstream's at
// level 3, and returns each one's output and error (Write's or Close's).
func writeBoth(in []byte) (ours, up []byte, oErr, uErr error) {
	one := func(newWriter func(io.Writer, map[string]string, int) (io.WriteCloser, error)) ([]byte, error) {
		var b bytes.Buffer
		w, err := newWriter(&b, map[string]string{}, 3)
		if err != nil {
			return nil, err
		}
		_, werr := w.Write(in)
		return b.Bytes(), errors.Join(werr, w.Close())
	}
	ours, oErr = one(func(w io.Writer, m map[string]string, l int) (io.WriteCloser, error) { return NewWriter(w, m, l) })
	up, uErr = one(NewUpstreamWriter)
	return ours, up, oErr, uErr
}

// Bad input fails like upstream's (an error from Close, no hang), and empty
// input gives upstream's bytes.
func TestInputErrors(t *testing.T) {
	for _, in := range [][]byte{nil, bytes.Repeat([]byte("not a tar "), 1000), mkTar(t, cases()["mixed"])[:5000]} {
		ours, up, oErr, uErr := writeBoth(in)
		if (oErr == nil) != (uErr == nil) {
			t.Errorf("%d bytes in: ours %v, upstream %v", len(in), oErr, uErr)
		}
		if oErr == nil && !bytes.Equal(ours, up) {
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
	_, _, oErr, uErr := writeBoth(in)
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
			_, up, err, uErr := writeBoth(in)
			if !errors.Is(err, ErrSparse) || !strings.Contains(err.Error(), `"f" is a sparse file`) {
				t.Errorf("err = %v, want ErrSparse naming \"f\"", err)
			}
			if uErr != nil {
				return
			}
			dec, _ := zstd.NewReader(nil)
			plain, err := dec.DecodeAll(up, nil)
			if err == nil && bytes.Equal(plain, in) {
				t.Errorf("upstream's stream now decompresses to the sparse tar: refusing sparse entries may no longer be needed")
			}
		})
	}
}
