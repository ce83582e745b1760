package zstdchunked

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"sync"

	jsoniter "github.com/json-iterator/go"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/archive/tar"
	"github.com/vbatts/tar-split/tar/storage"
)

func (e *encoder) appendCur(b []byte) {
	c := e.cur
	if c.pieces == nil {
		if len(c.content)+len(b) > cap(c.content) {
			nb := getBuf(max(len(c.content)+len(b), 2*cap(c.content)))
			nb = append(nb, c.content...)
			putBuf(c.content)
			c.content = nb
		}
		c.content = append(c.content, b...)
		c.size += int64(len(b))
		if len(c.content) >= bigFrame {
			// stream it through the sink's encoder instead of buffering it
			c.pieces = make(chan []byte, 4)
			e.order <- c
			if c.tail > 0 {
				c.pieces <- c.content[:c.tail-1]
				c.pieces <- nil
				c.pieces <- c.content[c.tail-1:]
			} else {
				c.pieces <- c.content
			}
			c.content = make([]byte, 0, pieceSize)
		}
		return
	}
	c.size += int64(len(b))
	for len(b) > 0 {
		k := min(len(b), pieceSize-len(c.content))
		c.content = append(c.content, b[:k]...)
		b = b[k:]
		if len(c.content) == pieceSize {
			c.pieces <- c.content
			c.content = make([]byte, 0, pieceSize)
		}
	}
}

// markTail marks where upstream switches from Write to ReadFrom.
func (e *encoder) markTail() {
	c := e.cur
	if c.pieces == nil {
		c.tail = len(c.content) + 1
		return
	}
	if len(c.content) > 0 {
		c.pieces <- c.content
		c.content = make([]byte, 0, pieceSize)
	}
	c.pieces <- nil
}

// closeFrame ends the current frame, queues it, and starts a new one.
func (e *encoder) closeFrame() *frame {
	c := e.cur
	if c.pieces != nil {
		if len(c.content) > 0 {
			c.pieces <- c.content
		}
		c.content = nil
		close(c.pieces)
	} else {
		// the content and about as much for the compressed output
		c.cost = 2 * int64(cap(c.content))
		e.acquire(c.cost)
		c.done = make(chan struct{})
		e.order <- c
		e.jobs <- c
	}
	e.cur = &frame{}
	return c
}

// fileState follows upstream's writeZstdChunkedStream for one entry's payload.
type fileState struct {
	e               *encoder
	rec             *fileRec
	started         bool
	written         int64
	lastChunkOffset int64
}

func (s *fileState) start() {
	if s.started {
		return
	}
	s.e.closeFrame() // the frame with the headers
	s.started = true
	s.e.cur.file = s.rec
	s.rec.first = s.e.cur
}

func (s *fileState) data(b []byte) {
	if len(b) == 0 {
		return
	}
	s.start()
	s.e.appendCur(b)
	s.written += int64(len(b))
}

// cut ends the current payload frame (upstream's restartCompression at a
// chunk boundary), possibly leaving an empty frame.
func (s *fileState) cut(typ string, final bool) {
	if !s.started {
		return
	}
	f := s.e.closeFrame()
	if size := s.written - s.lastChunkOffset; size > 0 {
		s.rec.chunks = append(s.rec.chunks, chunkRec{offset: s.lastChunkOffset, size: size, frame: f, typ: typ})
	}
	s.lastChunkOffset = s.written
	s.rec.last = f
	if !final {
		s.e.cur.file = s.rec
	}
}

// scanData rolls b (data bytes) in, cutting at split points.
func (s *fileState) scanData(b []byte) {
	for len(b) > 0 {
		k, split := s.e.rs.scan(b)
		s.data(b[:k])
		if split {
			s.cut(chunkTypeData, false)
		}
		b = b[k:]
	}
}

// zeros handles a maximal run of n zero bytes.
func (s *fileState) zeros(n int64) {
	if n < holesThreshold {
		s.scanData(zeroBuf[:n])
		return
	}
	s.cut(chunkTypeData, false)
	s.start()
	s.e.cur.zeros = n
	s.e.cur.size = n
	s.written += n
	s.e.rs.rollZeros(n)
	s.cut(chunkTypeZeros, false)
}

// leadingZeros counts the zero bytes at the start of b.
func leadingZeros(b []byte) int {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if v := binary.LittleEndian.Uint64(b[i:]); v != 0 {
			return i + bits.TrailingZeros64(v)/8
		}
	}
	for ; i < len(b) && b[i] == 0; i++ {
	}
	return i
}

// payload reads an entry's payload, cutting it into frames, and sums it
// into crc for tar-split.
func (e *encoder) payload(rec *fileRec, tr io.Reader, buf []byte, crc *uint64) error {
	s := &fileState{e: e, rec: rec}
	e.rs.reset()
	var zeroRun int64
	for {
		n, err := io.ReadFull(tr, buf)
		data := buf[:n]
		*crc = crc64ISO(*crc, data)
		for len(data) > 0 {
			if zeroRun > 0 || data[0] == 0 {
				z := leadingZeros(data)
				zeroRun += int64(z)
				data = data[z:]
				if len(data) == 0 {
					break
				}
				s.zeros(zeroRun)
				zeroRun = 0
				continue
			}
			end := bytes.IndexByte(data, 0)
			if end < 0 {
				end = len(data)
			}
			s.scanData(data[:end])
			data = data[end:]
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if zeroRun > 0 {
		s.zeros(zeroRun)
	}
	s.cut(chunkTypeData, true)
	return nil
}

func (e *encoder) run(reader io.Reader) error {
	e.cond = sync.NewCond(&e.mu)
	var tsCompressed bytes.Buffer
	tsDigester := digest.Canonical.Digester()
	// Pooled: a fresh encoder allocates a 16 MiB history on its first
	// multi-block frame. The bytes do not depend on its concurrency.
	tsZstd, err := e.workerEncoder()
	if err != nil {
		return err
	}
	defer e.putEncoder(tsZstd)
	tsZstd.Reset(io.MultiWriter(&tsCompressed, tsDigester.Hash()))
	tsCounter := &countingWriter{w: tsZstd}
	e.packer = storage.NewJSONPacker(tsCounter)
	tocZstd, err := e.workerEncoder()
	if err != nil {
		return err
	}
	defer e.putEncoder(tocZstd)
	e.toc = &tocWriter{zw: tocZstd}
	tocZstd.Reset(&e.toc.compressed)

	if err := e.body(reader); err != nil {
		return err
	}
	if err := tsZstd.Close(); err != nil {
		return err
	}
	if e.toc.err != nil {
		return e.toc.err
	}
	return e.writeManifest(tsCompressed.Bytes(), tsDigester.Digest(), tsCounter.n)
}

// tocWriter streams the TOC's JSON into its zstd encoder as the sink
// finishes each file, so that little is left to do after the last frame.
// The JSON is what marshalling the whole TOC gives: the prefix and suffix
// come from marshalling a TOC without entries, and the encoder's frames do
// not depend on how the input is split into writes.
type tocWriter struct {
	zw         *zstd.Encoder
	compressed bytes.Buffer
	n          int64 // uncompressed bytes written
	entries    int
	buf        []FileMetadata
	err        error
}

var tocJSON = jsoniter.ConfigCompatibleWithStandardLibrary

func (t *tocWriter) write(b []byte) {
	if t.err != nil {
		return
	}
	_, t.err = t.zw.Write(b)
	t.n += int64(len(b))
}

// add writes the entries of a file whose frames are all written.
func (t *tocWriter) add(rec *fileRec) {
	if t.err != nil {
		return
	}
	m := rec.meta
	if rec.first != nil {
		m.Digest = rec.digest
		m.Offset = rec.first.start
		m.EndOffset = rec.last.end
	}
	es := append(t.buf[:0], m)
	for i := 1; i < len(rec.chunks); i++ {
		es = append(es, FileMetadata{Type: typeChunk, Name: m.Name, ChunkOffset: rec.chunks[i].offset})
	}
	if len(rec.chunks) > 1 {
		for i, c := range rec.chunks {
			es[i].ChunkSize = c.size
			es[i].Offset = c.frame.start
			es[i].ChunkDigest = c.frame.digest.String()
			es[i].ChunkType = c.typ
		}
	}
	t.buf = es
	for i := range es {
		if t.entries == 0 {
			prefix, err := tocJSON.Marshal(TOC{Version: 1, Entries: []FileMetadata{}})
			if err != nil {
				t.err = err
				return
			}
			t.write(prefix[:bytes.LastIndexByte(prefix, '[')+1])
		} else {
			t.write([]byte{','})
		}
		b, err := tocJSON.Marshal(&es[i])
		if err != nil {
			t.err = err
			return
		}
		t.write(b)
		t.entries++
	}
	clear(es)
}

// finish writes the end of the JSON and closes the frame.
func (t *tocWriter) finish(tarSplitDigest digest.Digest) error {
	if t.entries == 0 {
		b, err := tocJSON.Marshal(TOC{Version: 1, TarSplitDigest: tarSplitDigest})
		if err != nil {
			return err
		}
		t.write(b)
	} else {
		b, err := tocJSON.Marshal(TOC{Version: 1, Entries: []FileMetadata{}, TarSplitDigest: tarSplitDigest})
		if err != nil {
			return err
		}
		t.write(b[bytes.IndexByte(b, '[')+1:])
	}
	if t.err != nil {
		return t.err
	}
	return t.zw.Close()
}

// body writes the frames and the tar-split stream. It parses the tar once,
// for both: upstream parses it twice (tar-split's asm disassembler tees the
// stream to its own reader through a pipe). The tar-split entries are the
// ones asm would add, in the same order. They are packed here, not queued to
// the sink: a queue entry per header could fill the order channel while the
// sink waits for the rest of a streamed frame of headers.
func (e *encoder) body(reader io.Reader) error {
	e.order = make(chan *frame, 4096)
	e.jobs = make(chan *frame, 4096)
	e.cur = &frame{}
	var wg sync.WaitGroup
	for range e.opts.workers {
		wg.Add(1)
		go e.worker(&wg)
	}
	sinkDone := make(chan struct{})
	go e.sink(sinkDone)
	finish := func() error {
		close(e.jobs)
		close(e.order)
		wg.Wait()
		<-sinkDone
		return e.failed()
	}

	// No read-ahead buffer in front of the tar reader: asm reads the
	// padding after the archive with 1 MiB Reads straight from the input,
	// and its tar-split segments follow those Reads' sizes.
	tr := tar.NewReader(reader)
	tr.RawAccounting = true
	bufp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bufp)
	buf := *bufp
	for {
		hdr, err := tr.Next()
		if err != nil {
			if err == io.EOF {
				break
			}
			e.abort(finish)
			return err
		}
		if err := e.raw(tr.RawBytes()); err != nil {
			e.abort(finish)
			return err
		}
		if err := checkNotSparse(hdr); err != nil {
			e.abort(finish)
			return err
		}
		meta, err := newFileMetadata(hdr)
		if err != nil {
			e.abort(finish)
			return err
		}
		rec := &fileRec{meta: meta}
		var crc uint64
		if err := e.payload(rec, tr, buf[:readBlock], &crc); err != nil {
			e.abort(finish)
			return err
		}
		e.order <- &frame{fileEnd: rec}
		ent := storage.Entry{Type: storage.FileType, Size: hdr.Size}
		if hdr.Size > 0 {
			// what asm's crc64.New(storage.CRCTable).Sum(nil) gives
			ent.Payload = binary.BigEndian.AppendUint64(nil, crc)
		}
		ent.SetName(hdr.Name)
		if _, err := e.packer.AddEntry(ent); err != nil {
			e.abort(finish)
			return err
		}
		if err := e.raw(tr.RawBytes()); err != nil {
			e.abort(finish)
			return err
		}
		if err := e.failed(); err != nil {
			e.abort(finish)
			return err
		}
	}
	if err := e.raw(tr.RawBytes()); err != nil {
		e.abort(finish)
		return err
	}
	e.markTail()
	// the rest of the stream (the end-of-archive blocks and any padding)
	for {
		n, err := reader.Read(buf)
		if perr := e.raw(buf[:n]); perr != nil {
			e.abort(finish)
			return perr
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			e.abort(finish)
			return err
		}
	}
	e.closeFrame()
	if err := finish(); err != nil {
		return err
	}
	return nil
}

// readBufs holds body's read buffers: 1 MiB, asm's padding read size.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// raw appends bytes outside file payloads to the stream and packs them as
// a tar-split segment.
func (e *encoder) raw(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	e.appendCur(b)
	_, err := e.packer.AddEntry(storage.Entry{Type: storage.SegmentType, Payload: b})
	return err
}

func (e *encoder) abort(finish func() error) {
	if c := e.cur; c != nil && c.pieces != nil {
		close(c.pieces)
	}
	_ = finish()
}

func (e *encoder) writeManifest(tarSplit []byte, tarSplitDigest digest.Digest, tarSplitSize int64) error {
	dest := e.dest
	manifestOffset := uint64(dest.n) + skippableFrameBytes
	if err := e.toc.finish(tarSplitDigest); err != nil {
		return err
	}
	compressedManifest := e.toc.compressed.Bytes()
	manifestLen := e.toc.n
	e.out[ManifestChecksumKey] = digest.FromBytes(compressedManifest).String()
	e.out[ManifestInfoKey] = fmt.Sprintf("%d:%d:%d:%d", manifestOffset, len(compressedManifest), manifestLen, manifestTypeCRFS)
	if err := appendSkippableFrame(dest, compressedManifest); err != nil {
		return err
	}
	tarSplitOffset := manifestOffset + uint64(len(compressedManifest)) + skippableFrameBytes
	e.out[TarSplitInfoKey] = fmt.Sprintf("%d:%d:%d", tarSplitOffset, len(tarSplit), tarSplitSize)
	if err := appendSkippableFrame(dest, tarSplit); err != nil {
		return err
	}
	return appendSkippableFrame(dest, footerBlob(manifestOffset, uint64(len(compressedManifest)), uint64(manifestLen),
		tarSplitOffset, uint64(len(tarSplit)), uint64(tarSplitSize)))
}
