package subjects

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	orasregistry "oras.land/oras-go/v2/registry"

	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/pkg/referrer"
)

const (
	// ArtifactType is the artifactType of the subjects manifest and the
	// media type of its one layer.
	ArtifactType = "application/vnd.mcbuild.subjects.v1+json"
	// AnnotationPlatform is the entry annotation holding os/arch[/variant].
	AnnotationPlatform = "platform"
	// AnnotationCompression is the entry annotation holding the layer
	// compression format (gzip, zstd, zstd:chunked).
	AnnotationCompression = "compression"
	// MaxSize bounds every document this package reads (manifest, layer,
	// index): larger ones are refused as untrusted input. It is mcbuild's
	// one limit for registry documents, oci.MaxDocumentBytes.
	MaxSize = oci.MaxDocumentBytes
)

// Subject is one entry of the document: an in-toto v1 ResourceDescriptor.
type Subject struct {
	// Name is the repository without tag or digest, e.g. "quay.io/ns/app".
	Name string `json:"name"`
	// Digest maps algorithm to hex, e.g. {"sha256": "<64 hex>"}.
	Digest map[string]string `json:"digest"`
	// MediaType of the manifest or index.
	MediaType string `json:"mediaType,omitempty"`
	// Annotations: "platform" and "compression" for image manifests.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Document is the JSON content of the subjects layer.
type Document struct {
	Subjects []Subject `json:"subjects"`
}

// Manifest is one manifest an index lists, as New records it.
type Manifest struct {
	// Descriptor is the index's descriptor of the manifest; its Platform,
	// when set, becomes the entry's platform annotation.
	Descriptor ocispec.Descriptor
	// Compression is its layers' format ("gzip", "zstd", "zstd:chunked");
	// "" leaves the compression annotation out.
	Compression string
}

// New builds the document for an index pushed to repo: the index first, then
// the manifests in the order given (the index's order). A tag or digest on
// repo is dropped.
func New(repo string, indexDesc ocispec.Descriptor, manifests []Manifest) Document {
	name := repoName(repo)
	doc := Document{Subjects: []Subject{{
		Name:      name,
		Digest:    digestMap(indexDesc.Digest),
		MediaType: indexDesc.MediaType,
	}}}
	for _, e := range manifests {
		s := Subject{
			Name:        name,
			Digest:      digestMap(e.Descriptor.Digest),
			MediaType:   e.Descriptor.MediaType,
			Annotations: map[string]string{},
		}
		if p := e.Descriptor.Platform; p != nil {
			s.Annotations[AnnotationPlatform] = oci.PlatformString(*p)
		}
		if e.Compression != "" {
			s.Annotations[AnnotationCompression] = e.Compression
		}
		if len(s.Annotations) == 0 {
			s.Annotations = nil
		}
		doc.Subjects = append(doc.Subjects, s)
	}
	return doc
}

// repoName is repo without tag or digest: the name entries carry.
func repoName(repo string) string {
	if ref, err := orasregistry.ParseReference(repo); err == nil {
		return ref.Registry + "/" + ref.Repository
	}
	return repo
}

func digestMap(d digest.Digest) map[string]string {
	return map[string]string{d.Algorithm().String(): d.Encoded()}
}

// DigestOf returns the sha256 digest of an entry ("" if it has none).
func (s Subject) DigestOf() digest.Digest {
	h, ok := s.Digest["sha256"]
	if !ok {
		return ""
	}
	return digest.NewDigestFromEncoded(digest.SHA256, h)
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate checks the document's schema: at least one entry, and every entry
// has a name and a sha256 digest of 64 lower-case hex digits.
func (d Document) Validate() error {
	if len(d.Subjects) == 0 {
		return errors.New("subjects document: no entries")
	}
	for i, s := range d.Subjects {
		if s.Name == "" {
			return fmt.Errorf("subjects document: entry %d has no name", i)
		}
		h, ok := s.Digest["sha256"]
		if !ok {
			return fmt.Errorf("subjects document: entry %d (%s) has no sha256 digest", i, s.Name)
		}
		if !sha256Hex.MatchString(h) {
			return fmt.Errorf("subjects document: entry %d (%s) has a malformed sha256 digest %q", i, s.Name, truncate(h, 80))
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// artifact is doc as a referrer artifact: its JSON in one layer of media
// type ArtifactType.
func artifact(doc Document) (referrer.Artifact, error) {
	layer, err := json.Marshal(doc)
	if err != nil {
		return referrer.Artifact{}, err
	}
	return referrer.Artifact{
		Type: ArtifactType, Data: layer, FallbackSuffix: FallbackTagSuffix, What: "subjects artifact",
		Help: `see docs/subjects.md, "Registries that refuse OCI 1.1 artifacts"`,
	}, nil
}

// emptyConfig is the OCI empty descriptor without the embedded data field.
func emptyConfig() ocispec.Descriptor { return referrer.EmptyConfig() }

// check is what every push checks: a valid document whose first entry is
// the subject.
func check(doc Document, subject ocispec.Descriptor) error {
	if err := doc.Validate(); err != nil {
		return err
	}
	if got := doc.Subjects[0].DigestOf(); got != subject.Digest {
		return fmt.Errorf("subjects document: first entry is %s, want the subject %s", got, subject.Digest)
	}
	return nil
}

// Push pushes the subjects artifact for subject (the index): the empty
// config blob, the document layer and the manifest, by digest. With an oras
// remote.Repository as target the registry's referrers API is used, or the
// "sha256-<hex>" fallback tag is updated when there is none. It returns the
// artifact's manifest descriptor (artifactType set).
func Push(ctx context.Context, target oras.Target, doc Document, subject ocispec.Descriptor) (ocispec.Descriptor, error) {
	if err := check(doc, subject); err != nil {
		return ocispec.Descriptor{}, err
	}
	return push(ctx, target, doc, subject)
}

// push is Push without the checks (tests use it to push tampered documents).
func push(ctx context.Context, target oras.Target, doc Document, subject ocispec.Descriptor) (ocispec.Descriptor, error) {
	return pushForm(ctx, target, doc, &subject)
}

// pushForm pushes the OCI 1.1 form with subject, or the OCI 1.0 form
// (untagged) without.
func pushForm(ctx context.Context, target oras.Target, doc Document, subject *ocispec.Descriptor) (ocispec.Descriptor, error) {
	a, err := artifact(doc)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return referrer.Push(ctx, target, a, subject)
}

// Fetch reads and validates the subjects artifact desc: an OCI image
// manifest with exactly one layer of media type ArtifactType holding a
// valid document, in one of two forms:
//   - OCI 1.1 (what Push writes): artifactType ArtifactType, the empty
//     config, and a subject;
//   - OCI 1.0 fallback (what PushOrFallback writes to registries that
//     refuse the first): no artifactType, no subject, config media type
//     ArtifactType with the empty JSON blob. The returned manifest's
//     Subject is then nil; the document's first entry names the index.
//
// Sizes are bounded by MaxSize and digests are verified.
func Fetch(ctx context.Context, target content.Fetcher, desc ocispec.Descriptor) (Document, ocispec.Manifest, error) {
	var m ocispec.Manifest
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return Document{}, m, fmt.Errorf("%s is a %q, not an OCI image manifest: not a subjects artifact", desc.Digest, desc.MediaType)
	}
	raw, err := oci.FetchBounded(ctx, target, desc, oci.MaxDocumentBytes, "subjects manifest")
	if err != nil {
		return Document{}, m, err
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return Document{}, m, fmt.Errorf("subjects manifest %s: invalid JSON: %w", desc.Digest, err)
	}
	fallback := IsFallbackForm(m)
	switch {
	case m.SchemaVersion != 2:
		return Document{}, m, fmt.Errorf("subjects manifest %s: schemaVersion %d, want 2", desc.Digest, m.SchemaVersion)
	case m.MediaType != ocispec.MediaTypeImageManifest:
		return Document{}, m, fmt.Errorf("subjects manifest %s: mediaType %q, want %q", desc.Digest, m.MediaType, ocispec.MediaTypeImageManifest)
	case !fallback && m.ArtifactType != ArtifactType:
		return Document{}, m, fmt.Errorf("%s has artifactType %q, not %q: not a subjects artifact", desc.Digest, m.ArtifactType, ArtifactType)
	case !fallback && m.Config.MediaType != ocispec.MediaTypeEmptyJSON:
		return Document{}, m, fmt.Errorf("subjects manifest %s: config mediaType %q, want %q", desc.Digest, m.Config.MediaType, ocispec.MediaTypeEmptyJSON)
	case fallback && (m.Config.Digest != ocispec.DescriptorEmptyJSON.Digest || m.Config.Size != ocispec.DescriptorEmptyJSON.Size):
		return Document{}, m, fmt.Errorf("subjects manifest %s (OCI 1.0 form): config %s, want the empty JSON blob %s", desc.Digest, m.Config.Digest, ocispec.DescriptorEmptyJSON.Digest)
	case len(m.Layers) != 1:
		return Document{}, m, fmt.Errorf("subjects manifest %s: %d layers, want exactly 1", desc.Digest, len(m.Layers))
	case m.Layers[0].MediaType != ArtifactType:
		return Document{}, m, fmt.Errorf("subjects manifest %s: layer mediaType %q, want %q", desc.Digest, m.Layers[0].MediaType, ArtifactType)
	case !fallback && m.Subject == nil:
		return Document{}, m, fmt.Errorf("subjects manifest %s: no subject", desc.Digest)
	}
	layer, err := oci.FetchBounded(ctx, target, m.Layers[0], oci.MaxDocumentBytes, "subjects layer")
	if err != nil {
		return Document{}, m, err
	}
	doc, err := decode(layer)
	if err != nil {
		return Document{}, m, fmt.Errorf("subjects artifact %s: %w", desc.Digest, err)
	}
	return doc, m, nil
}

// IsFallbackForm reports whether m is a subjects artifact in the OCI 1.0
// fallback form: no artifactType, no subject, config media type
// ArtifactType.
func IsFallbackForm(m ocispec.Manifest) bool {
	return referrer.IsFallbackForm(m, ArtifactType)
}

func decode(b []byte) (Document, error) {
	var doc Document
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		return Document{}, fmt.Errorf("subjects document: invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Document{}, errors.New("subjects document: data after the JSON object")
	}
	if err := doc.Validate(); err != nil {
		return Document{}, err
	}
	return doc, nil
}
