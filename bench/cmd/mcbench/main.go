// Command mcbench is the benchmark of issue #5 ("both formats in less time
// than buildah takes for one") and, with the base workload, of issue 12
// (reusing layer blobs that exist already); `make bench` runs it through
// bench/run.sh.
//
//	mcbench run   [flags]          every arm, alternating, N runs each; tables and results files
//	mcbench gen   -cache DIR [-workload ref|big|base]  generate a workload (context + layer tars) only
//	mcbench naive [flags]          arm c: two sequential copy.Image calls at containers/image defaults
//	mcbench floor -encoder NAME TAR...  one Go encoder over the layer tars (arm e)
//
// See bench/README.md for what each arm is and how to read the ratios.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"go.podman.io/storage/pkg/reexec"

	"github.com/mcbuild/mcbuild/bench/internal/floors"
	"github.com/mcbuild/mcbuild/bench/internal/workload"
)

func main() {
	// containers/storage re-executes the binary for some operations.
	if reexec.Init() {
		return
	}
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "gen":
		err = genCmd(os.Args[2:])
	case "naive":
		err = naiveCmd(os.Args[2:])
	case "floor":
		err = floorCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcbench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: mcbench run|gen|naive|floor [flags] (see bench/README.md)")
	os.Exit(2)
}

func genCmd(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	cache := fs.String("cache", "bench/.cache/workload", "directory the workloads are generated into")
	big := fs.Bool("big", false, "the workload with an extra 1 GiB layer (same as -workload big)")
	name := fs.String("workload", workload.Reference().Name, "ref, big or base")
	goroot := fs.String("goroot", os.Getenv("GOROOT"), "base: the Go toolchain whose src/ it copies (default: `go env GOROOT`)")
	rootfs := fs.String("rootfs", "examples/busybox-base/rootfs", "base: busybox root filesystems per architecture (make rootfs)")
	_ = fs.Parse(args)
	if *big {
		*name = workload.Big().Name
	}
	spec, err := specFor(*name, *goroot, *rootfs)
	if err != nil {
		return err
	}
	g, err := workload.Ensure(*cache, spec, os.Stderr)
	if err != nil {
		return err
	}
	for i, t := range g.Tars {
		fmt.Printf("%-28s %10d bytes  %6.1f MiB  sha256:%s\n", t, g.TarBytes[i], mib(g.TarBytes[i]), g.TarSHA256[i])
	}
	fmt.Printf("%-28s %10d bytes  %6.1f MiB\ncontext: %s\n", "total", g.TotalBytes, mib(g.TotalBytes), g.Context)
	return nil
}

func floorCmd(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ExitOnError)
	name := fs.String("encoder", "", "encoder name")
	_ = fs.Parse(args)
	e, err := floors.Get(*name)
	if err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("floor: no tar files given")
	}
	r, err := floors.CompressFiles(e, fs.Args())
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
