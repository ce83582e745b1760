package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mcbuild/mcbuild/internal/pipeline"
	"github.com/mcbuild/mcbuild/internal/summary"
)

func newInspectCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect REF",
		Short: "Show an index as a table: platform, compression, digest, size (manifest + config + layers)",
		Args:  exactlyOneRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, ref, opts, err := openRef(cmd, g, args[0])
			if err != nil {
				return err
			}
			rows, warnings, err := pipeline.Inspect(cmd.Context(), repo, ref, opts)
			if err != nil {
				return err
			}
			for _, w := range warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "Warning:", w)
			}
			return summary.Table(cmd.OutOrStdout(), rows)
		},
	}
}
