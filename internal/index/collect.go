package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/oci"
)

// Limits applied by Collect to untrusted input, besides the size of each
// document (oci.MaxDocumentBytes).
const (
	// MaxDepth is the number of index levels Collect follows, the root
	// index included: root index -> nested index -> ... ; an index at a
	// deeper level is an error.
	MaxDepth = 4
	// MaxDocuments caps the number of distinct documents (indexes,
	// manifests, configs) one Collect call fetches.
	MaxDocuments = 1000
)

// Merge resolves each reference (a tag or digest in target, or for a remote
// repository a full reference into it) and collects the image manifests of
// all of them with Collect, checking that Assemble accepts them. It returns
// the entries and Collect's warnings (skipped non-image entries). Error messages
// name inputs by their reference.
func Merge(ctx context.Context, target oras.ReadOnlyTarget, refs ...string) ([]Entry, []string, error) {
	if len(refs) == 0 {
		return nil, nil, errors.New("index: merge: no inputs")
	}
	roots := make([]ocispec.Descriptor, len(refs))
	for i, ref := range refs {
		d, err := target.Resolve(ctx, ref)
		if err != nil {
			return nil, nil, fmt.Errorf("index: merge: resolving %q: %w", ref, err)
		}
		d.Annotations = maps.Clone(d.Annotations)
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[ocispec.AnnotationRefName] = ref
		roots[i] = d
	}
	entries, warnings, err := Collect(ctx, target, roots)
	if err != nil {
		return nil, warnings, err
	}
	// Refuse now what Assemble would refuse later, before anything is pushed.
	if _, err := Assemble(entries); err != nil {
		return nil, warnings, err
	}
	return entries, warnings, nil
}

// Collect walks the roots (each an image index or an image manifest, as
// resolved by the caller) and returns one Entry per image manifest found,
// in the order found, plus warnings for entries skipped as non-images.
//
// Indexes (OCI or Docker manifest lists) are flattened recursively, up to
// MaxDepth levels; cycles are refused. Each child keeps its descriptor
// (platform, annotations) from its index. A manifest without a platform in
// its descriptor (a root manifest, typically) gets the os, architecture,
// variant, os.version and os.features of its config. The root's
// org.opencontainers.image.ref.name annotation, if any, names the input in
// messages and is not copied into the entry; Merge sets it to the reference.
//
// Format comes from the manifest's layers (oci.IsGzipLayer,
// oci.IsZstdLayer): all gzip -> gzip; all zstd -> zstd:chunked when every
// layer carries oci.AnnotationZstdChunkedChecksum, else zstd. Mixed,
// uncompressed or unknown layer types, zero layers, or a zstd annotation on a
// gzip manifest are errors.
//
// Skipped with a warning: descriptors annotated as buildkit attestations,
// platform unknown/unknown, manifests with an artifactType or a config that
// is not an image config, and index children of a media type that is not an
// index or a manifest. A root that is not an image is an error, and so is a
// root that yields no image.
//
// The same (platform, format) reached twice is kept once when the digest is
// the same, and is an error naming both inputs when digests differ; one
// digest reached under two platforms or formats is an error too.
//
// Every fetched document is size-capped (oci.MaxDocumentBytes,
// MaxDocuments) and verified against its descriptor's size and digest
// (oci.FetchBounded), so a registry cannot substitute content.
func Collect(ctx context.Context, fetcher content.Fetcher, roots []ocispec.Descriptor) ([]Entry, []string, error) {
	c := newCollector(func(ctx context.Context, d ocispec.Descriptor, what string) ([]byte, error) {
		return oci.FetchBounded(ctx, fetcher, d, oci.MaxDocumentBytes, what)
	})
	return c.collect(ctx, roots)
}

// fetchFunc is oci.FetchBounded outside tests; a test of the cycle guard
// swaps it for one that verifies nothing.
type fetchFunc func(ctx context.Context, d ocispec.Descriptor, what string) ([]byte, error)

type origin struct {
	entry Entry
	input string
}

type collector struct {
	fetch     fetchFunc
	fetched   int
	docs      map[digest.Digest]*document
	configs   map[digest.Digest]*ocispec.Platform
	entries   []Entry
	byKey     map[string]origin
	byDigest  map[digest.Digest]origin
	warnings  []string
	inputHits int
}

// document is a parsed index or manifest.
type document struct {
	mediaType string
	index     *ocispec.Index
	manifest  *ocispec.Manifest
}

func newCollector(fetch fetchFunc) *collector {
	return &collector{
		fetch:    fetch,
		docs:     map[digest.Digest]*document{},
		configs:  map[digest.Digest]*ocispec.Platform{},
		byKey:    map[string]origin{},
		byDigest: map[digest.Digest]origin{},
	}
}

func (c *collector) collect(ctx context.Context, roots []ocispec.Descriptor) ([]Entry, []string, error) {
	if len(roots) == 0 {
		return nil, nil, errors.New("index: collect: no inputs")
	}
	for i, root := range roots {
		input := fmt.Sprintf("input %d (%s)", i+1, root.Digest)
		if name := root.Annotations[ocispec.AnnotationRefName]; name != "" {
			input = fmt.Sprintf("%q", name)
		}
		c.inputHits = 0
		if err := c.walk(ctx, root, input, 0, nil); err != nil {
			return nil, c.warnings, fmt.Errorf("index: %s: %w", input, err)
		}
		if c.inputHits == 0 {
			return nil, c.warnings, fmt.Errorf("index: %s: contains no image manifest", input)
		}
	}
	return c.entries, c.warnings, nil
}

func (c *collector) warn(d ocispec.Descriptor, input, why string) {
	c.warnings = append(c.warnings, fmt.Sprintf("skipped %s in %s: %s", d.Digest, input, why))
}

// walk visits d; depth is the number of indexes above it, stack their digests.
func (c *collector) walk(ctx context.Context, d ocispec.Descriptor, input string, depth int, stack []digest.Digest) error {
	root := depth == 0
	if !root {
		if t := d.Annotations[oci.AnnotationDockerReferenceType]; t != "" {
			c.warn(d, input, fmt.Sprintf("not an image (%s=%s)", oci.AnnotationDockerReferenceType, t))
			return nil
		}
		if p := d.Platform; p != nil && p.OS == "unknown" && p.Architecture == "unknown" {
			c.warn(d, input, "platform unknown/unknown (an attestation or artifact)")
			return nil
		}
	}
	switch {
	case d.MediaType == "":
		return fmt.Errorf("%s: descriptor has no media type", d.Digest)
	case !oci.IsIndex(d.MediaType) && !oci.IsManifest(d.MediaType):
		if root {
			return fmt.Errorf("%s: media type %q is not an image manifest or index", d.Digest, d.MediaType)
		}
		c.warn(d, input, fmt.Sprintf("media type %q is not an image manifest or index", d.MediaType))
		return nil
	}
	if slices.Contains(stack, d.Digest) {
		return fmt.Errorf("%s: index cycle", d.Digest)
	}
	doc, err := c.document(ctx, d)
	if err != nil {
		return err
	}
	if doc.index != nil {
		if depth >= MaxDepth {
			return fmt.Errorf("%s: indexes nested more than %d levels deep", d.Digest, MaxDepth)
		}
		if len(doc.index.Manifests) == 0 {
			return fmt.Errorf("index %s lists no manifests", d.Digest)
		}
		stack = append(slices.Clip(stack), d.Digest)
		for _, child := range doc.index.Manifests {
			if err := c.walk(ctx, child, input, depth+1, stack); err != nil {
				return err
			}
		}
		return nil
	}
	return c.image(ctx, d, doc, input, root)
}

// image turns one manifest into an Entry (or a warning).
func (c *collector) image(ctx context.Context, d ocispec.Descriptor, doc *document, input string, root bool) error {
	m := doc.manifest
	notImage := ""
	switch {
	case m.Config.MediaType == "":
		return fmt.Errorf("manifest %s is malformed: its config has no media type", d.Digest)
	case m.ArtifactType != "":
		notImage = fmt.Sprintf("artifact manifest (artifactType %q)", m.ArtifactType)
	case !oci.IsImageConfig(m.Config.MediaType):
		notImage = fmt.Sprintf("config media type %q is not an image config", m.Config.MediaType)
	}
	if notImage != "" {
		if root {
			return fmt.Errorf("manifest %s is not an image: %s", d.Digest, notImage)
		}
		c.warn(d, input, notImage)
		return nil
	}
	format, err := layerFormat(d.Digest, m.Layers)
	if err != nil {
		return err
	}
	if d.Annotations[oci.AnnotationZstd] == "true" && !format.IsZstd() {
		return fmt.Errorf("manifest %s has gzip layers but its index entry carries %s=true", d.Digest, oci.AnnotationZstd)
	}
	platform := d.Platform
	if !hasPlatform(platform) {
		if platform, err = c.configPlatform(ctx, d, m.Config); err != nil {
			return err
		}
		if platform.OS == "unknown" && platform.Architecture == "unknown" {
			if root {
				return fmt.Errorf("manifest %s: config platform is unknown/unknown", d.Digest)
			}
			c.warn(d, input, "config platform unknown/unknown (an attestation or artifact)")
			return nil
		}
	}
	p := *platform
	p.OSFeatures = slices.Clone(p.OSFeatures)
	e := Entry{Descriptor: d, Format: format}
	e.Descriptor.MediaType = doc.mediaType
	e.Descriptor.Platform = &p
	e.Descriptor.Annotations = maps.Clone(d.Annotations)
	if root {
		delete(e.Descriptor.Annotations, ocispec.AnnotationRefName)
	}
	if len(e.Descriptor.Annotations) == 0 {
		e.Descriptor.Annotations = nil
	}
	return c.add(e, input)
}

func (c *collector) add(e Entry, input string) error {
	c.inputHits++
	pk := platformKey(e.Descriptor.Platform)
	key := pk + " " + string(e.Format)
	if prev, ok := c.byDigest[e.Descriptor.Digest]; ok {
		prevKey := platformKey(prev.entry.Descriptor.Platform) + " " + string(prev.entry.Format)
		if prevKey == key {
			return nil // the same manifest reached again
		}
		return fmt.Errorf("manifest %s is listed as %s in %s and as %s in %s", e.Descriptor.Digest, prevKey, prev.input, key, input)
	}
	if prev, ok := c.byKey[key]; ok {
		return fmt.Errorf("two different manifests for %s %s: %s from %s and %s from %s",
			pk, e.Format, prev.entry.Descriptor.Digest, prev.input, e.Descriptor.Digest, input)
	}
	o := origin{entry: e, input: input}
	c.byKey[key] = o
	c.byDigest[e.Descriptor.Digest] = o
	c.entries = append(c.entries, e)
	return nil
}

// layerFormat derives the compression format of a manifest from its layers.
func layerFormat(m digest.Digest, layers []ocispec.Descriptor) (formats.Format, error) {
	if len(layers) == 0 {
		return "", fmt.Errorf("manifest %s has no layers", m)
	}
	var gz, zs, chunked int
	var types []string
	for _, l := range layers {
		if !slices.Contains(types, l.MediaType) {
			types = append(types, l.MediaType)
		}
		switch {
		case oci.IsGzipLayer(l.MediaType):
			gz++
		case oci.IsZstdLayer(l.MediaType):
			zs++
			if l.Annotations[oci.AnnotationZstdChunkedChecksum] != "" {
				chunked++
			}
		}
	}
	switch {
	case gz == len(layers):
		return formats.Gzip, nil
	case zs == len(layers) && chunked == zs:
		return formats.ZstdChunked, nil
	case zs == len(layers):
		return formats.Zstd, nil
	}
	return "", fmt.Errorf("manifest %s has layers of mixed, uncompressed or unknown compression (%s); only all-gzip or all-zstd manifests can be listed",
		m, strings.Join(types, ", "))
}

// fetchLimited fetches a document unless MaxDocuments are fetched already;
// the fetch function bounds its size and verifies it.
func (c *collector) fetchLimited(ctx context.Context, d ocispec.Descriptor, what string) ([]byte, error) {
	if c.fetched >= MaxDocuments {
		return nil, fmt.Errorf("%s %s: more than %d documents to fetch", what, d.Digest, MaxDocuments)
	}
	c.fetched++
	return c.fetch(ctx, d, what)
}

// document fetches and parses an index or manifest, once per digest.
func (c *collector) document(ctx context.Context, d ocispec.Descriptor) (*document, error) {
	if doc, ok := c.docs[d.Digest]; ok {
		if d.MediaType != doc.mediaType {
			return nil, fmt.Errorf("%s: descriptor media type %q, content is %q", d.Digest, d.MediaType, doc.mediaType)
		}
		return doc, nil
	}
	b, err := c.fetchLimited(ctx, d, "manifest")
	if err != nil {
		return nil, err
	}
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("%s: parsing: %w", d.Digest, err)
	}
	mt := d.MediaType
	if probe.MediaType != "" && probe.MediaType != mt {
		return nil, fmt.Errorf("%s: descriptor media type %q, content says %q", d.Digest, mt, probe.MediaType)
	}
	doc := &document{mediaType: mt}
	switch {
	case oci.IsIndex(mt):
		doc.index = new(ocispec.Index)
		err = json.Unmarshal(b, doc.index)
	case oci.IsManifest(mt):
		doc.manifest = new(ocispec.Manifest)
		err = json.Unmarshal(b, doc.manifest)
	default:
		return nil, fmt.Errorf("%s: media type %q is not an image manifest or index", d.Digest, mt)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: parsing %s: %w", d.Digest, mt, err)
	}
	c.docs[d.Digest] = doc
	return doc, nil
}

// configPlatform reads the platform of an image from its config.
func (c *collector) configPlatform(ctx context.Context, m ocispec.Descriptor, cfg ocispec.Descriptor) (*ocispec.Platform, error) {
	if p, ok := c.configs[cfg.Digest]; ok {
		return p, nil
	}
	b, err := c.fetchLimited(ctx, cfg, "config")
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", m.Digest, err)
	}
	var img ocispec.Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, fmt.Errorf("manifest %s: parsing config %s: %w", m.Digest, cfg.Digest, err)
	}
	if img.OS == "" || img.Architecture == "" {
		return nil, fmt.Errorf("manifest %s: no platform in its descriptor nor os/architecture in config %s", m.Digest, cfg.Digest)
	}
	p := &img.Platform
	c.configs[cfg.Digest] = p
	return p, nil
}
