// Command mcbuild builds a container image once per platform and publishes a
// gzip and a zstd:chunked manifest for each, a gzip-first OCI index, and a
// subjects artifact listing every digest, for Tekton pipelines.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/mcbuild/mcbuild/internal/build"
)

func main() {
	// buildah re-executes this binary for chroot/RUN helpers; this must run
	// first (build.InitReexec is buildah's plus the network of RUN steps).
	if build.InitReexec() {
		return
	}
	// buildah and containers/image log through logrus; their info lines are noise here.
	logrus.SetLevel(logrus.WarnLevel)
	ctx, cancel := context.WithCancelCause(context.Background())
	go stopOnSignal(cancel)
	err := newRootCommand().ExecuteContext(ctx)
	if err == nil {
		return
	}
	var sig interrupted
	if errors.As(context.Cause(ctx), &sig) {
		msg := err.Error()
		if !strings.Contains(msg, sig.Error()) {
			msg = sig.Error() + ": " + msg
		}
		fmt.Fprintln(os.Stderr, "Error:", msg)
		os.Exit(128 + int(sig.signal))
	}
	fmt.Fprintln(os.Stderr, "Error:", err)
	if errors.Is(err, context.Canceled) {
		os.Exit(130)
	}
	os.Exit(1)
}

// interrupted is the cancellation cause when SIGINT or SIGTERM stops mcbuild.
// It is a context.Canceled, so code that checks for cancellation sees one.
type interrupted struct{ signal syscall.Signal }

func (i interrupted) Error() string        { return "interrupted by " + unix.SignalName(i.signal) }
func (i interrupted) Is(target error) bool { return target == context.Canceled }

// stopOnSignal cancels the run on the first SIGINT or SIGTERM: the current
// phase stops (RUN steps are killed, see internal/build), buildah removes its
// working containers and mounts, deferred clean-ups run, and the process
// exits with 128+signal. A second signal gets the default action (the
// process dies at once, skipping clean-up), so a stuck clean-up can still be
// cut short.
func stopOnSignal(cancel context.CancelCauseFunc) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	sig := (<-sigs).(syscall.Signal)
	signal.Reset(os.Interrupt, syscall.SIGTERM)
	fmt.Fprintf(os.Stderr, "mcbuild: %s received: stopping and cleaning up (send it again to stop at once, without clean-up)\n", unix.SignalName(sig))
	cancel(interrupted{signal: sig})
}
