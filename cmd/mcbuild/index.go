package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/summary"
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
	ctx := cmd.Context()
	started := time.Now()
	dest, err := imageref.ParseTagged(f.image)
	if err != nil {
		return err
	}
	var refs []string
	for _, list := range f.from {
		for _, s := range strings.Split(list, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			ref, err := imageref.Parse(s)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			if ref.Repository != dest.Repository {
				return fmt.Errorf("--from %q is in repository %s, not in the --image repository %s: an index can only list manifests of its own repository", s, ref.Repository, dest.Repository)
			}
			refs = append(refs, ref.Reference())
		}
	}
	if len(refs) == 0 {
		return fmt.Errorf("--from: no references given; pass the per-platform results to merge, e.g. --from %s-linux-amd64", dest.Tagged())
	}
	if err := f.resultsFlags.validate(); err != nil {
		return err
	}
	sess, err := g.session()
	if err != nil {
		return err
	}
	warnTLS(cmd, g)
	if err := sess.Ping(ctx, dest.Repository); err != nil {
		return err
	}
	repo, err := sess.Repository(ctx, dest.Repository)
	if err != nil {
		return err
	}
	entries, warnings, err := index.Merge(ctx, repo, refs...)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "Warning:", w)
	}
	phases := summary.Phases{Collect: time.Since(started).Seconds()}
	return finishRelease(cmd, repo, sess.Options(), dest, entries, f.resultsFlags, phases, started)
}
