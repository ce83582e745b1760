package stage

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
	"golang.org/x/sync/errgroup"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/pkg/zstdchunked"
)

// pgzipBlockSize is pgzip's default block size, kept when only its
// concurrency changes.
const pgzipBlockSize = 1 << 20

const (
	// blockSize is the unit read from storage and handed to every
	// compressor; each compressor may hold queueBlocks of them, which
	// bounds memory whatever the layer size.
	blockSize   = 1 << 20
	queueBlocks = 8
)

// Blob is one compressed layer in an (unlinked) temporary file,
// waiting to be uploaded; its name is gone, so a killed process leaves
// nothing behind.
type Blob struct {
	File *os.File // nil when Present
	Desc ocispec.Descriptor
	// Origin says where the blob came from, for the summary (OriginStorage,
	// OriginCommitTar, OriginEarlyStorage, or a Source's own).
	Origin Origin
	// Present: a Source put the blob at the destination already (reuse);
	// there is nothing to upload. Uploaded is what that took, in bytes.
	Present  bool
	Uploaded int64
}

// Close releases the blob's file.
func (b *Blob) Close() {
	if b.File != nil {
		_ = b.File.Close()
	}
}

// Settings say how layers are compressed.
type Settings struct {
	Level   int     // zstd level for zstd and zstd:chunked
	Encoder Encoder // zstd:chunked encoder
	TmpDir  string  // where compressed layers wait for their upload (unlinked files)
	// oneCore keeps each compressor to one goroutine at a time. The output
	// is the same.
	oneCore bool
	// outFile, if set, gives the file the i-th format is written to
	// (default: a new stagingFile in tmpDir).
	outFile func(i int) (*os.File, error)
}

// stagingFile creates a temporary file in dir and unlinks it at once: the
// open file is all that is needed until the upload, and a killed process
// leaves nothing behind.
func stagingFile(dir, pattern string) (*os.File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, fmt.Errorf("staging a layer: %w", err)
	}
	_ = os.Remove(f.Name())
	return f, nil
}

// readLayer opens layer id's uncompressed tar. Storage holds its layer
// store's lock until the reader is closed.
func readLayer(store storage.Store, id string) (io.ReadCloser, error) {
	uncompressed := archive.Uncompressed
	rc, err := store.Diff("", id, &storage.DiffOptions{Compression: &uncompressed})
	if err != nil {
		return nil, fmt.Errorf("reading layer %s from storage: %w", id, err)
	}
	return rc, nil
}

// compressStream reads a layer's uncompressed tar once and writes it in
// every format of fs, concurrently, to temporary files, checking the tar
// against the layer's diff ID. The result is in the order of fs.
func compressStream(ctx context.Context, rc io.Reader, layer Layer, fs []formats.Format, cs Settings) (staged []*Blob, err error) {
	sinks := make([]*sink, 0, len(fs))
	defer func() {
		if err != nil {
			for _, s := range sinks {
				s.abort()
			}
		}
	}()
	for i, f := range fs {
		s, err := newSink(f, cs, i)
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, s)
	}

	g, gctx := errgroup.WithContext(ctx)
	// A failing sink keeps draining and does not stop the reading: the
	// whole tar is still hashed, so a layer that does not read back as its
	// diff ID (often why a compressor choked on it) is reported as that.
	sinkErrs := make([]error, len(sinks))
	for i, s := range sinks {
		g.Go(func() error {
			sinkErrs[i] = s.run()
			return nil
		})
	}
	diffID := sha256.New()
	var read int64
	g.Go(func() error {
		var err error
		read, err = feed(gctx, rc, io.Writer(diffID), sinks)
		if err != nil && gctx.Err() == nil {
			return fmt.Errorf("reading layer %s: %w", layer, err)
		}
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if got := digest.NewDigest(digest.SHA256, diffID); got != layer.DiffID {
		return nil, fmt.Errorf("layer %s in storage reads as %s (%d bytes), the image config says %s: %s", layer, got, read, layer.DiffID, notReproduced)
	}
	if layer.Size >= 0 && read != layer.Size {
		return nil, fmt.Errorf("layer %s in storage reads as %d bytes, storage recorded %d: %s", layer, read, layer.Size, notReproduced)
	}
	for _, err := range sinkErrs {
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", layer, err)
		}
	}
	staged = make([]*Blob, len(sinks))
	for i, s := range sinks {
		staged[i] = s.staged()
	}
	return staged, nil
}

// feed reads the tar in blocks, hashes each into diffID and hands it to
// every sink; it closes the sinks' inputs when it returns, with the bytes
// read.
func feed(ctx context.Context, rc io.Reader, diffID io.Writer, sinks []*sink) (int64, error) {
	defer func() {
		for _, s := range sinks {
			close(s.in)
		}
	}()
	var read int64
	for {
		b := getBlock()
		n, err := io.ReadFull(rc, b.data)
		if n > 0 {
			b.data = b.data[:n]
			diffID.Write(b.data)
			read += int64(n)
			b.refs.Store(int32(len(sinks)))
			for _, s := range sinks {
				select {
				case s.in <- b:
				case <-ctx.Done():
					return read, ctx.Err()
				}
			}
		} else {
			putBlock(b)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return read, nil
		}
		if err != nil {
			return read, err
		}
	}
}

// notReproduced says why a layer may not read back as its diff ID.
const notReproduced = "storage does not give back the layer's tar: the store is damaged, or the layer comes from a base image whose tar storage cannot reproduce (sparse files, for one)"

// block is a piece of a layer's tar shared, read only, by every sink; the
// last sink done with it returns it to the pool.
type block struct {
	data []byte
	refs atomic.Int32
}

var blocks = sync.Pool{New: func() any { return &block{data: make([]byte, blockSize)} }}

func getBlock() *block {
	b := blocks.Get().(*block)
	b.data = b.data[:cap(b.data)]
	return b
}

func putBlock(b *block) { blocks.Put(b) }

func (b *block) release() {
	if b.refs.Add(-1) == 0 {
		putBlock(b)
	}
}

// sink compresses one format of one layer into a temporary file, hashing
// the compressed bytes on the way.
type sink struct {
	format     formats.Format
	in         chan *block
	file       *os.File
	buf        *bufio.Writer
	out        *digestWriter
	compressor io.WriteCloser
	metadata   map[string]string // zstd:chunked annotations, filled on Close
	ran        bool              // run was called: it closes the compressor
}

func newSink(f formats.Format, cs Settings, i int) (*sink, error) {
	newFile := cs.outFile
	if newFile == nil {
		newFile = func(int) (*os.File, error) { return stagingFile(cs.TmpDir, "mcbuild-layer-*") }
	}
	file, err := newFile(i)
	if err != nil {
		return nil, err
	}
	s := &sink{
		format: f, in: make(chan *block, queueBlocks), file: file,
		buf: bufio.NewWriterSize(file, 1<<20), metadata: map[string]string{},
	}
	s.out = &digestWriter{w: s.buf, h: sha256.New()}
	if s.compressor, err = newCompressor(f, s.out, s.metadata, cs); err != nil {
		_ = file.Close()
		return nil, err
	}
	return s, nil
}

// newCompressor returns the compressor mcbuild uses for f, writing to w.
// gzip and zstd are what containers/image uses (pgzip at its default level,
// klauspost zstd at the given level); zstd:chunked is pkg/zstdchunked or,
// as the reference, containers/storage's own encoder.
func newCompressor(f formats.Format, w io.Writer, metadata map[string]string, cs Settings) (io.WriteCloser, error) {
	switch f {
	case formats.Gzip:
		zw, err := pgzip.NewWriterLevel(w, pgzip.DefaultCompression)
		if err == nil && cs.oneCore {
			// pgzip's blocks do not depend on how many compress at once.
			err = zw.SetConcurrency(pgzipBlockSize, 1)
		}
		return zw, err
	case formats.Zstd:
		opts := []zstd.EOption{zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(cs.Level))}
		if cs.oneCore {
			opts = append(opts, zstd.WithEncoderConcurrency(1))
		}
		return zstd.NewWriter(w, opts...)
	case formats.ZstdChunked:
		if cs.Encoder == EncoderUpstream {
			return zstdchunked.NewUpstreamWriter(w, metadata, cs.Level)
		}
		var opts []zstdchunked.Option
		if cs.oneCore {
			opts = append(opts, zstdchunked.WithWorkers(1))
		}
		return zstdchunked.NewWriter(w, metadata, cs.Level, opts...)
	}
	return nil, fmt.Errorf("compression format %q: not supported", f)
}

// run feeds every block to the compressor with Write, whose output does not
// depend on how the input was cut (klauspost zstd's ReadFrom does: behind
// copy.Image, which peeks at the first bytes, it starts plain zstd with a
// tiny block, so the copy publisher's plain zstd blobs differ from ours by a
// few bytes; gzip and zstd:chunked are the same). After a failure it keeps
// draining, so the reader never blocks on it; the error ends the layer.
func (s *sink) run() error {
	s.ran = true
	var err error
	for b := range s.in {
		if err == nil {
			_, err = s.compressor.Write(b.data)
		}
		b.release()
	}
	// Closed even after a failure, so the compressor's goroutines end.
	if cerr := s.compressor.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.buf.Flush()
	}
	if err != nil {
		return fmt.Errorf("compressing as %s: %w", s.format, err)
	}
	return nil
}

func (s *sink) staged() *Blob {
	var ann map[string]string // the compressor's (zstd:chunked); the manifest adds the layer's own
	if len(s.metadata) > 0 {
		ann = s.metadata
	}
	return &Blob{File: s.file, Origin: OriginStorage, Desc: ocispec.Descriptor{
		MediaType:   s.format.LayerMediaType(),
		Digest:      digest.NewDigest(digest.SHA256, s.out.h),
		Size:        s.out.n,
		Annotations: ann,
	}}
}

// abort releases a sink that failed or whose layer failed. A sink that never
// ran still has its compressor open, and a zstd:chunked writer's goroutine
// waits for input until it is closed.
func (s *sink) abort() {
	if !s.ran {
		_ = s.compressor.Close()
	}
	_ = s.file.Close()
}

// digestWriter hashes and counts what passes through it.
type digestWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (d *digestWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	return n, err
}
