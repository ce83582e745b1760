// Package referrer attaches an artifact to a manifest or index (its
// subject) and finds it again: the OCI 1.1 form (artifactType, the empty
// config, one layer, subject) found through the registry's referrers API
// or, on registries without one, the "sha256-<hex>" referrers tag oras-go
// keeps; and, for registries that refuse OCI 1.1 artifacts, an OCI 1.0
// fallback form (no artifactType, no subject, the config media type set to
// the artifact type) tagged "sha256-<subject hex><suffix>", after cosign's
// ".sig"/".sbom" convention. The subjects artifact (pkg/subjects) and the
// SBOMs (internal/sbom) are both published this way.
package referrer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	orasregistry "oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/mcbuild/mcbuild/internal/oci"
)

// Artifact is what is attached: one layer of media type Type holding Data.
type Artifact struct {
	// Type is the manifest's artifactType and its layer's media type,
	// e.g. "application/spdx+json".
	Type string
	Data []byte
	// Annotations go on the manifest, in both forms.
	Annotations map[string]string
	// FallbackSuffix ends the fallback form's tag, e.g. ".sbom":
	// FallbackTag(subject, FallbackSuffix).
	FallbackSuffix string
	// What names the artifact in errors, e.g. "subjects artifact".
	What string
	// Help ends the error of PushOrFallback when both forms were refused,
	// e.g. where the registry's limitation is documented.
	Help string
}

// FallbackTag is the tag of the fallback-form artifact of subject:
// "<algorithm>-<hex><suffix>". The bare "sha256-<hex>" tag is not used: the
// OCI referrers tag schema reserves it for an index of referrers, which
// other tools (oras, regctl) read and rewrite.
func FallbackTag(subject digest.Digest, suffix string) string {
	return subject.Algorithm().String() + "-" + subject.Encoded() + suffix
}

// Packed is an artifact as pushed: its blobs and manifest.
type Packed struct {
	Config   ocispec.Descriptor // the empty JSON blob "{}"
	Layer    ocispec.Descriptor
	Manifest []byte
	// Desc is the manifest's descriptor, ArtifactType set in either form.
	Desc ocispec.Descriptor
}

// Pack makes the OCI 1.1 form of a when subject is set, else the OCI 1.0
// fallback form.
func Pack(a Artifact, subject *ocispec.Descriptor) (Packed, error) {
	p := Packed{Config: EmptyConfig(), Layer: content.NewDescriptorFromBytes(a.Type, a.Data)}
	m := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Layers:      []ocispec.Descriptor{p.Layer},
		Annotations: maps.Clone(a.Annotations),
	}
	if subject != nil {
		m.ArtifactType = a.Type
		m.Subject = &ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	} else {
		p.Config.MediaType = a.Type
	}
	m.Config = p.Config
	raw, err := json.Marshal(m)
	if err != nil {
		return Packed{}, err
	}
	p.Manifest = raw
	p.Desc = content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, raw)
	p.Desc.ArtifactType = a.Type
	return p, nil
}

// EmptyConfig is the OCI empty descriptor without the embedded data field.
func EmptyConfig() ocispec.Descriptor {
	return ocispec.Descriptor{
		MediaType: ocispec.MediaTypeEmptyJSON,
		Digest:    ocispec.DescriptorEmptyJSON.Digest,
		Size:      ocispec.DescriptorEmptyJSON.Size,
	}
}

// Push pushes a in the OCI 1.1 form with subject (nil: the fallback form,
// untagged): the empty config blob and the layer unless the registry has
// them, then the manifest, by digest. With an oras remote.Repository as
// target the registry's referrers API is used, or the "sha256-<hex>"
// referrers tag is updated when there is none. It returns the manifest's
// descriptor (artifactType set).
func Push(ctx context.Context, target oras.Target, a Artifact, subject *ocispec.Descriptor) (ocispec.Descriptor, error) {
	p, err := Pack(a, subject)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	blobs := []struct {
		desc ocispec.Descriptor
		data []byte
		what string
	}{
		{p.Config, []byte("{}"), "empty config"},
		{p.Layer, a.Data, a.What + " layer"},
		{p.Desc, p.Manifest, a.What + " manifest"},
	}
	for i, b := range blobs {
		if i < 2 {
			// Blobs: skip what the registry already has.
			ok, err := target.Exists(ctx, b.desc)
			if err == nil && ok {
				continue
			}
		}
		if err := target.Push(ctx, b.desc, bytes.NewReader(b.data)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
			return ocispec.Descriptor{}, fmt.Errorf("pushing %s %s: %w", b.what, b.desc.Digest, err)
		}
	}
	return p.Desc, nil
}

// Pushed says how PushOrFallback published the artifact.
type Pushed struct {
	// Desc is the artifact's manifest (ArtifactType set in either form).
	Desc ocispec.Descriptor
	// Fallback is true when the OCI 1.0 form was pushed and tagged
	// FallbackTag(subject, suffix); Refusal is then the registry's refusal
	// of the OCI 1.1 form.
	Fallback bool
	Refusal  error
}

// PushOrFallback pushes a as Push does (OCI 1.1). If the registry refuses
// that form, or the referrers index oras pushes for it on registries
// without the referrers API (Refused), it pushes the OCI 1.0 fallback form
// and tags it FallbackTag(subject, a.FallbackSuffix), where FindFallback
// looks. If the fallback form is refused too, the error names both
// refusals. Any other error is returned as is: nothing is ever skipped
// silently.
func PushOrFallback(ctx context.Context, target oras.Target, a Artifact, subject ocispec.Descriptor) (Pushed, error) {
	desc, err := Push(ctx, target, a, &subject)
	if err == nil {
		return Pushed{Desc: desc}, nil
	}
	if !Refused(err) {
		return Pushed{}, err
	}
	fdesc, ferr := PushFallback(ctx, target, a, subject)
	if ferr != nil {
		msg := fmt.Errorf("the registry refused the %s as an OCI 1.1 artifact (%v) and in the OCI 1.0 fallback form (%w)", a.What, err, ferr)
		if a.Help != "" {
			msg = fmt.Errorf("%w; %s", msg, a.Help)
		}
		return Pushed{}, msg
	}
	return Pushed{Desc: fdesc, Fallback: true, Refusal: err}, nil
}

// PushFallback pushes a in the OCI 1.0 form and tags it
// FallbackTag(subject.Digest, a.FallbackSuffix).
func PushFallback(ctx context.Context, target oras.Target, a Artifact, subject ocispec.Descriptor) (ocispec.Descriptor, error) {
	desc, err := Push(ctx, target, a, nil)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	tag := FallbackTag(subject.Digest, a.FallbackSuffix)
	if rp, ok := target.(orasregistry.ReferencePusher); ok {
		p, err := Pack(a, nil)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		plain := desc
		plain.ArtifactType = ""
		if err := rp.PushReference(ctx, plain, bytes.NewReader(p.Manifest), tag); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("tagging the %s %s as %s: %w", a.What, desc.Digest, tag, err)
		}
		return desc, nil
	}
	if err := target.Tag(ctx, desc, tag); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("tagging the %s %s as %s: %w", a.What, desc.Digest, tag, err)
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

// IsFallbackForm reports whether m is an artifact of artifactType in the
// OCI 1.0 fallback form: no artifactType, no subject, config media type
// artifactType.
func IsFallbackForm(m ocispec.Manifest, artifactType string) bool {
	return m.ArtifactType == "" && m.Subject == nil && m.Config.MediaType == artifactType
}

// FindFallback resolves the fallback tag of subject (FallbackTag(subject,
// suffix)); found is false when the tag does not exist or target cannot
// resolve tags. The caller checks what the artifact says it describes.
func FindFallback(ctx context.Context, target content.ReadOnlyStorage, subject digest.Digest, suffix string) (desc ocispec.Descriptor, found bool, err error) {
	r, ok := target.(content.Resolver)
	if !ok {
		return ocispec.Descriptor{}, false, nil
	}
	tag := FallbackTag(subject, suffix)
	desc, err = r.Resolve(ctx, tag)
	if errors.Is(err, errdef.ErrNotFound) {
		return ocispec.Descriptor{}, false, nil
	}
	if err != nil {
		return ocispec.Descriptor{}, false, fmt.Errorf("resolving the fallback tag %s: %w", tag, err)
	}
	return desc, true, nil
}

// List lists the distinct artifacts of one of artifactTypes referring to
// desc (image manifests only), with the registry's referrers API or the
// referrers tag (oras-go picks); with one type the registry is asked to
// filter by it. The listing is bounded, whatever the registry sends: at
// most oci.MaxReferrersPages pages and oci.MaxReferrers referrers, each
// page filtered by artifactTypes as it arrives (registries may ignore the
// filter); going over a limit is an *oci.LimitError. A target without a
// referrers API of its own (an in-process store) lists its predecessors.
func List(ctx context.Context, target content.ReadOnlyGraphStorage, desc ocispec.Descriptor, artifactTypes ...string) ([]ocispec.Descriptor, error) {
	artifactType := ""
	if len(artifactTypes) == 1 {
		artifactType = artifactTypes[0]
	}
	var found []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	pages, entries := 0, 0
	page := func(refs []ocispec.Descriptor) error {
		pages++
		entries += len(refs)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case pages > oci.MaxReferrersPages:
			return limit(desc, "MaxReferrersPages", fmt.Sprintf("more than %d pages of referrers", oci.MaxReferrersPages))
		case entries > oci.MaxReferrers:
			return limit(desc, "MaxReferrers", fmt.Sprintf("more than %d referrers", oci.MaxReferrers))
		}
		for _, r := range refs {
			if slices.Contains(artifactTypes, r.ArtifactType) && r.MediaType == ocispec.MediaTypeImageManifest && !seen[r.Digest] {
				seen[r.Digest] = true
				found = append(found, ocispec.Descriptor{MediaType: r.MediaType, ArtifactType: r.ArtifactType, Digest: r.Digest, Size: r.Size})
			}
		}
		return nil
	}
	lister, ok := target.(orasregistry.ReferrerLister)
	if !ok {
		refs, err := orasregistry.Referrers(ctx, target, desc, artifactType)
		if err != nil {
			return nil, err
		}
		return found, page(refs)
	}
	err := boundPages(lister).Referrers(ctx, desc, artifactType, page)
	if errors.Is(err, errdef.ErrTooManyPages) {
		return nil, limit(desc, "MaxReferrersPages", fmt.Sprintf("more than %d pages of referrers", oci.MaxReferrersPages))
	}
	return found, err
}

func limit(desc ocispec.Descriptor, name, detail string) error {
	return &oci.LimitError{What: "referrers of " + desc.Digest.String(), Limit: name, Detail: detail}
}

// boundPages is l, or for an oras repository that would follow a
// registry's Link headers without end, a copy (of its exported settings)
// that stops after oci.MaxReferrersPages pages: pages whose every entry
// oras filters out never reach the caller's function, which cannot count
// them.
func boundPages(l orasregistry.ReferrerLister) orasregistry.ReferrerLister {
	r, ok := l.(*remote.Repository)
	if !ok || (r.ReferrerListMaxPages > 0 && r.ReferrerListMaxPages <= oci.MaxReferrersPages) {
		return l
	}
	return &remote.Repository{
		Client: r.Client, Reference: r.Reference, PlainHTTP: r.PlainHTTP,
		ManifestMediaTypes: r.ManifestMediaTypes, ReferrerListPageSize: r.ReferrerListPageSize,
		ReferrerListMaxPages: oci.MaxReferrersPages, MaxMetadataBytes: r.MaxMetadataBytes,
		HandleWarning: r.HandleWarning,
	}
}
