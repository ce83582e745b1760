package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/pkg/imageref"
	"github.com/mcbuild/mcbuild/pkg/index"
	"github.com/mcbuild/mcbuild/pkg/platforms"
	"github.com/mcbuild/mcbuild/pkg/release"
	"github.com/mcbuild/mcbuild/pkg/summary"
)

// phaseTimes accumulates wall time per phase, in the order phases first ran.
type phaseTimes struct {
	names []string
	took  map[string]time.Duration
}

func (p *phaseTimes) add(name string, d time.Duration) {
	if p.took == nil {
		p.took = map[string]time.Duration{}
	}
	if _, ok := p.took[name]; !ok {
		p.names = append(p.names, name)
	}
	p.took[name] += d
}

// finishRelease pushes index and subjects, moves the tag, writes results and
// prints the human summary: shared by `build` and `index`.
func finishRelease(cmd *cobra.Command, repo *remote.Repository, dest imageref.Ref, entries []index.Entry, rf resultsFlags, phases phaseTimes, started time.Time) error {
	stderr, stdout := cmd.ErrOrStderr(), cmd.OutOrStdout()
	out, err := release.Finish(cmd.Context(), repo, dest, entries, release.Options{
		ResultsDir: rf.resultsDir, ResultsBudget: rf.resultsBudget, Log: stderr,
	})
	if err != nil {
		return err
	}
	phases.add("index", out.Phases["index"])
	phases.add("subjects", out.Phases["subjects"])
	for _, w := range out.Warnings {
		fmt.Fprintln(stderr, "Warning:", w)
	}
	rows := make([]summary.Row, 0, len(out.Entries)+1)
	rows = append(rows, summary.Row{Platform: "(index)", Compression: "-", Digest: out.Index.Digest.String(), Size: out.Index.Size})
	for _, e := range out.Entries {
		size, err := index.ImageSize(cmd.Context(), repo, e.Descriptor)
		if err != nil { // everything is published by now; the size is only shown
			fmt.Fprintln(stderr, "Warning: reading the size of", e.Descriptor.Digest, "back:", err)
			size = e.Descriptor.Size
		}
		rows = append(rows, summary.Row{Platform: platforms.String(*e.Descriptor.Platform), Compression: string(e.Format), Digest: e.Descriptor.Digest.String(), Size: size})
	}
	fmt.Fprintln(stdout)
	summary.Table(stdout, rows)
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "IMAGE_REF     %s\n", out.Results.ImageRef)
	fmt.Fprintf(stdout, "SUBJECTS_REF  %s\n", out.Results.SubjectsRef)
	if rf.resultsDir != "" {
		fmt.Fprintf(stdout, "results written to %s\n", rf.resultsDir)
	}
	fmt.Fprint(stdout, "time:")
	for _, n := range phases.names {
		fmt.Fprintf(stdout, " %s %.1fs,", n, phases.took[n].Seconds())
	}
	fmt.Fprintf(stdout, " total %.1fs\n", time.Since(started).Seconds())
	return nil
}
