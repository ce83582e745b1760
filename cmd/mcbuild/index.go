package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/pipeline"
)

type indexFlags struct {
	image string
	from  []string
	resultsFlags
}

func newIndexCommand(g *globalFlags) *cobra.Command {
	f := &indexFlags{}
	cmd := &cobra.Command{
		Use:   "index --image REGISTRY/REPO[:TAG] --from REF [--from REF...]",
		Short: "Merge separate per-platform builds into one gzip-first index, with a subjects artifact and results",
		Long: `index merges the results of separate builds (each an index or a single
manifest, e.g. the IMAGE_REF results of a matrix build) into one gzip-first
OCI index. Nested indexes are flattened; platforms and annotations are kept.
Every --from must be in the --image repository.`,
		Example: `  mcbuild index --image registry.example/ns/app:v1 \
    --from registry.example/ns/app:v1-linux-amd64@sha256:... \
    --from registry.example/ns/app:v1-linux-arm64@sha256:...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runIndex(cmd, g, f) },
	}
	cmd.Flags().StringVar(&f.image, "image", "", "destination REGISTRY/REPO[:TAG] for the merged index (required)")
	cmd.Flags().StringArrayVar(&f.from, "from", nil, "an index or manifest to merge (tag and/or digest); a comma list is accepted; repeatable (required)")
	f.resultsFlags.register(cmd)
	_ = cmd.MarkFlagRequired("image")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}

func runIndex(cmd *cobra.Command, g *globalFlags, f *indexFlags) error {
	plan, err := f.plan(g)
	if err != nil {
		return err
	}
	warnTLS(cmd, g)
	plan.Log = cmd.ErrOrStderr()
	out, err := pipeline.Index(cmd.Context(), plan)
	if err != nil {
		return err
	}
	return printOutcome(cmd, out, f.resultsFlags)
}

// plan validates the flags into a pipeline.IndexPlan.
func (f *indexFlags) plan(g *globalFlags) (pipeline.IndexPlan, error) {
	var p pipeline.IndexPlan
	var err error
	if p.Dest, err = imageref.ParseTagged(f.image); err != nil {
		return p, fmt.Errorf("--image %w", err)
	}
	for _, list := range f.from {
		for _, s := range strings.Split(list, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			ref, err := imageref.Parse(s)
			if err != nil {
				return p, fmt.Errorf("--from: %w", err)
			}
			if ref.Repository != p.Dest.Repository {
				return p, fmt.Errorf("--from %q is in repository %s, not in the --image repository %s: an index can only list manifests of its own repository", s, ref.Repository, p.Dest.Repository)
			}
			p.From = append(p.From, ref.Reference())
		}
	}
	if len(p.From) == 0 {
		return p, fmt.Errorf("--from: no references given; pass the per-platform results to merge, e.g. --from %s-linux-amd64", p.Dest.Tagged())
	}
	if p.Results, err = f.resultsFlags.plan(p.Dest); err != nil {
		return p, err
	}
	// The index SBOM is dated SOURCE_DATE_EPOCH when set, as a build's.
	epoch, err := parseEpoch("SOURCE_DATE_EPOCH", os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return p, err
	}
	if p.SBOM, err = f.resultsFlags.sbomPlan(epoch); err != nil {
		return p, err
	}
	p.Registry, err = g.session()
	return p, err
}
