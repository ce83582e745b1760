package reuse

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/opencontainers/go-digest"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/stage"
)

// verifier passes a blob through while checking it. Always: its size and
// digest. For an untrusted candidate also: it decompresses to the layer's
// diff ID and, for zstd:chunked, the bytes at its TOC position hash to its
// TOC checksum annotation. The checks end before the last Read returns
// io.EOF: a blob that fails them ends in an error instead, so an upload fed
// from it is abandoned before the registry commits it.
type verifier struct {
	rc    io.ReadCloser
	layer stage.Layer
	cand  Candidate
	n     int64 // bytes read
	out   int64 // bytes given out
	sum   hash.Hash
	toc   *rangeHash
	pw    *io.PipeWriter // to the decompressor; nil when trusted
	done  chan error     // the decompressor's verdict
	err   error          // sticky
	// held is the blob's last byte, given out only once verified.
	held              byte
	verified, heldOut bool
}

func newVerifier(rc io.ReadCloser, l stage.Layer, c Candidate) (io.ReadCloser, error) {
	v := &verifier{rc: rc, layer: l, cand: c, sum: sha256.New()}
	if c.Trusted {
		return v, nil
	}
	f, _ := formats.OfLayer(c.Desc)
	if f == formats.ZstdChunked {
		toc, err := tocRange(c.Desc.Annotations)
		if err != nil {
			rc.Close()
			return nil, err
		}
		v.toc = toc
	}
	pr, pw := io.Pipe()
	v.pw, v.done = pw, make(chan error, 1)
	go func() { v.done <- decompressesTo(pr, f, l.DiffID) }()
	return v, nil
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.verified { // everything checked: the last byte may go
		if v.heldOut || len(p) == 0 {
			return 0, io.EOF
		}
		p[0], v.heldOut = v.held, true
		v.out++
		return 1, nil
	}
	n, err := v.rc.Read(p)
	v.account(p[:n])
	switch {
	case v.n > v.cand.Desc.Size:
		err = fmt.Errorf("%w: more than the %d bytes its descriptor says", errMismatch, v.cand.Desc.Size)
	case v.n == v.cand.Desc.Size && n > 0:
		// The last byte is held back until the checks pass: an upload fed
		// from here cannot complete with bytes that fail them.
		n--
		v.held = p[n]
		if err == nil {
			err = v.expectEOF()
		}
	}
	if err == io.EOF {
		if err = v.finish(); err == io.EOF {
			v.verified, err = true, nil
		}
	}
	if err != nil {
		v.err = err
		v.stopDecompressor(err)
		// Whatever failed, the bytes out stay short of a complete blob.
		n = int(max(min(int64(n), v.cand.Desc.Size-1-v.out), 0))
	}
	v.out += int64(n)
	return n, err
}

// account hashes and passes on what was read.
func (v *verifier) account(b []byte) {
	if len(b) == 0 {
		return
	}
	v.n += int64(len(b))
	v.sum.Write(b)
	if v.toc != nil {
		v.toc.Write(b)
	}
	if v.pw != nil {
		_, _ = v.pw.Write(b) // a decompressor that failed drains the rest
	}
}

// expectEOF reads on after the last byte the descriptor allows: anything
// more is a mismatch.
func (v *verifier) expectEOF() error {
	var b [1]byte
	for range 100 {
		n, err := v.rc.Read(b[:])
		if n > 0 {
			v.account(b[:n])
			return fmt.Errorf("%w: more than the %d bytes its descriptor says", errMismatch, v.cand.Desc.Size)
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// finish checks what can only be checked at the end; io.EOF when all hold.
func (v *verifier) finish() error {
	if v.n != v.cand.Desc.Size {
		return fmt.Errorf("%w: %d bytes, its descriptor says %d", errMismatch, v.n, v.cand.Desc.Size)
	}
	if got := digest.NewDigest(digest.SHA256, v.sum); got != v.cand.Desc.Digest {
		return fmt.Errorf("%w: the bytes hash to %s", errMismatch, got)
	}
	if v.pw != nil {
		v.pw.Close()
		err := <-v.done
		v.pw = nil
		if err != nil {
			return err
		}
	}
	if v.toc != nil {
		if err := v.toc.check(v.cand.Desc.Annotations[oci.AnnotationZstdChunkedChecksum]); err != nil {
			return err
		}
	}
	return io.EOF
}

func (v *verifier) stopDecompressor(err error) {
	if v.pw != nil && err != io.EOF {
		v.pw.CloseWithError(err)
		<-v.done
		v.pw = nil
	}
}

func (v *verifier) Close() error {
	v.stopDecompressor(errMismatch) // abandoned before the end
	return v.rc.Close()
}

// decompressesTo reads a blob of format f from r and checks that it
// decompresses to diffID. It always reads r to its end.
func decompressesTo(r io.Reader, f formats.Format, diffID digest.Digest) error {
	defer func() { _, _ = io.Copy(io.Discard, r) }()
	var zr io.Reader
	switch f {
	case formats.Gzip:
		gz, err := pgzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("%w: not gzip: %v", errMismatch, err)
		}
		defer gz.Close()
		zr = gz
	default:
		zd, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return err
		}
		defer zd.Close()
		zr = zd
	}
	h := sha256.New()
	n, err := io.Copy(h, zr)
	if err != nil {
		return fmt.Errorf("%w: does not decompress as %s: %v", errMismatch, f, err)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != diffID {
		return fmt.Errorf("%w: decompresses to %s (%d bytes), the layer is %s", errMismatch, got, n, diffID)
	}
	return nil
}

// rangeHash hashes the bytes of a stream between two offsets.
type rangeHash struct {
	start, end, off int64
	h               hash.Hash
}

// tocRange is the TOC's byte range from a zstd:chunked layer's annotation
// "<offset>:<length>:<uncompressed length>:<type>".
func tocRange(ann map[string]string) (*rangeHash, error) {
	parts := strings.Split(ann[oci.AnnotationZstdChunkedPosition], ":")
	if len(parts) < 2 {
		return nil, fmt.Errorf("%w: TOC position %q", errMismatch, ann[oci.AnnotationZstdChunkedPosition])
	}
	off, err1 := strconv.ParseInt(parts[0], 10, 64)
	n, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || off < 0 || n <= 0 {
		return nil, fmt.Errorf("%w: TOC position %q", errMismatch, ann[oci.AnnotationZstdChunkedPosition])
	}
	return &rangeHash{start: off, end: off + n, h: sha256.New()}, nil
}

func (r *rangeHash) Write(p []byte) {
	lo, hi := max(r.start-r.off, 0), min(r.end-r.off, int64(len(p)))
	if lo < hi {
		r.h.Write(p[lo:hi])
	}
	r.off += int64(len(p))
}

func (r *rangeHash) check(want string) error {
	if r.off < r.end {
		return fmt.Errorf("%w: the TOC position is past the blob's end", errMismatch)
	}
	if got := digest.NewDigest(digest.SHA256, r.h); got.String() != want {
		return fmt.Errorf("%w: the TOC hashes to %s, its annotation says %q", errMismatch, got, want)
	}
	return nil
}
