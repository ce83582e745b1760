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
// oci.MaxIndexDepth levels; cycles are refused. Each child keeps its descriptor
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
// Skipped with a warning (once): descriptors annotated as buildkit attestations,
// platform unknown/unknown, manifests with an artifactType or a config that
// is not an image config, and index children of a media type that is not an
// index or a manifest. A root that is not an image is an error, and so is a
// root that yields no image.
//
// The same (platform, format) reached twice is kept once when the digest is
// the same, and is an error naming both inputs when digests differ; one
// digest reached under two platforms or formats is an error too.
//
// The input is untrusted. Every fetched document is size-capped
// (oci.MaxDocumentBytes) and verified against its descriptor's size and
// digest (oci.FetchBounded), so a registry cannot substitute content. Each
// distinct document is fetched once and each distinct index walked once,
// however often it is listed, and the walk as a whole is bounded (oci.Walk:
// oci.MaxWalkDocuments, oci.MaxWalkBytes, oci.MaxWalkDescriptors) and stops
// when ctx ends. Only what the entries need is kept of each manifest, not
// the document.
func Collect(ctx context.Context, fetcher content.Fetcher, roots []ocispec.Descriptor) ([]Entry, []string, error) {
	c := newCollector(nil)
	c.fetch = func(ctx context.Context, d ocispec.Descriptor, what string) ([]byte, error) {
		return c.budget.Fetch(ctx, fetcher, d, what)
	}
	return c.collect(ctx, roots)
}

// fetchFunc is the walk budget's fetch (oci.Walk.Fetch) outside tests; a
// test of the cycle guard swaps it for one that verifies nothing.
type fetchFunc func(ctx context.Context, d ocispec.Descriptor, what string) ([]byte, error)

type origin struct {
	entry Entry
	input string
}

type collector struct {
	fetch     fetchFunc
	budget    oci.Walk
	indexes   map[digest.Digest]walkedIndex
	manifests map[digest.Digest]*manifestInfo
	configs   map[digest.Digest]*ocispec.Platform
	entries   []Entry
	byKey     map[string]origin
	byDigest  map[digest.Digest]origin
	warnings  []string
	warned    map[string]bool
	inputHits int
}

// walkedIndex is what is kept of an index once walked: walking it again
// adds nothing, so it is not fetched nor walked again.
type walkedIndex struct {
	mediaType string
	levels    int  // index levels, itself included
	images    bool // an image manifest was found under it
}

// manifestInfo is what is kept of a manifest: what an Entry needs.
type manifestInfo struct {
	mediaType string
	notImage  string // why it is skipped, "" for an image
	err       error  // why it is refused (malformed, unknown layer types)
	format    formats.Format
	config    ocispec.Descriptor // media type, digest and size only
	size      int64              // DownloadSize
}

func newCollector(fetch fetchFunc) *collector {
	return &collector{
		fetch:     fetch,
		indexes:   map[digest.Digest]walkedIndex{},
		manifests: map[digest.Digest]*manifestInfo{},
		configs:   map[digest.Digest]*ocispec.Platform{},
		byKey:     map[string]origin{},
		byDigest:  map[digest.Digest]origin{},
		warned:    map[string]bool{},
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
		if _, err := c.walk(ctx, root, input, 0, nil); err != nil {
			return nil, c.warnings, fmt.Errorf("index: %s: %w", input, err)
		}
		if c.inputHits == 0 {
			return nil, c.warnings, fmt.Errorf("index: %s: contains no image manifest", input)
		}
	}
	return c.entries, c.warnings, nil
}

func (c *collector) warn(d ocispec.Descriptor, input, why string) {
	w := fmt.Sprintf("skipped %s in %s: %s", d.Digest, input, why)
	if !c.warned[w] {
		c.warned[w] = true
		c.warnings = append(c.warnings, w)
	}
}

// skip reports whether d is passed over (with a warning) rather than walked.
func (c *collector) skip(d ocispec.Descriptor, input string, root bool) (bool, error) {
	if !root {
		if t := d.Annotations[oci.AnnotationDockerReferenceType]; t != "" {
			c.warn(d, input, fmt.Sprintf("not an image (%s=%s)", oci.AnnotationDockerReferenceType, t))
			return true, nil
		}
		if p := d.Platform; p != nil && p.OS == "unknown" && p.Architecture == "unknown" {
			c.warn(d, input, "platform unknown/unknown (an attestation or artifact)")
			return true, nil
		}
	}
	switch {
	case d.MediaType == "":
		return false, fmt.Errorf("%s: descriptor has no media type", d.Digest)
	case !oci.IsIndex(d.MediaType) && !oci.IsManifest(d.MediaType):
		if root {
			return false, fmt.Errorf("%s: media type %q is not an image manifest or index", d.Digest, d.MediaType)
		}
		c.warn(d, input, fmt.Sprintf("media type %q is not an image manifest or index", d.MediaType))
		return true, nil
	}
	return false, nil
}

// walk visits d; depth is the number of indexes above it, stack their
// digests. It returns the index levels at and under d (0 for a manifest).
func (c *collector) walk(ctx context.Context, d ocispec.Descriptor, input string, depth int, stack []digest.Digest) (int, error) {
	if skip, err := c.skip(d, input, depth == 0); skip || err != nil {
		return 0, err
	}
	if slices.Contains(stack, d.Digest) {
		return 0, fmt.Errorf("%s: index cycle", d.Digest)
	}
	if w, ok := c.indexes[d.Digest]; ok {
		return w.levels, c.again(d, w, depth)
	}
	m, ok := c.manifests[d.Digest]
	if !ok {
		children, info, err := c.document(ctx, d)
		if err != nil {
			return 0, err
		}
		if info == nil {
			return c.index(ctx, d, children, input, depth, stack)
		}
		m = info
		c.manifests[d.Digest] = m
	}
	if d.MediaType != m.mediaType {
		return 0, mediaTypeError(d, m.mediaType)
	}
	return 0, c.image(ctx, d, m, input, depth == 0)
}

func mediaTypeError(d ocispec.Descriptor, content string) error {
	return fmt.Errorf("%s: descriptor media type %q, content is %q", d.Digest, d.MediaType, content)
}

func nestedError(d digest.Digest) error {
	return fmt.Errorf("%s: indexes nested more than %d levels deep (limit MaxIndexDepth)", d, oci.MaxIndexDepth)
}

// again is an index walked before listed again, at depth: nothing new, but
// its levels must fit there, and it counts for the input if it held images.
func (c *collector) again(d ocispec.Descriptor, w walkedIndex, depth int) error {
	if d.MediaType != w.mediaType {
		return mediaTypeError(d, w.mediaType)
	}
	if depth+w.levels > oci.MaxIndexDepth {
		return nestedError(d.Digest)
	}
	if w.images {
		c.inputHits++
	}
	return nil
}

// index walks the children of the index d, once: it is remembered as walked.
func (c *collector) index(ctx context.Context, d ocispec.Descriptor, children []ocispec.Descriptor, input string, depth int, stack []digest.Digest) (int, error) {
	if depth >= oci.MaxIndexDepth {
		return 0, nestedError(d.Digest)
	}
	if len(children) == 0 {
		return 0, fmt.Errorf("index %s lists no manifests", d.Digest)
	}
	if err := c.budget.Visit(ctx, "index "+d.Digest.String(), len(children)); err != nil {
		return 0, err
	}
	stack = append(slices.Clip(stack), d.Digest)
	hits, levels := c.inputHits, 1
	for _, child := range children {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		l, err := c.walk(ctx, child, input, depth+1, stack)
		if err != nil {
			return 0, err
		}
		levels = max(levels, l+1)
	}
	c.indexes[d.Digest] = walkedIndex{mediaType: d.MediaType, levels: levels, images: c.inputHits > hits}
	return levels, nil
}

// image turns one manifest into an Entry (or a warning).
func (c *collector) image(ctx context.Context, d ocispec.Descriptor, m *manifestInfo, input string, root bool) error {
	if m.err != nil {
		return m.err
	}
	if m.notImage != "" {
		if root {
			return fmt.Errorf("manifest %s is not an image: %s", d.Digest, m.notImage)
		}
		c.warn(d, input, m.notImage)
		return nil
	}
	if d.Annotations[oci.AnnotationZstd] == "true" && !m.format.IsZstd() {
		return fmt.Errorf("manifest %s has gzip layers but its index entry carries %s=true", d.Digest, oci.AnnotationZstd)
	}
	platform := d.Platform
	if !hasPlatform(platform) {
		var err error
		if platform, err = c.configPlatform(ctx, d, m.config); err != nil {
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
	e := Entry{Descriptor: d, Format: m.format, DownloadSize: m.size}
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

// document fetches d and parses it: the children of an index, or what is
// kept of a manifest (info != nil).
func (c *collector) document(ctx context.Context, d ocispec.Descriptor) (children []ocispec.Descriptor, info *manifestInfo, err error) {
	b, err := c.fetch(ctx, d, "manifest")
	if err != nil {
		return nil, nil, err
	}
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, nil, fmt.Errorf("%s: parsing: %w", d.Digest, err)
	}
	mt := d.MediaType
	if probe.MediaType != "" && probe.MediaType != mt {
		return nil, nil, fmt.Errorf("%s: descriptor media type %q, content says %q", d.Digest, mt, probe.MediaType)
	}
	switch {
	case oci.IsIndex(mt):
		var idx ocispec.Index
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, nil, fmt.Errorf("%s: parsing %s: %w", d.Digest, mt, err)
		}
		return idx.Manifests, nil, nil
	case oci.IsManifest(mt):
		var m ocispec.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, nil, fmt.Errorf("%s: parsing %s: %w", d.Digest, mt, err)
		}
		return nil, summarize(d, m), nil
	}
	return nil, nil, fmt.Errorf("%s: media type %q is not an image manifest or index", d.Digest, mt)
}

// summarize keeps of the manifest m (at d) what an Entry needs.
func summarize(d ocispec.Descriptor, m ocispec.Manifest) *manifestInfo {
	info := &manifestInfo{
		mediaType: d.MediaType,
		config:    ocispec.Descriptor{MediaType: m.Config.MediaType, Digest: m.Config.Digest, Size: m.Config.Size},
		size:      DownloadSize(d, m),
	}
	switch {
	case m.Config.MediaType == "":
		info.err = fmt.Errorf("manifest %s is malformed: its config has no media type", d.Digest)
	case m.ArtifactType != "":
		info.notImage = fmt.Sprintf("artifact manifest (artifactType %q)", m.ArtifactType)
	case !oci.IsImageConfig(m.Config.MediaType):
		info.notImage = fmt.Sprintf("config media type %q is not an image config", m.Config.MediaType)
	default:
		info.format, info.err = layerFormat(d.Digest, m.Layers)
	}
	return info
}

// configPlatform reads the platform of an image from its config.
func (c *collector) configPlatform(ctx context.Context, m ocispec.Descriptor, cfg ocispec.Descriptor) (*ocispec.Platform, error) {
	if p, ok := c.configs[cfg.Digest]; ok {
		return p, nil
	}
	b, err := c.fetch(ctx, cfg, "config")
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
