package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The stall guard: the one implementation of "abandon what makes no
// progress for the request timeout", used by the oras transport
// ([stallTransport]: every request, its body and its answer) and by the
// containers/image pushes (GuardStall around each attempt; containers/image
// sets no timeouts of its own).

// ErrNoProgress is the cause of an operation abandoned because the registry
// made no progress for the request timeout.
var ErrNoProgress = errors.New("no progress")

// StallError reports an operation abandoned after making no progress.
type StallError struct{ After time.Duration }

func (e *StallError) Error() string {
	return fmt.Sprintf("no progress for %s (request timeout)", e.After)
}

// Unwrap lets errors.Is(err, ErrNoProgress) match.
func (e *StallError) Unwrap() error { return ErrNoProgress }

// Timeout marks the stall as a timeout, as net.Error does.
func (e *StallError) Timeout() bool { return true }

// Watchdog cancels the context of an operation that made no progress
// (no Touch) for a while. Touch is cheap (one atomic store): call it
// whenever bytes move.
type Watchdog struct {
	after  time.Duration
	parent context.Context
	cancel context.CancelCauseFunc
	start  time.Time
	last   atomic.Int64 // since start, in nanoseconds (monotonic)
	fired  atomic.Bool

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

// NewWatchdog starts a watchdog for an operation run under ctx and returns
// the context the operation must use: it is cancelled, with a [*StallError]
// as its cause, once no Touch came for after. after <= 0 never fires. Stop
// must be called when the operation ends.
func NewWatchdog(ctx context.Context, after time.Duration) (*Watchdog, context.Context) {
	wctx, cancel := context.WithCancelCause(ctx)
	w := &Watchdog{after: after, parent: ctx, cancel: cancel, start: time.Now()}
	if after > 0 {
		w.timer = time.AfterFunc(after, w.check)
	}
	return w, wctx
}

// Touch records progress.
func (w *Watchdog) Touch() { w.last.Store(int64(time.Since(w.start))) }

// check runs when the bound may have passed: it fires, or waits for what
// is left since the last Touch.
func (w *Watchdog) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	idle := time.Since(w.start) - time.Duration(w.last.Load())
	if idle < w.after {
		w.timer.Reset(w.after - idle)
		return
	}
	w.stopped = true
	w.fired.Store(true)
	w.cancel(&StallError{After: w.after})
}

// Stop ends the watch and releases the operation's context (cancelling
// it: call Stop once the operation no longer needs it).
func (w *Watchdog) Stop() {
	w.mu.Lock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
	w.cancel(nil)
}

// Err is the operation's outcome err as the caller should see it: when the
// watchdog fired (and the caller's own context is not done), a stall
// error: err's message, ending with the stall's unless it already does,
// that matches [*StallError] and [ErrNoProgress] (so [Retryable] retries
// it) and not err's chain, whose cancellation is the watchdog's doing, not
// the caller's. Otherwise err as is.
func (w *Watchdog) Err(err error) error {
	if err == nil || !w.fired.Load() || w.parent.Err() != nil {
		return err
	}
	se := &StallError{After: w.after}
	msg := err.Error()
	if !strings.Contains(msg, se.Error()) {
		msg += ": " + se.Error()
	}
	// %.0w: wrap se without printing it again.
	return fmt.Errorf("%s%.0w", msg, se)
}

// GuardStall runs op under a [Watchdog] of after (none if after <= 0): op
// calls touch whenever bytes move, and an op during which nothing moved for
// after is cancelled and fails with a stall error ([Watchdog.Err]).
func GuardStall(ctx context.Context, after time.Duration, op func(ctx context.Context, touch func()) error) error {
	w, wctx := NewWatchdog(ctx, after)
	err := op(wctx, w.Touch)
	w.Stop()
	return w.Err(err)
}

// TouchReader returns r calling touch before and after every Read: bytes
// are moving.
func TouchReader(r io.Reader, touch func()) io.Reader { return &touchReader{r: r, touch: touch} }

type touchReader struct {
	r     io.Reader
	touch func()
}

func (t *touchReader) Read(p []byte) (int, error) {
	t.touch()
	n, err := t.r.Read(p)
	t.touch()
	return n, err
}

// stallTransport guards each round trip, answer body included, with a
// [Watchdog]: reading the request body (the upload moving), the answer's
// headers and every read of its body count as progress, so a stalled
// upload, a registry that does not answer and a body that stops coming
// all end in a stall error, while a slow but moving transfer never does.
type stallTransport struct {
	base  http.RoundTripper
	after time.Duration
}

func (t *stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.after <= 0 {
		return t.base.RoundTrip(req)
	}
	w, ctx := NewWatchdog(req.Context(), t.after)
	req = req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = &touchBody{Reader: TouchReader(req.Body, w.Touch), c: req.Body}
		if get := req.GetBody; get != nil { // net/http replays it on a dead pooled connection
			req.GetBody = func() (io.ReadCloser, error) {
				b, err := get()
				if err != nil {
					return nil, err
				}
				return &touchBody{Reader: TouchReader(b, w.Touch), c: b}, nil
			}
		}
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		w.Stop()
		return nil, w.Err(err)
	}
	w.Touch()
	resp.Body = &watchedBody{rc: resp.Body, w: w}
	return resp, nil
}

// touchBody is a request body that touches a watchdog as it is read.
type touchBody struct {
	io.Reader
	c io.Closer
}

func (b *touchBody) Close() error { return b.c.Close() }

// watchedBody is an answer's body under its request's watchdog: reads
// touch it, Close (or the end of the body) stops it.
type watchedBody struct {
	rc io.ReadCloser
	w  *Watchdog
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.w.Touch()
	n, err := b.rc.Read(p)
	b.w.Touch()
	switch {
	case err == io.EOF:
		b.w.Stop()
	case err != nil:
		err = b.w.Err(err)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.rc.Close()
	b.w.Stop()
	return err
}
