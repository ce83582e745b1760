package zstdchunked

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/storage"
)

const (
	holesThreshold = 1 << 10 // a run of at least this many zeros is a hole ("zeros" chunk)
	readBlock      = 256 << 10
	bigFrame       = 8 << 20 // frames larger than this are streamed through one encoder instead of buffered
	pieceSize      = 1 << 20
)

// DefaultMaxInflight bounds the uncompressed bytes buffered in frames
// waiting for or under compression.
const DefaultMaxInflight = 16 << 20

type options struct {
	workers     int
	maxInflight int64
}

// Option configures NewWriter.
type Option func(*options)

// WithWorkers sets the number of compressing goroutines (default GOMAXPROCS).
func WithWorkers(n int) Option { return func(o *options) { o.workers = n } }

// WithMaxInflight bounds the uncompressed bytes held in frames not yet written.
func WithMaxInflight(n int64) Option { return func(o *options) { o.maxInflight = n } }

// NewWriter returns a writer that compresses the tar stream written to it
// into dest as zstd:chunked at the given zstd level. On Close, metadata
// receives the layer annotations (ManifestChecksumKey, ManifestInfoKey,
// TarSplitInfoKey). It has the contract of storage's
// compressor.ZstdCompressor(dest, metadata, &level).
func NewWriter(dest io.Writer, metadata map[string]string, level int, opts ...Option) (io.WriteCloser, error) {
	o := options{workers: runtime.GOMAXPROCS(0), maxInflight: DefaultMaxInflight}
	for _, f := range opts {
		f(&o)
	}
	if o.workers < 1 {
		o.workers = 1
	}
	if o.maxInflight < 1 {
		o.maxInflight = 1
	}
	el := zstd.EncoderLevelFromZstd(level)
	r := newHandoffPipe()
	ch := make(chan error, 1)
	go func() {
		e := &encoder{dest: &countingWriter{w: dest}, out: metadata, level: el, opts: o, blockSize: 128 << 10}
		if el == zstd.SpeedFastest {
			e.blockSize = 64 << 10 // as zstd.WithEncoderLevel sets it
		}
		ch <- e.run(r)
		_, _ = io.Copy(io.Discard, r)
		r.Close()
		close(ch)
	}()
	return &pipeWriter{p: r, errc: ch}, nil
}

type pipeWriter struct {
	p    *handoffPipe
	errc chan error
}

func (p *pipeWriter) Write(b []byte) (int, error) {
	select {
	case err := <-p.errc:
		p.p.CloseWrite()
		if err == nil {
			err = errors.New("zstdchunked: encoder stopped")
		}
		return 0, err
	default:
		return p.p.Write(b)
	}
}

func (p *pipeWriter) Close() error {
	errClose := p.p.CloseWrite()
	if err := <-p.errc; err != nil && err != io.EOF {
		return err
	}
	return errClose
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// frame is one zstd frame of the layer body, in stream order.
type frame struct {
	content []byte      // uncompressed bytes (in-memory frames)
	zeros   int64       // a hole: this many zeros, no content
	pieces  chan []byte // streamed frame: content arrives here
	size    int64       // uncompressed size
	file    *fileRec    // the file whose payload this is, nil for header frames
	cost    int64       // bytes counted against maxInflight
	// tail > 0: content[tail-1:] goes through Encoder.ReadFrom, as
	// upstream's io.Copy of the stream's end does (it flushes a block first).
	// In a streamed frame a nil piece marks that point.
	tail int

	out    []byte // compressed
	digest digest.Digest
	done   chan struct{}

	start, end int64 // offsets in the output, set when written

	fileEnd *fileRec // not a frame: marks the end of a file's payload
}

type chunkRec struct {
	offset, size int64
	frame        *frame
	typ          string
}

type fileRec struct {
	meta        FileMetadata
	first, last *frame
	chunks      []chunkRec

	// set by the sink
	hold   *frame
	hasher hash.Hash
	digest string
}

type encoder struct {
	dest  *countingWriter
	out   map[string]string
	level zstd.EncoderLevel
	opts  options
	// blockSize is the encoder's maximum block size: a frame of less than
	// this much is one block, written by the same code whether it comes
	// from Write+Close or EncodeAll.
	blockSize int

	packer storage.Packer // the tar-split stream
	toc    *tocWriter     // the TOC, fed by the sink

	order chan *frame
	jobs  chan *frame
	cur   *frame
	rs    rollSum

	mu       sync.Mutex
	cond     *sync.Cond
	inflight int64
	sinkErr  error
}

var zeroBuf = make([]byte, 1<<16)

func (e *encoder) newEncoder(concurrency int) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(e.level), zstd.WithEncoderConcurrency(concurrency))
}

var encoderPools sync.Map // zstd.EncoderLevel -> *sync.Pool of *zstd.Encoder

// workerEncoders pools the workers' single-threaded encoders per level
// across writers: each holds a window-sized history buffer. (An encoder's
// history does not carry from one frame to the next, so which one compresses
// a frame does not change its bytes.)
func workerEncoders(l zstd.EncoderLevel) *sync.Pool {
	p, _ := encoderPools.LoadOrStore(l, &sync.Pool{})
	return p.(*sync.Pool)
}

func (e *encoder) workerEncoder() (*zstd.Encoder, error) {
	if v := workerEncoders(e.level).Get(); v != nil {
		return v.(*zstd.Encoder), nil
	}
	return e.newEncoder(1)
}

// putEncoder returns a pooled encoder, first dropping its destination so
// that the pool does not keep this writer's buffers alive.
func (e *encoder) putEncoder(enc *zstd.Encoder) {
	enc.Reset(nil)
	workerEncoders(e.level).Put(enc)
}

func (e *encoder) acquire(n int64) {
	e.mu.Lock()
	for e.inflight > 0 && e.inflight+n > e.opts.maxInflight {
		e.cond.Wait()
	}
	e.inflight += n
	e.mu.Unlock()
}

func (e *encoder) release(n int64) {
	e.mu.Lock()
	e.inflight -= n
	e.cond.Broadcast()
	e.mu.Unlock()
}

func (e *encoder) failed() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sinkErr
}

type sliceWriter struct{ b []byte }

func (s *sliceWriter) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}

func (e *encoder) worker(wg *sync.WaitGroup) {
	defer wg.Done()
	enc, err := e.workerEncoder()
	if enc != nil {
		defer e.putEncoder(enc)
	}
	var sw sliceWriter
	hasher := sha256.New()
	for f := range e.jobs {
		if err != nil {
			close(f.done)
			continue
		}
		out := getBuf(len(f.content) + len(f.content)>>7 + 1024)
		var h hash.Hash
		if f.file != nil {
			h = hasher
			h.Reset()
		}
		if f.zeros == 0 && f.tail == 0 && len(f.content) > 0 && len(f.content) < e.blockSize {
			// A final block that is the whole frame is encoded by encodeAll
			// either way; EncodeAll skips copying it through the encoder's
			// block buffer and the output through sw, and needs no Reset.
			f.out = enc.EncodeAll(f.content, out)
			if h != nil {
				h.Write(f.content)
			}
		} else {
			sw.b = out
			enc.Reset(&sw)
			switch {
			case f.zeros > 0:
				for n := f.zeros; n > 0; {
					k := min(n, int64(len(zeroBuf)))
					_, _ = enc.Write(zeroBuf[:k])
					if h != nil {
						h.Write(zeroBuf[:k])
					}
					n -= k
				}
			case f.tail > 0:
				_, _ = enc.Write(f.content[:f.tail-1])
				_, _ = enc.ReadFrom(bytes.NewReader(f.content[f.tail-1:]))
			default:
				_, _ = enc.Write(f.content)
				if h != nil {
					h.Write(f.content)
				}
			}
			_ = enc.Close()
			f.out = sw.b
			sw.b = nil
		}
		if h != nil {
			f.digest = digest.NewDigest(digest.SHA256, h)
		}
		close(f.done)
	}
	if err != nil {
		e.mu.Lock()
		if e.sinkErr == nil {
			e.sinkErr = err
		}
		e.mu.Unlock()
	}
}

// sink writes the frames in order and computes whole-file digests.
func (e *encoder) sink(done chan<- struct{}) {
	defer close(done)
	var err error
	var enc *zstd.Encoder // for streamed frames, made when first needed
	fail := func(e2 error) {
		if err == nil {
			err = e2
			e.mu.Lock()
			if e.sinkErr == nil {
				e.sinkErr = e2
			}
			e.mu.Unlock()
		}
	}
	for f := range e.order {
		if rec := f.fileEnd; rec != nil {
			switch {
			case rec.hasher != nil:
				rec.digest = digest.NewDigest(digest.SHA256, rec.hasher).String()
				rec.hasher = nil
			case rec.hold != nil:
				rec.digest = rec.hold.digest.String()
				putBuf(rec.hold.content)
				rec.hold.content = nil
				rec.hold = nil
			}
			if err == nil {
				e.toc.add(rec)
			}
			continue
		}
		if f.pieces != nil {
			var h hash.Hash
			if f.file != nil {
				h = sha256.New()
				e.startFileHash(f.file)
			}
			f.start = e.dest.n
			if enc == nil && err == nil {
				var encErr error
				if enc, encErr = e.newEncoder(e.opts.workers); encErr != nil {
					fail(encErr)
				}
			}
			if err == nil {
				enc.Reset(e.dest)
			}
			for p := range f.pieces {
				if err != nil {
					continue
				}
				if p == nil {
					// the rest through ReadFrom, like upstream's end of stream
					if _, rerr := enc.ReadFrom(&pieceReader{ch: f.pieces}); rerr != nil {
						fail(rerr)
					}
					break
				}
				if _, werr := enc.Write(p); werr != nil {
					fail(werr)
				}
				if h != nil {
					h.Write(p)
					f.file.hasher.Write(p)
				}
			}
			for range f.pieces {
			}
			if err == nil {
				if cerr := enc.Close(); cerr != nil {
					fail(cerr)
				}
			}
			f.end = e.dest.n
			if h != nil {
				f.digest = digest.NewDigest(digest.SHA256, h)
			}
			continue
		}
		<-f.done
		f.start = e.dest.n
		if err == nil {
			if _, werr := e.dest.Write(f.out); werr != nil {
				fail(werr)
			}
		}
		f.end = e.dest.n
		putBuf(f.out)
		f.out = nil
		if rec := f.file; rec != nil && f.size > 0 && err == nil {
			switch {
			case rec.hasher == nil && rec.hold == nil && f.zeros == 0:
				rec.hold = f // maybe the only chunk: its digest is the file's
			default:
				e.startFileHash(rec)
				if f.zeros > 0 {
					for n := f.zeros; n > 0; {
						k := min(n, int64(len(zeroBuf)))
						rec.hasher.Write(zeroBuf[:k])
						n -= k
					}
				} else {
					rec.hasher.Write(f.content)
				}
			}
		}
		if f.file == nil || f.file.hold != f {
			putBuf(f.content)
			f.content = nil
		}
		e.release(f.cost)
	}
}

func (e *encoder) startFileHash(rec *fileRec) {
	if rec.hasher != nil {
		return
	}
	rec.hasher = sha256.New()
	if rec.hold != nil {
		rec.hasher.Write(rec.hold.content)
		putBuf(rec.hold.content)
		rec.hold.content = nil
		rec.hold = nil
	}
}

// pieceReader reads a streamed frame's remaining pieces.
type pieceReader struct {
	ch  chan []byte
	cur []byte
}

func (r *pieceReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		b, ok := <-r.ch
		if !ok {
			return 0, io.EOF
		}
		r.cur = b
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Buffers come from power-of-two size classes (4 KiB to 16 MiB), so a
// frame's buffer is close to its size and the in-flight budget, which counts
// capacities, bounds memory.
const (
	minClassBits = 12
	maxClassBits = 24
)

var bufPools [maxClassBits + 1]sync.Pool

func classOf(n int) int {
	c := minClassBits
	for c < maxClassBits && 1<<c < n {
		c++
	}
	return c
}

// getBuf returns an empty buffer with at least minCap capacity.
func getBuf(minCap int) []byte {
	c := classOf(minCap)
	if 1<<c < minCap {
		return make([]byte, 0, minCap)
	}
	if v := bufPools[c].Get(); v != nil {
		return (*(v.(*[]byte)))[:0]
	}
	return make([]byte, 0, 1<<c)
}

func putBuf(b []byte) {
	n := cap(b)
	if n < 1<<minClassBits || n > 1<<maxClassBits || n&(n-1) != 0 {
		return
	}
	b = b[:0]
	bufPools[classOf(n)].Put(&b)
}
