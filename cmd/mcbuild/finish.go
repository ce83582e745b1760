package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcbuild/mcbuild/internal/choice"
	"github.com/mcbuild/mcbuild/internal/pipeline"
)

// printOutcome prints what a build or index run published: warnings, the
// summary, and where the results and --summary-json went (both written by
// the release, before the tag moved).
func printOutcome(cmd *cobra.Command, out pipeline.Outcome, rf resultsFlags) error {
	for _, w := range out.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "Warning:", w)
	}
	report := out.Report()
	stdout := cmd.OutOrStdout()
	fmt.Fprintln(stdout)
	if err := report.Print(stdout); err != nil {
		return err
	}
	if rf.resultsDir != "" {
		fmt.Fprintf(stdout, "results written to %s\n", rf.resultsDir)
	}
	if rf.summaryJSON != "" {
		fmt.Fprintf(stdout, "summary written to %s\n", rf.summaryJSON)
	}
	return nil
}

// flagError puts the flag's name in front of a library's error about its
// value: `--publisher "skopeo": valid values are stream, copy`.
func flagError(flag string, err error) error {
	var inv *choice.Invalid
	if errors.As(err, &inv) {
		return fmt.Errorf("%s %q: valid values are %s", flag, inv.Value, strings.Join(inv.Valid, ", "))
	}
	return fmt.Errorf("%s: %w", flag, err)
}
