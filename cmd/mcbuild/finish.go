package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/release"
	"github.com/mcbuild/mcbuild/internal/summary"
)

// finishRelease pushes index and subjects, moves the tag, writes results and
// reports what was published: shared by `build` and `index`.
func finishRelease(cmd *cobra.Command, repo *remote.Repository, ropts registry.Options, dest imageref.Ref, entries []index.Entry, rf resultsFlags, phases summary.Phases, started time.Time) error {
	ctx, stderr := cmd.Context(), cmd.ErrOrStderr()
	out, err := release.Finish(ctx, repo, dest, entries, release.Options{
		ResultsDir: rf.resultsDir, ResultsBudget: rf.resultsBudget, Log: stderr, Registry: ropts,
	})
	if err != nil {
		return err
	}
	phases.Index, phases.Subjects = out.Phases["index"].Seconds(), out.Phases["subjects"].Seconds()
	for _, w := range out.Warnings {
		fmt.Fprintln(stderr, "Warning:", w)
	}
	report := summary.Report{
		ImageRef: out.Results.ImageRef, IndexDigest: out.Index.Digest.String(), IndexSize: out.Index.Size,
		SubjectsRef: out.Results.SubjectsRef, Warnings: out.Warnings,
	}
	for _, e := range out.Entries {
		size, ok := out.Sizes[e.Descriptor.Digest]
		if !ok {
			size = -1
		}
		report.Manifests = append(report.Manifests, summary.Row{
			Platform: oci.PlatformString(*e.Descriptor.Platform), Compression: string(e.Format),
			Digest: e.Descriptor.Digest.String(), Size: size,
		})
	}
	phases.Total = time.Since(started).Seconds()
	report.Phases = phases
	stdout := cmd.OutOrStdout()
	fmt.Fprintln(stdout)
	if err := report.Print(stdout); err != nil {
		return err
	}
	if rf.resultsDir != "" {
		fmt.Fprintf(stdout, "results written to %s\n", rf.resultsDir)
	}
	if rf.summaryJSON != "" {
		return report.WriteJSON(rf.summaryJSON)
	}
	return nil
}
