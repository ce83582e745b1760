package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/pipeline"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/sbom"
	"github.com/mcbuild/mcbuild/pkg/subjects"
	"oras.land/oras-go/v2/registry/remote"
)

func newSubjectsCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "subjects",
		Short: "Read and verify subjects artifacts",
	}
	var asJSON, requireSBOM bool
	show := &cobra.Command{
		Use:   "show REF",
		Short: "Print the entries of a subjects artifact (REF: the artifact, or the index it describes)",
		Long: `show prints the entries of the subjects artifact REF names, or of every one
attached to the index REF names. Entries naming another repository than
REF's are marked, and make show fail: they are not this repository's
digests, whatever the artifact claims (--json then prints nothing).`,
		Args: exactlyOneRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, ref, descs, opts, err := openSubjects(cmd, g, args[0])
			if err != nil {
				return err
			}
			if asJSON && len(descs) > 1 {
				return fmt.Errorf("%s: %d subjects artifacts refer to it (%s): give one by digest for --json", ref, len(descs), digests(descs))
			}
			for _, desc := range descs {
				if err := showArtifact(cmd, repo, ref, desc, asJSON, opts); err != nil {
					return err
				}
			}
			return nil
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print the subjects document as JSON")
	verify := &cobra.Command{
		Use:   "verify REF",
		Short: "Check that a subjects artifact lists exactly the index and its manifests, all present in the registry",
		Long: `verify accepts the subjects artifact's reference or the reference of the index
it describes (found through the referrers API or the sha256-<hex> fallback
tag). Every entry must name REF's repository. It exits non-zero and lists
every mismatch. When several subjects artifacts refer to the index, each is
verified, and any that does not match fails the command. With --require-sbom
the index and every manifest it lists must also have an SBOM referrer
(SPDX or CycloneDX JSON, through the referrers API or the sha256-<hex>.sbom
fallback tag).`,
		Args: exactlyOneRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, ref, descs, opts, err := openSubjects(cmd, g, args[0])
			if err != nil {
				return err
			}
			if err := verifyArtifacts(cmd, repo, ref, descs, opts); err != nil {
				return err
			}
			if requireSBOM {
				return verifySBOMs(cmd, repo, ref, descs, opts)
			}
			return nil
		},
	}
	verify.Flags().BoolVar(&requireSBOM, "require-sbom", false, "also fail when the index or a manifest it lists has no SBOM referrer")
	cmd.AddCommand(show, verify)
	return cmd
}

// showArtifact prints one subjects artifact's entries; entries naming
// another repository are flagged, and fail it.
func showArtifact(cmd *cobra.Command, repo *remote.Repository, ref imageref.Ref, desc ocispec.Descriptor, asJSON bool, opts registry.Options) error {
	doc, _, err := subjects.Fetch(cmd.Context(), repo, desc)
	if err != nil {
		return opts.Explain("reading the subjects artifact "+ref.WithDigest(desc.Digest), err)
	}
	other := subjects.OtherRepository(doc, ref.Repository)
	refuse := func() error {
		return fmt.Errorf("subjects artifact %s: %d of its %d entries name another repository than %s (%.100q): they are not this repository's digests; the artifact is forged or was copied from elsewhere",
			ref.WithDigest(desc.Digest), len(other), len(doc.Subjects), ref.Repository, doc.Subjects[other[0]].Name)
	}
	out := cmd.OutOrStdout()
	if asJSON {
		if len(other) > 0 {
			return refuse()
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	fmt.Fprintf(out, "subjects artifact %s\n", ref.WithDigest(desc.Digest))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDIGEST\tMEDIA TYPE\tPLATFORM\tCOMPRESSION")
	for i, s := range doc.Subjects {
		name := s.Name
		if slices.Contains(other, i) {
			name = fmt.Sprintf("(other repository!) %.100s", name)
		}
		fmt.Fprintf(tw, "%s\tsha256:%s\t%s\t%s\t%s\n", name, s.Digest["sha256"], s.MediaType, orDash(s.Annotations["platform"]), orDash(s.Annotations["compression"]))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(other) > 0 {
		return refuse()
	}
	return nil
}

// verifySBOMs checks that every entry of the subjects artifacts in descs
// (verified already: the index and its manifests) has an SBOM referrer,
// and lists every one that has none.
func verifySBOMs(cmd *cobra.Command, repo *remote.Repository, ref imageref.Ref, descs []ocispec.Descriptor, opts registry.Options) error {
	seen := map[string]bool{}
	var subjectsOf []ocispec.Descriptor
	for _, desc := range descs {
		doc, _, err := subjects.Fetch(cmd.Context(), repo, desc)
		if err != nil {
			return opts.Explain("reading the subjects artifact "+ref.WithDigest(desc.Digest), err)
		}
		for _, s := range doc.Subjects {
			if d := s.DigestOf(); !seen[d.String()] {
				seen[d.String()] = true
				subjectsOf = append(subjectsOf, ocispec.Descriptor{MediaType: s.MediaType, Digest: d})
			}
		}
	}
	missing, err := sbom.Missing(cmd.Context(), repo, subjectsOf)
	if err != nil {
		return opts.Explain("looking for the SBOMs of "+ref.String(), err)
	}
	for _, m := range missing {
		fmt.Fprintf(cmd.ErrOrStderr(), "missing SBOM: %s (%s)\n", ref.WithDigest(m.Digest), m.MediaType)
	}
	if len(missing) > 0 {
		return fmt.Errorf("--require-sbom: %d of %d (the index and its manifests) have no SBOM referrer", len(missing), len(subjectsOf))
	}
	fmt.Fprintf(cmd.OutOrStdout(), "every one of %d (the index and its manifests) has an SBOM\n", len(subjectsOf))
	return nil
}

// verifyArtifacts verifies each subjects artifact in descs against REF's
// repository, prints every mismatch, and fails if any artifact has one.
func verifyArtifacts(cmd *cobra.Command, repo *remote.Repository, ref imageref.Ref, descs []ocispec.Descriptor, opts registry.Options) error {
	if len(descs) > 1 {
		fmt.Fprintf(cmd.ErrOrStderr(), "Warning: %d subjects artifacts refer to %s (%s): verifying each\n", len(descs), ref, digests(descs))
	}
	var failed []string
	for _, desc := range descs {
		mismatches, err := subjects.Verify(cmd.Context(), repo, ref.Repository, desc)
		if err != nil {
			return opts.Explain("verifying the subjects artifact "+ref.WithDigest(desc.Digest), err)
		}
		if len(mismatches) == 0 {
			fmt.Fprintf(cmd.OutOrStdout(), "subjects artifact %s matches its index and every manifest is present\n", ref.WithDigest(desc.Digest))
			continue
		}
		for _, m := range mismatches {
			prefix := "mismatch: "
			if len(descs) > 1 {
				prefix = desc.Digest.String() + ": mismatch: "
			}
			fmt.Fprintln(cmd.ErrOrStderr(), prefix+m.String())
		}
		failed = append(failed, fmt.Sprintf("subjects artifact %s: %d mismatch(es)", ref.WithDigest(desc.Digest), len(mismatches)))
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

func digests(descs []ocispec.Descriptor) string {
	var out []string
	for _, d := range descs {
		out = append(out, d.Digest.String())
	}
	return strings.Join(out, ", ")
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
// names, directly, or every one attached to the index it names.
func openSubjects(cmd *cobra.Command, g *globalFlags, s string) (*remote.Repository, imageref.Ref, []ocispec.Descriptor, registry.Options, error) {
	repo, ref, opts, err := openRef(cmd, g, s)
	if err != nil {
		return nil, ref, nil, opts, err
	}
	descs, err := subjects.ResolveArtifacts(cmd.Context(), repo, ref.Reference())
	if err != nil {
		return nil, ref, nil, opts, opts.Explain("finding the subjects artifact of "+ref.String(), err)
	}
	return repo, ref, descs, opts, nil
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
