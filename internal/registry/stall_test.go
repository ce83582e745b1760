package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestGuardStall: an operation that keeps touching runs to its end however
// long it takes; one that stops touching is cancelled after the bound and
// fails with a retryable stall error that keeps its own message; the
// caller's cancellation is not a stall.
func TestGuardStall(t *testing.T) {
	const after = 100 * time.Millisecond
	err := GuardStall(context.Background(), after, func(ctx context.Context, touch func()) error {
		for range 6 {
			time.Sleep(after / 2)
			touch()
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("slow but moving: %v", err)
	}

	start := time.Now()
	err = GuardStall(context.Background(), after, func(ctx context.Context, touch func()) error {
		touch()
		<-ctx.Done()
		return fmt.Errorf("writing blob: %w", context.Cause(ctx))
	})
	took := time.Since(start)
	var se *StallError
	if !errors.As(err, &se) || se.After != after || !errors.Is(err, ErrNoProgress) || !Retryable(err) || errors.Is(err, context.Canceled) {
		t.Fatalf("idle: %v, want a retryable StallError of %s that is no cancellation", err, after)
	}
	if took < after || took > after+time.Second {
		t.Errorf("idle: stopped after %s, want about %s", took, after)
	}
	if want := "writing blob: no progress for 100ms (request timeout)"; err.Error() != want {
		t.Errorf("message %q, want %q (the stall said once)", err, want)
	}
	if got := Reason(err); got != "no progress for 100ms (request timeout)" {
		t.Errorf("Reason = %q", got)
	}

	// A cancellation error that does not say why gets the stall appended.
	err = GuardStall(context.Background(), after, func(ctx context.Context, _ func()) error {
		<-ctx.Done()
		return errors.New("request canceled")
	})
	if !errors.Is(err, ErrNoProgress) || err.Error() != "request canceled: no progress for 100ms (request timeout)" {
		t.Errorf("stall with a bare error: %q", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	err = GuardStall(ctx, after, func(ctx context.Context, _ func()) error {
		cancel()
		<-ctx.Done()
		time.Sleep(2 * after) // the watchdog may fire too: the caller's cancellation wins
		return ctx.Err()
	})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrNoProgress) {
		t.Errorf("cancelled by the caller: %v, want context.Canceled and no stall", err)
	}

	calls := 0
	err = GuardStall(context.Background(), 0, func(ctx context.Context, touch func()) error {
		calls++
		touch()
		time.Sleep(20 * time.Millisecond)
		return ctx.Err()
	})
	if err != nil || calls != 1 {
		t.Errorf("no bound: %v after %d calls", err, calls)
	}
}

// TestWatchdogStop: a stopped watchdog never fires, and its context is
// released.
func TestWatchdogStop(t *testing.T) {
	w, ctx := NewWatchdog(context.Background(), 20*time.Millisecond)
	w.Stop()
	time.Sleep(60 * time.Millisecond)
	if err := w.Err(errors.New("x")); strings.Contains(err.Error(), "no progress") || errors.Is(err, ErrNoProgress) {
		t.Errorf("a stopped watchdog fired: %v", err)
	}
	if ctx.Err() == nil {
		t.Error("Stop did not release the context")
	}
}
