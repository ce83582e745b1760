package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mcbuild/mcbuild/internal/pipeline"
	"github.com/mcbuild/mcbuild/internal/sourceartifact"
)

func newSourceCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "source",
		Short: "Restore a build's source from a Konflux trusted artifact",
	}
	lim := sourceartifact.DefaultLimits
	fetch := &cobra.Command{
		Use:   "fetch oci:REGISTRY/REPO@sha256:HEX DIR",
		Short: "Fetch a trusted artifact (a gzip-compressed tar), check its digest and unpack it into the empty directory DIR",
		Long: `fetch restores what konflux-ci/build-trusted-artifacts' "create" archived
(the SOURCE_ARTIFACT of Konflux's -oci-ta tasks): the blob REF names is
downloaded into an unlinked file beside DIR and checked against the digest
before anything is unpacked. DIR is created, or must be empty. An entry
that would write outside DIR (an absolute name, a ".." component, a path
through a symlink, a symlink or hard link leading out), a device or FIFO,
or more than --max-bytes of files or --max-entries entries fail the command
and leave DIR empty.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return fmt.Errorf("%s takes a trusted artifact reference (oci:REGISTRY/REPO@sha256:HEX) and a directory, got %d arguments", cmd.CommandPath(), len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := sourceartifact.ParseRef(args[0])
			if err != nil {
				return fmt.Errorf("trusted artifact %w", err)
			}
			if lim.Bytes <= 0 || lim.Entries <= 0 {
				return fmt.Errorf("--max-bytes %d, --max-entries %d: want positive limits", lim.Bytes, lim.Entries)
			}
			sess, err := g.session()
			if err != nil {
				return err
			}
			repo, err := pipeline.Open(cmd.Context(), sess, ref.Image.Repository)
			if err != nil {
				return err
			}
			st, err := sourceartifact.Restore(cmd.Context(), repo, ref, args[1], lim, sess.Options())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s into %s: %d files (%d bytes), %d directories, %d symlinks, %d hard links\n",
				ref, args[1], st.Files, st.Bytes, st.Dirs, st.Symlinks, st.Hardlinks)
			return nil
		},
	}
	fetch.Flags().Int64Var(&lim.Bytes, "max-bytes", lim.Bytes, "largest archive, and most bytes of file contents unpacked")
	fetch.Flags().IntVar(&lim.Entries, "max-entries", lim.Entries, "most archive entries")
	cmd.AddCommand(fetch)
	return cmd
}
