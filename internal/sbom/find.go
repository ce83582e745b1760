package sbom

import (
	"context"
	"encoding/json"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/pkg/referrer"
)

// Find returns the SBOM referrers of subject (a manifest or an index):
// artifacts of type SPDX or CycloneDX JSON found through the referrers API
// or the referrers tag, else the OCI 1.0 fallback form under
// "sha256-<hex>.sbom" (whose manifest is read to check it is an SBOM).
// None found is an empty list, not an error. Reads are bounded
// (referrer.List, oci.MaxDocumentBytes).
func Find(ctx context.Context, target content.ReadOnlyGraphStorage, subject ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	found, err := referrer.List(ctx, target, subject, oci.MediaTypeSPDXJSON, oci.MediaTypeCycloneDXJSON)
	if err != nil {
		return nil, fmt.Errorf("listing the SBOMs of %s: %w", subject.Digest, err)
	}
	if len(found) > 0 {
		return found, nil
	}
	desc, ok, err := referrer.FindFallback(ctx, target, subject.Digest, FallbackTagSuffix)
	if err != nil || !ok {
		return nil, err
	}
	raw, err := oci.FetchBounded(ctx, target, desc, oci.MaxDocumentBytes, "SBOM manifest")
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s (%s): invalid manifest JSON: %w", referrer.FallbackTag(subject.Digest, FallbackTagSuffix), desc.Digest, err)
	}
	if m.ArtifactType != "" || m.Subject != nil || !oci.IsSBOM(m.Config.MediaType) {
		return nil, fmt.Errorf("%s (%s) is not an SBOM in the OCI 1.0 fallback form (config media type %q)", referrer.FallbackTag(subject.Digest, FallbackTagSuffix), desc.Digest, m.Config.MediaType)
	}
	desc.ArtifactType = m.Config.MediaType
	return []ocispec.Descriptor{desc}, nil
}

// Missing returns the subjects among descs (an index and its manifests)
// that no SBOM refers to, in the order given; each is looked up as Find
// does.
func Missing(ctx context.Context, target content.ReadOnlyGraphStorage, descs []ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	var missing []ocispec.Descriptor
	for _, d := range descs {
		found, err := Find(ctx, target, d)
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			missing = append(missing, d)
		}
	}
	return missing, nil
}
