package subjects

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	orasregistry "oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// FallbackTagSuffix ends the tag of a subjects artifact pushed in the OCI
// 1.0 fallback form: "sha256-<index hex>.subjects", after cosign's
// "sha256-<hex>.sig" convention. The bare "sha256-<hex>" tag is not used:
// the OCI referrers tag schema reserves it for an index of referrers, which
// other tools (oras, regctl) read and rewrite.
const FallbackTagSuffix = ".subjects"

// FallbackTag is the tag of the fallback-form subjects artifact of index.
func FallbackTag(index digest.Digest) string {
	return index.Algorithm().String() + "-" + index.Encoded() + FallbackTagSuffix
}

// Pushed says how PushOrFallback published the artifact.
type Pushed struct {
	// Desc is the artifact's manifest (ArtifactType set in either form).
	Desc ocispec.Descriptor
	// Fallback is true when the OCI 1.0 form was pushed and tagged
	// FallbackTag(subject); Refusal is then the registry's refusal of the
	// OCI 1.1 form.
	Fallback bool
	Refusal  error
}

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
	desc, err := Push(ctx, target, doc, subject)
	if err == nil {
		return Pushed{Desc: desc}, nil
	}
	if !Refused(err) {
		return Pushed{}, err
	}
	fdesc, ferr := pushFallback(ctx, target, doc, subject)
	if ferr != nil {
		return Pushed{}, fmt.Errorf("the registry refused the subjects artifact as an OCI 1.1 artifact (%v) and in the OCI 1.0 fallback form (%w); see docs/subjects.md, \"Registries that refuse OCI 1.1 artifacts\"", err, ferr)
	}
	return Pushed{Desc: fdesc, Fallback: true, Refusal: err}, nil
}

// pushFallback pushes doc in the OCI 1.0 form and tags it.
func pushFallback(ctx context.Context, target oras.Target, doc Document, subject ocispec.Descriptor) (ocispec.Descriptor, error) {
	if err := doc.Validate(); err != nil {
		return ocispec.Descriptor{}, err
	}
	if got := doc.Subjects[0].DigestOf(); got != subject.Digest {
		return ocispec.Descriptor{}, fmt.Errorf("subjects document: first entry is %s, want the subject %s", got, subject.Digest)
	}
	desc, err := pushForm(ctx, target, doc, nil)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	tag := FallbackTag(subject.Digest)
	if rp, ok := target.(orasregistry.ReferencePusher); ok {
		_, _, manifest, _, err := packForm(doc, nil)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		plain := desc
		plain.ArtifactType = ""
		err = rp.PushReference(ctx, plain, bytes.NewReader(manifest), tag)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("tagging the subjects artifact %s as %s: %w", desc.Digest, tag, err)
		}
		return desc, nil
	}
	if err := target.Tag(ctx, desc, tag); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("tagging the subjects artifact %s as %s: %w", desc.Digest, tag, err)
	}
	return desc, nil
}

// Refused reports whether err is a registry's refusal of a manifest's form
// (as opposed to a transient, auth or missing-blob failure): a PUT of a
// manifest answered 415, or 400 with MANIFEST_INVALID, UNSUPPORTED or no
// error code.
func Refused(err error) bool {
	var er *errcode.ErrorResponse
	if !errors.As(err, &er) || er.Method != http.MethodPut || er.URL == nil || !strings.Contains(er.URL.Path, "/manifests/") {
		return false
	}
	switch er.StatusCode {
	case http.StatusUnsupportedMediaType:
		return true
	case http.StatusBadRequest:
		if len(er.Errors) == 0 {
			return true
		}
		for _, e := range er.Errors {
			if e.Code != errcode.ErrorCodeManifestInvalid && e.Code != errcode.ErrorCodeUnsupported {
				return false
			}
		}
		return true
	}
	return false
}

// findFallback looks for the fallback-form artifact of indexDesc under
// FallbackTag; found is false when the tag does not exist.
func findFallback(ctx context.Context, target content.ReadOnlyGraphStorage, indexDesc ocispec.Descriptor) (desc ocispec.Descriptor, found bool, err error) {
	r, ok := target.(content.Resolver)
	if !ok {
		return ocispec.Descriptor{}, false, nil
	}
	tag := FallbackTag(indexDesc.Digest)
	desc, err = r.Resolve(ctx, tag)
	if errors.Is(err, errdef.ErrNotFound) {
		return ocispec.Descriptor{}, false, nil
	}
	if err != nil {
		return ocispec.Descriptor{}, false, fmt.Errorf("resolving the fallback tag %s: %w", tag, err)
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
