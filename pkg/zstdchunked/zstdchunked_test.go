package zstdchunked

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"go.podman.io/storage/pkg/chunked/compressor"
)

type entry struct {
	hdr  tar.Header
	data []byte
}

var mtime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func mkTar(t testing.TB, es []entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := e.hdr
		if h.ModTime.IsZero() {
			h.ModTime = mtime
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if len(e.data) > 0 {
			if _, err := tw.Write(e.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func textBytes(r *rand.Rand, n int) []byte {
	words := []string{"GET", "POST", "/api/v1/items", "200", "404", "svc-a", "svc-b", "took", "ms", "request", "id", "\n"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(r.IntN(100000)))
	}
	return b.Bytes()[:n]
}

// withHoles is random data with zero runs of various lengths (some >= 1024).
func withHoles(r *rand.Rand, n int) []byte {
	b := randBytes(r, n)
	for i := 0; i < n; {
		run := []int{1, 63, 64, 1023, 1024, 1025, 5000, 70000}[r.IntN(8)]
		if i+run > n {
			run = n - i
		}
		clear(b[i : i+run])
		i += run + r.IntN(100000)
	}
	return b
}

func cases() map[string][]entry {
	r := rand.New(rand.NewPCG(1, 2))
	long := strings.Repeat("very-long-directory-name/", 12) + "file.txt"
	return map[string][]entry{
		"empty-archive": nil,
		"one-small":     {{hdr: tar.Header{Name: "a.txt", Typeflag: tar.TypeReg}, data: []byte("hello\n")}},
		"empty-file":    {{hdr: tar.Header{Name: "e", Typeflag: tar.TypeReg}}},
		"mixed": {
			{hdr: tar.Header{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o755}},
			{hdr: tar.Header{Name: "dir/rand", Typeflag: tar.TypeReg}, data: randBytes(r, 300_000)},
			{hdr: tar.Header{Name: "dir/text", Typeflag: tar.TypeReg}, data: textBytes(r, 500_000)},
			{hdr: tar.Header{Name: "dir/empty", Typeflag: tar.TypeReg}},
			{hdr: tar.Header{Name: "dir/link", Typeflag: tar.TypeSymlink, Linkname: "text"}},
			{hdr: tar.Header{Name: "dir/hard", Typeflag: tar.TypeLink, Linkname: "dir/text"}},
			{hdr: tar.Header{Name: long, Typeflag: tar.TypeReg}, data: []byte("long name")},
			{hdr: tar.Header{Name: "x", Typeflag: tar.TypeReg, Format: tar.FormatPAX, PAXRecords: map[string]string{
				"SCHILY.xattr.user.a": "v\x00bin", "SCHILY.xattr.user.b": "\x01\x02"}}, data: []byte("xattrs")},
			{hdr: tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}},
			{hdr: tar.Header{Name: "fifo", Typeflag: tar.TypeFifo}},
		},
		"holes": {
			{hdr: tar.Header{Name: "h1", Typeflag: tar.TypeReg}, data: withHoles(r, 2_000_000)},
			{hdr: tar.Header{Name: "zeros-only", Typeflag: tar.TypeReg}, data: make([]byte, 300_000)},
			{hdr: tar.Header{Name: "short-zeros", Typeflag: tar.TypeReg}, data: make([]byte, 1023)},
			{hdr: tar.Header{Name: "zeros-then-data", Typeflag: tar.TypeReg}, data: append(make([]byte, 4096), randBytes(r, 10)...)},
			{hdr: tar.Header{Name: "data-then-zeros", Typeflag: tar.TypeReg}, data: append(randBytes(r, 10), make([]byte, 4096)...)},
		},
		"big": {
			{hdr: tar.Header{Name: "big-rand", Typeflag: tar.TypeReg}, data: randBytes(r, 12<<20)},
			// periodic data never splits: one 20 MiB chunk, streamed
			{hdr: tar.Header{Name: "periodic", Typeflag: tar.TypeReg}, data: bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), 20<<14)},
			{hdr: tar.Header{Name: "big-text", Typeflag: tar.TypeReg}, data: textBytes(r, 6<<20)},
		},
		"many-small": func() []entry {
			var es []entry
			for i := range 2000 {
				es = append(es, entry{hdr: tar.Header{Name: fmt.Sprintf("d%d/f%d", i%7, i), Typeflag: tar.TypeReg}, data: textBytes(r, r.IntN(9000))})
			}
			return es
		}(),
	}
}

func encode(t testing.TB, tarball []byte, ours bool, level int, opts ...Option) ([]byte, map[string]string) {
	var out bytes.Buffer
	md := map[string]string{}
	var w io.WriteCloser
	var err error
	if ours {
		w, err = NewWriter(&out, md, level, opts...)
	} else {
		w, err = compressor.ZstdCompressor(&out, md, &level)
	}
	if err != nil {
		t.Fatal(err)
	}
	// odd write sizes
	for b := tarball; len(b) > 0; {
		k := min(len(b), 7777)
		if _, err := w.Write(b[:k]); err != nil {
			t.Fatal(err)
		}
		b = b[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), md
}

// readTOC reads the TOC the way storage does: from the annotations, checking
// the manifest checksum, and cross-checks the footer.
func readTOC(t testing.TB, blob []byte, md map[string]string) TOC {
	var off, clen, ulen, typ uint64
	if _, err := fmt.Sscanf(md[ManifestInfoKey], "%d:%d:%d:%d", &off, &clen, &ulen, &typ); err != nil {
		t.Fatalf("manifest-position %q: %v", md[ManifestInfoKey], err)
	}
	cm := blob[off : off+clen]
	if got := digest.FromBytes(cm).String(); got != md[ManifestChecksumKey] {
		t.Fatalf("manifest checksum %s, annotation %s", got, md[ManifestChecksumKey])
	}
	footer := blob[len(blob)-footerSize:]
	if !bytes.Equal(footer[56:], zstdChunkedFrameMagic) || binary.LittleEndian.Uint64(footer) != off || binary.LittleEndian.Uint64(footer[8:]) != clen {
		t.Fatalf("footer does not match annotations")
	}
	dec, _ := zstd.NewReader(nil)
	m, err := dec.DecodeAll(cm, nil)
	if err != nil || uint64(len(m)) != ulen {
		t.Fatalf("TOC decode: %v (%d bytes, want %d)", err, len(m), ulen)
	}
	var toc TOC
	if err := json.Unmarshal(m, &toc); err != nil {
		t.Fatal(err)
	}
	return toc
}

func checkAgainstUpstream(t *testing.T, tarball []byte, level int, opts ...Option) {
	t.Helper()
	ours, omd := encode(t, tarball, true, level, opts...)
	up, umd := encode(t, tarball, false, level)
	// plain zstd decoder: the whole blob is the tar
	dec, _ := zstd.NewReader(nil)
	plain, err := dec.DecodeAll(ours, nil)
	if err != nil {
		t.Fatalf("plain zstd decode: %v", err)
	}
	if !bytes.Equal(plain, tarball) {
		t.Fatalf("plain zstd decode differs from the tar (%d vs %d bytes)", len(plain), len(tarball))
	}
	if fmt.Sprint(omd) != fmt.Sprint(umd) {
		t.Errorf("annotations differ:\nours     %v\nupstream %v", omd, umd)
	}
	otoc, utoc := readTOC(t, ours, omd), readTOC(t, up, umd)
	oj, _ := json.Marshal(otoc)
	uj, _ := json.Marshal(utoc)
	if !bytes.Equal(oj, uj) {
		t.Errorf("TOCs differ:\nours     %.2000s\nupstream %.2000s", oj, uj)
	}
	if !bytes.Equal(ours, up) {
		t.Errorf("output differs from upstream's (%d vs %d bytes)", len(ours), len(up))
	}
	again, _ := encode(t, tarball, true, level, opts...)
	if !bytes.Equal(again, ours) {
		t.Errorf("not deterministic")
	}
}

func TestMatchesUpstream(t *testing.T) {
	for name, es := range cases() {
		t.Run(name, func(t *testing.T) {
			tarball := mkTar(t, es)
			checkAgainstUpstream(t, tarball, 3)
			if name == "mixed" || name == "holes" {
				checkAgainstUpstream(t, tarball, 10, WithWorkers(1), WithMaxInflight(1))
			}
		})
	}
}

// Bytes after the end-of-archive blocks (tar's record padding, or junk) go
// into the stream and the tar-split data as upstream's asm puts them there,
// whatever the write sizes.
func TestTrailingPadding(t *testing.T) {
	tarball := mkTar(t, cases()["mixed"])
	padded := append(bytes.Clone(tarball), make([]byte, 10240-len(tarball)%10240)...)
	junk := append(bytes.Clone(tarball), bytes.Repeat([]byte("junk"), 300_000)...)
	// over 8 MiB of headers without payloads at the end: a streamed frame
	var dirs []entry
	for i := range 20000 {
		dirs = append(dirs, entry{hdr: tar.Header{Name: fmt.Sprintf("d%d/", i), Typeflag: tar.TypeDir, Mode: 0o755}})
	}
	manyDirs := mkTar(t, dirs)
	manyDirs = append(manyDirs, bytes.Repeat([]byte("junk"), 300_000)...)
	for _, in := range [][]byte{padded, junk, manyDirs} {
		for _, ws := range []int{1000, 7777, 1 << 20, len(in)} {
			var ob, ub bytes.Buffer
			omd, umd := map[string]string{}, map[string]string{}
			ow, _ := NewWriter(&ob, omd, 3)
			uw, _ := NewUpstreamWriter(&ub, umd, 3)
			for b := in; len(b) > 0; {
				k := min(len(b), ws)
				ow.Write(b[:k])
				uw.Write(b[:k])
				b = b[k:]
			}
			if err := errors.Join(ow.Close(), uw.Close()); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ob.Bytes(), ub.Bytes()) || fmt.Sprint(omd) != fmt.Sprint(umd) {
				t.Errorf("%d bytes in %d-byte writes: output differs", len(in), ws)
			}
		}
	}
}
