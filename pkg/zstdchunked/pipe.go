package zstdchunked

import (
	"io"
	"sync"
)

// handoffPipe is io.Pipe with one handoff per Write instead of one per
// Read: the reader keeps a Write's slice until it has read all of it, so
// the tar reader's many small reads (headers, 512 bytes at a time) cost a
// copy each and no goroutine switch. A Read still returns at most what is
// left of the current Write, as io.Pipe's does; asm's reads of the padding
// after the archive, and so the tar-split segments, depend on that.
type handoffPipe struct {
	data     chan []byte   // a Write's slice
	consumed chan struct{} // the reader is done with it
	wclosed  chan struct{} // closed by the writer's Close: EOF
	rclosed  chan struct{} // closed by the reader's Close: writes fail
	wOnce    sync.Once
	rOnce    sync.Once
	cur      []byte // reader side: the unread rest of the current Write
	holding  bool   // reader side: the writer is waiting on consumed
}

func newHandoffPipe() *handoffPipe {
	return &handoffPipe{
		data:     make(chan []byte),
		consumed: make(chan struct{}, 1),
		wclosed:  make(chan struct{}),
		rclosed:  make(chan struct{}),
	}
}

func (p *handoffPipe) Write(b []byte) (int, error) {
	select {
	case <-p.wclosed:
		return 0, io.ErrClosedPipe
	case <-p.rclosed:
		return 0, io.ErrClosedPipe
	default:
	}
	if len(b) == 0 {
		return 0, nil
	}
	select {
	case p.data <- b:
	case <-p.rclosed:
		return 0, io.ErrClosedPipe
	}
	select {
	case <-p.consumed:
		return len(b), nil
	case <-p.rclosed:
		return 0, io.ErrClosedPipe
	}
}

// CloseWrite makes the reader's next Read, once the current Write is read,
// return io.EOF.
func (p *handoffPipe) CloseWrite() error {
	p.wOnce.Do(func() { close(p.wclosed) })
	return nil
}

func (p *handoffPipe) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		select {
		case p.cur = <-p.data:
		case <-p.wclosed:
			return 0, io.EOF
		}
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	if len(p.cur) == 0 {
		// let the Write return now, not at the next Read
		p.consumed <- struct{}{}
	}
	return n, nil
}

// Close ends the reading side: writes fail from now on.
func (p *handoffPipe) Close() error {
	p.rOnce.Do(func() { close(p.rclosed) })
	return nil
}
