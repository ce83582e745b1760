package pipeline

import (
	"context"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/sbom"
	"github.com/mcbuild/mcbuild/internal/summary"
)

// Inspect reads what ref names (an index, flattened, or one manifest) and
// returns a row for it and one per manifest, with what a client downloads
// for each and its SBOM referrer (sbom.Find; the last listed), plus the warnings of the walk (index.Collect's, bounded as it
// is; each manifest is read once, by that walk). o is what repo's session was
// made from: a failed read says what the registry answered and how often
// it was tried ([registry.Options.Explain]).
func Inspect(ctx context.Context, repo *remote.Repository, ref imageref.Ref, o registry.Options) ([]summary.Row, []string, error) {
	rows, warnings, err := inspect(ctx, repo, ref)
	if err != nil {
		return nil, nil, o.Explain("inspecting "+ref.String(), err)
	}
	return rows, warnings, nil
}

func inspect(ctx context.Context, repo *remote.Repository, ref imageref.Ref) ([]summary.Row, []string, error) {
	root, err := repo.Resolve(ctx, ref.Reference())
	if err != nil {
		return nil, nil, fmt.Errorf("resolving %s: %w", ref, err)
	}
	entries, warnings, err := index.Collect(ctx, repo, []ocispec.Descriptor{root})
	if err != nil {
		return nil, nil, err
	}
	kind := "(manifest)"
	if oci.IsIndex(root.MediaType) {
		kind = "(index)"
	}
	rows := []summary.Row{{Platform: kind, Compression: "-", Digest: root.Digest.String(), Size: root.Size}}
	descs := []ocispec.Descriptor{root}
	for _, e := range entries {
		rows = append(rows, summary.Row{Platform: oci.PlatformString(*e.Descriptor.Platform), Compression: string(e.Format), Digest: e.Descriptor.Digest.String(), Size: e.DownloadSize})
		descs = append(descs, e.Descriptor)
	}
	for i, d := range descs {
		found, err := sbom.Find(ctx, repo, d)
		if err != nil {
			return nil, nil, err
		}
		if len(found) > 0 {
			rows[i].SBOM = found[len(found)-1].Digest.String()
		}
	}
	return rows, warnings, nil
}
