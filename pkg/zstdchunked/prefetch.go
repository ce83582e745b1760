package zstdchunked

import "io"

// prefetcher reads r ahead on its own goroutine, so the tar-split
// disassembler (which feeds r through a synchronous pipe) runs concurrently
// with the planner instead of in lock step with it.
type prefetcher struct {
	ch   chan []byte
	free chan []byte
	quit chan struct{}
	err  error // set before ch is closed
	cur  []byte
	buf  []byte // the buffer cur points into, recycled when consumed
}

const prefetchBlock = 256 << 10

func newPrefetcher(r io.Reader) *prefetcher {
	p := &prefetcher{ch: make(chan []byte, 16), free: make(chan []byte, 18), quit: make(chan struct{})}
	go func() {
		defer close(p.ch)
		for {
			var b []byte
			select {
			case b = <-p.free:
			default:
				b = make([]byte, prefetchBlock)
			}
			n, err := io.ReadFull(r, b[:prefetchBlock])
			if n > 0 {
				select {
				case p.ch <- b[:n]:
				case <-p.quit:
					return
				}
			}
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					p.err = err
				}
				return
			}
		}
	}()
	return p
}

func (p *prefetcher) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.buf != nil {
			select {
			case p.free <- p.buf:
			default:
			}
			p.buf = nil
		}
		blk, ok := <-p.ch
		if !ok {
			if p.err != nil {
				return 0, p.err
			}
			return 0, io.EOF
		}
		p.cur, p.buf = blk, blk
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// stop ends the goroutine early (after an error).
func (p *prefetcher) stop() {
	close(p.quit)
}
