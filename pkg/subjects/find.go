package subjects

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	orasregistry "oras.land/oras-go/v2/registry"

	"github.com/mcbuild/mcbuild/internal/oci"
)

// Find returns the subjects artifact attached to indexDesc, found with the
// registry's referrers API or, without one, the "sha256-<hex>" referrers
// tag (oras-go picks). Referrers of another artifactType are ignored. When
// several subjects artifacts refer to the index, the LAST one listed wins:
// with the referrers tag that is the most recently pushed; with the
// referrers API the order is the registry's. When no referrer is found, the
// OCI 1.0 fallback form is looked for under FallbackTag (see
// PushOrFallback).
func Find(ctx context.Context, target content.ReadOnlyGraphStorage, indexDesc ocispec.Descriptor) (ocispec.Descriptor, error) {
	refs, err := orasregistry.Referrers(ctx, target, indexDesc, ArtifactType)
	if err != nil {
		if desc, found, ferr := findFallback(ctx, target, indexDesc); ferr == nil && found {
			return desc, nil
		}
		return ocispec.Descriptor{}, fmt.Errorf("listing referrers of %s: %w", indexDesc.Digest, err)
	}
	var found []ocispec.Descriptor
	for _, r := range refs {
		// Registries may ignore the artifactType filter.
		if r.ArtifactType == ArtifactType && r.MediaType == ocispec.MediaTypeImageManifest {
			found = append(found, r)
		}
	}
	if len(found) == 0 {
		desc, ok, err := findFallback(ctx, target, indexDesc)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		if ok {
			return desc, nil
		}
		return ocispec.Descriptor{}, fmt.Errorf("no subjects artifact (artifactType %s) refers to %s, and there is no fallback tag %s", ArtifactType, indexDesc.Digest, FallbackTag(indexDesc.Digest))
	}
	return found[len(found)-1], nil
}

// ResolveArtifact resolves ref (a tag or digest in target's repository, or a
// full "host/repo:tag" / "host/repo@digest" reference whose tag or digest is
// used) to a subjects artifact: ref itself if it is one, else the subjects
// artifact of the index it points at. The Tekton verify task passes the
// index reference.
func ResolveArtifact(ctx context.Context, target oras.ReadOnlyGraphTarget, ref string) (ocispec.Descriptor, error) {
	name := ref
	if r, err := orasregistry.ParseReference(ref); err == nil {
		if r.Reference == "" {
			return ocispec.Descriptor{}, fmt.Errorf("reference %q has no tag or digest", ref)
		}
		name = r.Reference
	}
	desc, err := target.Resolve(ctx, name)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolving %s: %w", ref, err)
	}
	switch {
	case oci.IsIndex(desc.MediaType):
		return Find(ctx, target, desc)
	case desc.MediaType == ocispec.MediaTypeImageManifest:
		raw, err := oci.FetchBounded(ctx, target, desc, oci.MaxDocumentBytes, "manifest")
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("%s (%s): invalid manifest JSON: %w", ref, desc.Digest, err)
		}
		if m.ArtifactType != ArtifactType && !IsFallbackForm(m) {
			return ocispec.Descriptor{}, fmt.Errorf("%s (%s) is an image manifest, neither an index nor a subjects artifact (artifactType %q)", ref, desc.Digest, m.ArtifactType)
		}
		desc.ArtifactType = ArtifactType
		return desc, nil
	default:
		return ocispec.Descriptor{}, fmt.Errorf("%s (%s) is a %q, neither an index nor a subjects artifact", ref, desc.Digest, strings.TrimSpace(desc.MediaType))
	}
}
