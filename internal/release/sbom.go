package release

import (
	"context"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/content"

	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/oci"
	mcregistry "github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/sbom"
	"github.com/mcbuild/mcbuild/pkg/referrer"
)

// SBOMs say which SBOMs a release attaches.
type SBOMs struct {
	Format sbom.Format
	// Platforms holds each platform's SBOM by oci.PlatformString; it is
	// attached to every manifest of the platform, gzip and zstd:chunked
	// alike (one blob). Empty for `mcbuild index`, whose inputs carry
	// their own.
	Platforms map[string]sbom.Document
	// Stamp dates the index SBOM (pinned with --source-date-epoch).
	Stamp sbom.Stamp
	// Version is mcbuild's, recorded as the index SBOM's tool.
	Version string
}

// Attached are the SBOM referrers a release pushed.
type Attached struct {
	// Manifests maps a manifest digest to its SBOM referrer.
	Manifests map[digest.Digest]ocispec.Descriptor
	// Index is the index SBOM's referrer, IndexBlob its SBOM blob (the
	// referrer's layer: SBOM_BLOB_URL).
	Index, IndexBlob ocispec.Descriptor
}

// artifacts are the referrers for Verify, manifests in digest order.
func (a Attached) artifacts() []Artifact {
	var out []Artifact
	if a.Index.Digest != "" {
		out = append(out, Artifact{a.Index, "the index SBOM " + a.Index.Digest.String()})
	}
	for m, d := range a.Manifests {
		out = append(out, Artifact{d, fmt.Sprintf("the SBOM %s of manifest %s", d.Digest, m)})
	}
	return out
}

// sbomConcurrency bounds the manifests whose SBOM is attached at once.
const sbomConcurrency = 4

// attachSBOMs attaches each platform's SBOM to the platform's manifests,
// then makes the index SBOM and attaches it to the index. A registry that
// refuses OCI 1.1 artifacts gets the fallback form (pkg/referrer), with a
// warning, as the subjects artifact does; any other failure fails the
// release before the tag moves.
func (r *releaser) attachSBOMs(ctx context.Context, s SBOMs, idx ocispec.Descriptor, ordered []index.Entry) (Attached, []string, error) {
	att := Attached{Manifests: map[digest.Digest]ocispec.Descriptor{}}
	var (
		mu       sync.Mutex
		warnings []string
	)
	push := func(ctx context.Context, doc sbom.Document, subject ocispec.Descriptor, what string) (ocispec.Descriptor, error) {
		pushed, err := referrer.PushOrFallback(ctx, r.repo, doc.Artifact(what), subject)
		if err != nil {
			return ocispec.Descriptor{}, r.opts.Registry.Explain(fmt.Sprintf("attaching the %s to %s@%s", what, r.dest.Repository, subject.Digest), err)
		}
		if pushed.Fallback {
			mu.Lock()
			warnings = append(warnings, fmt.Sprintf("the registry refused the %s as an OCI 1.1 artifact (%s: %v); pushed it in the OCI 1.0 fallback form, tagged %s:%s",
				what, mcregistry.Reason(pushed.Refusal), mcregistry.Redact(pushed.Refusal.Error()), r.dest.Repository, referrer.FallbackTag(subject.Digest, sbom.FallbackTagSuffix)))
			mu.Unlock()
		}
		return pushed.Desc, nil
	}
	if len(s.Platforms) > 0 {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(sbomConcurrency)
		for _, e := range ordered {
			platform := oci.PlatformString(*e.Descriptor.Platform)
			doc, ok := s.Platforms[platform]
			if !ok {
				return Attached{}, nil, fmt.Errorf("no SBOM was made for %s, whose %s manifest %s the index lists; the tag was not moved", platform, e.Format, e.Descriptor.Digest)
			}
			g.Go(func() error {
				desc, err := push(gctx, doc, e.Descriptor, fmt.Sprintf("%s SBOM", platform))
				if err != nil {
					return err
				}
				mu.Lock()
				att.Manifests[e.Descriptor.Digest] = desc
				mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return Attached{}, nil, err
		}
		r.logf("attached %d platform SBOMs (%s) to %d manifests", len(s.Platforms), s.Format, len(ordered))
	}
	manifests := make([]sbom.Manifest, len(ordered))
	for i, e := range ordered {
		manifests[i] = sbom.Manifest{Descriptor: e.Descriptor, Compression: string(e.Format)}
	}
	doc, err := sbom.Index(s.Format, r.dest.Repository, idx, manifests, s.Stamp, s.Version)
	if err != nil {
		return Attached{}, nil, fmt.Errorf("the index SBOM: %w", err)
	}
	if att.Index, err = push(ctx, doc, idx, "index SBOM"); err != nil {
		return Attached{}, nil, err
	}
	att.IndexBlob = content.NewDescriptorFromBytes(doc.Format.MediaType(), doc.Data)
	r.logf("attached the index SBOM %s@%s (blob %s)", r.dest.Repository, att.Index.Digest, att.IndexBlob.Digest)
	return att, warnings, nil
}
