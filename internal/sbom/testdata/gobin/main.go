// gobin is a Go program the SBOM tests build and put into an image: its
// build info lists golang.org/x/sync, which the SBOM must list.
package main

import (
	"fmt"

	"golang.org/x/sync/errgroup"
)

func main() {
	var g errgroup.Group
	g.Go(func() error { fmt.Println("hello"); return nil })
	_ = g.Wait()
}
