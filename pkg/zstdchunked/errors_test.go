package zstdchunked

import (
	"archive/tar"
	"bytes"
	"errors"
	"testing"
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
