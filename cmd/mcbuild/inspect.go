package main

import (
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/summary"
)

func newInspectCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect REF",
		Short: "Show an index as a table: platform, compression, digest, size (manifest + config + layers)",
		Args:  exactlyOneRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			repo, ref, err := openRef(cmd, g, args[0])
			if err != nil {
				return err
			}
			root, err := repo.Resolve(ctx, ref.Reference())
			if err != nil {
				return fmt.Errorf("resolving %s: %w", ref, err)
			}
			entries, warnings, err := index.Collect(ctx, repo, []ocispec.Descriptor{root})
			if err != nil {
				return err
			}
			for _, w := range warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "Warning:", w)
			}
			rows := []summary.Row{{Platform: "(" + shortType(root.MediaType) + ")", Compression: "-", Digest: root.Digest.String(), Size: root.Size}}
			for _, e := range entries {
				size, err := index.ImageSize(ctx, repo, e.Descriptor)
				if err != nil {
					return err
				}
				rows = append(rows, summary.Row{Platform: oci.PlatformString(*e.Descriptor.Platform), Compression: string(e.Format), Digest: e.Descriptor.Digest.String(), Size: size})
			}
			return summary.Table(cmd.OutOrStdout(), rows)
		},
	}
}

func shortType(mediaType string) string {
	if oci.IsIndex(mediaType) {
		return "index"
	}
	return "manifest"
}
