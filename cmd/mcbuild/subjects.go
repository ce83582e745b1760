package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/pipeline"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/pkg/subjects"
	"oras.land/oras-go/v2/registry/remote"
)

func newSubjectsCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "subjects",
		Short: "Read and verify subjects artifacts",
	}
	var asJSON bool
	show := &cobra.Command{
		Use:   "show REF",
		Short: "Print the entries of a subjects artifact (REF: the artifact, or the index it describes)",
		Args:  exactlyOneRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, ref, desc, opts, err := openSubjects(cmd, g, args[0])
			if err != nil {
				return err
			}
			doc, _, err := subjects.Fetch(cmd.Context(), repo, desc)
			if err != nil {
				return opts.Explain("reading the subjects artifact "+ref.WithDigest(desc.Digest), err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(doc)
			}
			fmt.Fprintf(out, "subjects artifact %s\n", ref.WithDigest(desc.Digest))
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tDIGEST\tMEDIA TYPE\tPLATFORM\tCOMPRESSION")
			for _, s := range doc.Subjects {
				fmt.Fprintf(tw, "%s\tsha256:%s\t%s\t%s\t%s\n", s.Name, s.Digest["sha256"], s.MediaType, orDash(s.Annotations["platform"]), orDash(s.Annotations["compression"]))
			}
			return tw.Flush()
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print the subjects document as JSON")
	verify := &cobra.Command{
		Use:   "verify REF",
		Short: "Check that a subjects artifact lists exactly the index and its manifests, all present in the registry",
		Long: `verify accepts the subjects artifact's reference or the reference of the index
it describes (found through the referrers API or the sha256-<hex> fallback
tag). It exits non-zero and lists every mismatch.`,
		Args: exactlyOneRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, ref, desc, opts, err := openSubjects(cmd, g, args[0])
			if err != nil {
				return err
			}
			mismatches, err := subjects.Verify(cmd.Context(), repo, desc)
			if err != nil {
				return opts.Explain("verifying the subjects artifact "+ref.WithDigest(desc.Digest), err)
			}
			if len(mismatches) > 0 {
				for _, m := range mismatches {
					fmt.Fprintln(cmd.ErrOrStderr(), "mismatch:", m.String())
				}
				return fmt.Errorf("subjects artifact %s: %d mismatch(es)", ref.WithDigest(desc.Digest), len(mismatches))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "subjects artifact %s matches its index and every manifest is present\n", ref.WithDigest(desc.Digest))
			return nil
		},
	}
	cmd.AddCommand(show, verify)
	return cmd
}

func exactlyOneRef(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s takes exactly one image reference (REGISTRY/REPO[:TAG][@DIGEST]), got %d arguments", cmd.CommandPath(), len(args))
	}
	return nil
}

// openRef parses a user reference and opens its repository, after the same
// preflight as build and index (pipeline.Open). The options are the
// session's: their Explain words a failed read (the registry's answer, how
// often it was tried).
func openRef(cmd *cobra.Command, g *globalFlags, s string) (*remote.Repository, imageref.Ref, registry.Options, error) {
	ref, err := imageref.Parse(s)
	if err != nil {
		return nil, ref, registry.Options{}, err
	}
	sess, err := g.session()
	if err != nil {
		return nil, ref, registry.Options{}, err
	}
	repo, err := pipeline.Open(cmd.Context(), sess, ref.Repository)
	return repo, ref, sess.Options(), err
}

// openSubjects opens REF's repository and finds the subjects artifact REF
// names, directly or as the index it describes.
func openSubjects(cmd *cobra.Command, g *globalFlags, s string) (*remote.Repository, imageref.Ref, ocispec.Descriptor, registry.Options, error) {
	repo, ref, opts, err := openRef(cmd, g, s)
	if err != nil {
		return nil, ref, ocispec.Descriptor{}, opts, err
	}
	desc, err := subjects.ResolveArtifact(cmd.Context(), repo, ref.Reference())
	if err != nil {
		return nil, ref, ocispec.Descriptor{}, opts, opts.Explain("finding the subjects artifact of "+ref.String(), err)
	}
	return repo, ref, desc, opts, nil
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
