package subjects

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	orasregistry "oras.land/oras-go/v2/registry"

	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/pkg/referrer"
)

// MaxArtifacts caps the subjects artifacts FindAll accepts for one index.
// A real index has one: rebuilding the same index pushes the same artifact.
const MaxArtifacts = 16

// Find returns the subjects artifact attached to indexDesc, found with the
// registry's referrers API or, without one, the "sha256-<hex>" referrers
// tag (oras-go picks). Referrers of another artifactType are ignored. When
// several subjects artifacts refer to the index, the LAST one listed wins:
// with the referrers tag that is the most recently pushed; with the
// referrers API the order is the registry's. A reader that must not be
// misled by one of several (a verifier) uses FindAll. When no referrer is
// found, the OCI 1.0 fallback form is looked for under FallbackTag (see
// PushOrFallback).
func Find(ctx context.Context, target content.ReadOnlyGraphStorage, indexDesc ocispec.Descriptor) (ocispec.Descriptor, error) {
	all, err := FindAll(ctx, target, indexDesc)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return all[len(all)-1], nil
}

// FindAll returns every distinct subjects artifact attached to indexDesc,
// in the order listed (at least one, at most MaxArtifacts), found as Find
// finds one. The listing is bounded, whatever the registry sends: at most
// oci.MaxReferrersPages pages and oci.MaxReferrers referrers, each page
// filtered by artifactType as it arrives, so only subjects artifacts are
// kept; going over a limit is an error naming it.
func FindAll(ctx context.Context, target content.ReadOnlyGraphStorage, indexDesc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	found, err := listReferrers(ctx, target, indexDesc)
	var limit *oci.LimitError
	if err != nil && (errors.As(err, &limit) || ctx.Err() != nil) {
		return nil, fmt.Errorf("listing referrers of %s: %w", indexDesc.Digest, err)
	}
	if err != nil || len(found) == 0 {
		desc, ok, ferr := findFallback(ctx, target, indexDesc)
		switch {
		case ferr == nil && ok:
			return []ocispec.Descriptor{desc}, nil
		case err != nil:
			return nil, fmt.Errorf("listing referrers of %s: %w", indexDesc.Digest, err)
		case ferr != nil:
			return nil, ferr
		}
		return nil, fmt.Errorf("no subjects artifact (artifactType %s) refers to %s, and there is no fallback tag %s", ArtifactType, indexDesc.Digest, FallbackTag(indexDesc.Digest))
	}
	if len(found) > MaxArtifacts {
		return nil, &oci.LimitError{What: "index " + indexDesc.Digest.String(), Limit: "MaxArtifacts",
			Detail: fmt.Sprintf("%d subjects artifacts refer to it, more than %d", len(found), MaxArtifacts)}
	}
	return found, nil
}

// listReferrers lists the distinct subjects artifacts referring to desc,
// bounded as FindAll says (referrer.List).
func listReferrers(ctx context.Context, target content.ReadOnlyGraphStorage, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	return referrer.List(ctx, target, desc, ArtifactType)
}

// ResolveArtifact resolves ref (a tag or digest in target's repository, or a
// full "host/repo:tag" / "host/repo@digest" reference whose tag or digest is
// used) to a subjects artifact: ref itself if it is one, else the subjects
// artifact of the index it points at (Find: the last listed). The Tekton
// verify task passes the index reference.
func ResolveArtifact(ctx context.Context, target oras.ReadOnlyGraphTarget, ref string) (ocispec.Descriptor, error) {
	all, err := ResolveArtifacts(ctx, target, ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return all[len(all)-1], nil
}

// ResolveArtifacts is ResolveArtifact returning, for an index, every
// subjects artifact attached to it (FindAll), so that none is silently
// passed over.
func ResolveArtifacts(ctx context.Context, target oras.ReadOnlyGraphTarget, ref string) ([]ocispec.Descriptor, error) {
	name := ref
	if r, err := orasregistry.ParseReference(ref); err == nil {
		if r.Reference == "" {
			return nil, fmt.Errorf("reference %q has no tag or digest", ref)
		}
		name = r.Reference
	}
	desc, err := target.Resolve(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", ref, err)
	}
	switch {
	case oci.IsIndex(desc.MediaType):
		return FindAll(ctx, target, desc)
	case desc.MediaType == ocispec.MediaTypeImageManifest:
		raw, err := oci.FetchBounded(ctx, target, desc, oci.MaxDocumentBytes, "manifest")
		if err != nil {
			return nil, err
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("%s (%s): invalid manifest JSON: %w", ref, desc.Digest, err)
		}
		if m.ArtifactType != ArtifactType && !IsFallbackForm(m) {
			return nil, fmt.Errorf("%s (%s) is an image manifest, neither an index nor a subjects artifact (artifactType %q)", ref, desc.Digest, m.ArtifactType)
		}
		desc.ArtifactType = ArtifactType
		return []ocispec.Descriptor{desc}, nil
	default:
		return nil, fmt.Errorf("%s (%s) is a %q, neither an index nor a subjects artifact", ref, desc.Digest, strings.TrimSpace(desc.MediaType))
	}
}
