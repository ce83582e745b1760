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
	"syscall"

	"github.com/sirupsen/logrus"
	"go.podman.io/buildah"
)

func main() {
	// buildah re-executes this binary for chroot/RUN helpers; this must run first.
	if buildah.InitReexec() {
		return
	}
	// buildah and containers/image log through logrus; their info lines are noise here.
	logrus.SetLevel(logrus.WarnLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		if errors.Is(err, context.Canceled) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}
