package subjects

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"github.com/mcbuild/mcbuild/pkg/referrer"
)

// FallbackTagSuffix ends the tag of a subjects artifact pushed in the OCI
// 1.0 fallback form: "sha256-<index hex>.subjects", after cosign's
// "sha256-<hex>.sig" convention. The bare "sha256-<hex>" tag is not used:
// the OCI referrers tag schema reserves it for an index of referrers, which
// other tools (oras, regctl) read and rewrite.
const FallbackTagSuffix = ".subjects"

// FallbackTag is the tag of the fallback-form subjects artifact of index.
func FallbackTag(index digest.Digest) string {
	return referrer.FallbackTag(index, FallbackTagSuffix)
}

// Pushed says how PushOrFallback published the artifact: Desc is the
// artifact's manifest (ArtifactType set in either form); Fallback is true
// when the OCI 1.0 form was pushed and tagged FallbackTag(subject), and
// Refusal is then the registry's refusal of the OCI 1.1 form.
type Pushed = referrer.Pushed

// PushOrFallback pushes the subjects artifact as Push does (OCI 1.1:
// artifactType, subject). If the registry refuses that form, or the
// referrers index oras pushes for it on registries without the referrers
// API (HTTP 415, or 400 MANIFEST_INVALID / UNSUPPORTED / no code), it pushes
// the same document in the OCI 1.0 fallback form (no artifactType, no
// subject, config media type ArtifactType) and tags it FallbackTag(subject),
// where Find looks when the referrers lookup has nothing. If the fallback
// form is refused too, the error names both refusals. Any other error is
// returned as is: nothing is ever skipped silently.
func PushOrFallback(ctx context.Context, target oras.Target, doc Document, subject ocispec.Descriptor) (Pushed, error) {
	if err := check(doc, subject); err != nil {
		return Pushed{}, err
	}
	a, err := artifact(doc)
	if err != nil {
		return Pushed{}, err
	}
	return referrer.PushOrFallback(ctx, target, a, subject)
}

// Refused reports whether err is a registry's refusal of a manifest's form
// (referrer.Refused): a PUT of a manifest answered 415, or 400 with
// MANIFEST_INVALID, UNSUPPORTED or no error code.
func Refused(err error) bool { return referrer.Refused(err) }

// findFallback looks for the fallback-form artifact of indexDesc under
// FallbackTag; found is false when the tag does not exist.
func findFallback(ctx context.Context, target content.ReadOnlyGraphStorage, indexDesc ocispec.Descriptor) (desc ocispec.Descriptor, found bool, err error) {
	tag := FallbackTag(indexDesc.Digest)
	desc, found, err = referrer.FindFallback(ctx, target, indexDesc.Digest, FallbackTagSuffix)
	if err != nil || !found {
		return ocispec.Descriptor{}, false, err
	}
	doc, _, err := Fetch(ctx, target, desc)
	if err != nil {
		return ocispec.Descriptor{}, false, fmt.Errorf("fallback tag %s: %w", tag, err)
	}
	if got := doc.Subjects[0].DigestOf(); got != indexDesc.Digest {
		return ocispec.Descriptor{}, false, fmt.Errorf("fallback tag %s: the artifact describes %s, not %s", tag, got, indexDesc.Digest)
	}
	desc.ArtifactType = ArtifactType
	return desc, true, nil
}

// subjectOf returns the index an artifact describes: its subject, or for
// the fallback form the document's first entry, resolved in target.
func subjectOf(ctx context.Context, target content.ReadOnlyStorage, doc Document, m ocispec.Manifest) (ocispec.Descriptor, error) {
	if m.Subject != nil {
		return *m.Subject, nil
	}
	d := doc.Subjects[0].DigestOf()
	r, ok := target.(content.Resolver)
	if !ok {
		return ocispec.Descriptor{}, fmt.Errorf("subjects artifact in the OCI 1.0 form: cannot resolve its index %s here", d)
	}
	desc, err := r.Resolve(ctx, d.String())
	if errors.Is(err, errdef.ErrNotFound) {
		mt := doc.Subjects[0].MediaType
		if mt == "" {
			mt = ocispec.MediaTypeImageIndex
		}
		return ocispec.Descriptor{MediaType: mt, Digest: d}, nil // reported missing by Verify
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolving the index %s: %w", d, err)
	}
	return desc, nil
}

// pushFallback pushes doc in the OCI 1.0 form and tags it.
func pushFallback(ctx context.Context, target oras.Target, doc Document, subject ocispec.Descriptor) (ocispec.Descriptor, error) {
	if err := check(doc, subject); err != nil {
		return ocispec.Descriptor{}, err
	}
	a, err := artifact(doc)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return referrer.PushFallback(ctx, target, a, subject)
}
