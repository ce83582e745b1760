package index

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/oci"
)

// Assemble builds the OCI image index listing every entry.
//
// Ordering: platforms appear in the order of their first entry; the entries
// of one platform are sorted by Format.Rank() (gzip first, because Docker and
// containerd take the first entry matching their platform), stably.
// Platforms are compared after normalization (linux/arm64 == linux/arm64/v8,
// see oci.NormalVariant); each descriptor keeps its platform as given.
//
// Annotations: every zstd and zstd:chunked entry carries
// oci.AnnotationZstd = "true"; gzip entries never carry it (it is
// removed if present). Other annotations are kept. The entries are not
// modified; the returned index holds copies.
//
// Errors: no entries; an entry without a platform (OS and architecture), with
// an unknown format, a malformed digest, a non-positive size or a media type
// that is not an image manifest; two entries of one platform and format; a
// zstd and a zstd:chunked entry for one platform (clients see the same
// annotation on both and cannot choose); one digest listed twice.
func Assemble(entries []Entry) (ocispec.Index, error) {
	if len(entries) == 0 {
		return ocispec.Index{}, errors.New("index: no entries to assemble")
	}
	type item struct {
		entry    Entry
		platform int // order of first appearance of its platform
	}
	items := make([]item, 0, len(entries))
	platformOrder := map[string]int{}
	byKey := map[string]Entry{}
	byDigest := map[digest.Digest]Entry{}
	for i, e := range entries {
		if err := validateEntry(e); err != nil {
			return ocispec.Index{}, fmt.Errorf("index: entry %d (%s): %w", i, e.Descriptor.Digest, err)
		}
		pk := platformKey(e.Descriptor.Platform)
		key := pk + " " + string(e.Format)
		if prev, ok := byKey[key]; ok {
			return ocispec.Index{}, fmt.Errorf("index: platform %s has two %s entries: %s and %s", pk, e.Format, prev.Descriptor.Digest, e.Descriptor.Digest)
		}
		byKey[key] = e
		other := formats.Zstd
		if e.Format == formats.Zstd {
			other = formats.ZstdChunked
		}
		if prev, ok := byKey[pk+" "+string(other)]; ok && e.Format.IsZstd() {
			return ocispec.Index{}, fmt.Errorf("index: platform %s has both a zstd (%s) and a zstd:chunked (%s) entry: clients see one %s annotation for both and cannot tell them apart",
				pk, pick(e, prev, formats.Zstd), pick(e, prev, formats.ZstdChunked), oci.AnnotationZstd)
		}
		if prev, ok := byDigest[e.Descriptor.Digest]; ok {
			return ocispec.Index{}, fmt.Errorf("index: %s is listed twice (%s %s and %s %s)", e.Descriptor.Digest,
				platformKey(prev.Descriptor.Platform), prev.Format, pk, e.Format)
		}
		byDigest[e.Descriptor.Digest] = e
		p, ok := platformOrder[pk]
		if !ok {
			p = len(platformOrder)
			platformOrder[pk] = p
		}
		items = append(items, item{entry: e, platform: p})
	}
	sort.SliceStable(items, func(a, b int) bool {
		if items[a].platform != items[b].platform {
			return items[a].platform < items[b].platform
		}
		return items[a].entry.Format.Rank() < items[b].entry.Format.Rank()
	})
	manifests := make([]ocispec.Descriptor, len(items))
	for i, it := range items {
		manifests[i] = annotated(it.entry)
	}
	return ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: manifests,
	}, nil
}

func validateEntry(e Entry) error {
	d := e.Descriptor
	if !hasPlatform(d.Platform) {
		return errors.New("no platform (os and architecture are required)")
	}
	if !knownFormat(e.Format) {
		return fmt.Errorf("unknown compression format %q", e.Format)
	}
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("invalid digest: %w", err)
	}
	if d.Size <= 0 {
		return fmt.Errorf("invalid size %d", d.Size)
	}
	if !oci.IsManifest(d.MediaType) {
		return fmt.Errorf("media type %q is not an image manifest", d.MediaType)
	}
	return nil
}

func knownFormat(f formats.Format) bool {
	for _, k := range formats.Known {
		if f == k {
			return true
		}
	}
	return false
}

// annotated returns a copy of the entry's descriptor whose zstd annotation
// matches its format. The platform and annotations are copied, so the index
// does not alias the caller's entries.
func annotated(e Entry) ocispec.Descriptor {
	d := e.Descriptor
	if d.Platform != nil {
		p := *d.Platform
		p.OSFeatures = append([]string(nil), p.OSFeatures...)
		if len(p.OSFeatures) == 0 {
			p.OSFeatures = nil
		}
		d.Platform = &p
	}
	ann := maps.Clone(d.Annotations)
	if e.Format.IsZstd() {
		if ann == nil {
			ann = map[string]string{}
		}
		ann[oci.AnnotationZstd] = "true"
	} else {
		delete(ann, oci.AnnotationZstd)
	}
	if len(ann) == 0 {
		ann = nil
	}
	d.Annotations = ann
	return d
}

// Marshal returns the canonical bytes of idx (encoding/json, which writes
// struct fields in declaration order and map keys sorted, so equal indexes
// give equal bytes) and the descriptor of those bytes: media type (the
// index's own, or the OCI index type when it has none), digest and size,
// without platform or annotations.
func Marshal(idx ocispec.Index) ([]byte, ocispec.Descriptor, error) {
	b, err := json.Marshal(idx)
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("index: marshal: %w", err)
	}
	mt := idx.MediaType
	if mt == "" {
		mt = ocispec.MediaTypeImageIndex
	}
	return b, content.NewDescriptorFromBytes(mt, b), nil
}

// pick returns the digest of whichever of a and b has format f.
func pick(a, b Entry, f formats.Format) digest.Digest {
	if a.Format == f {
		return a.Descriptor.Digest
	}
	return b.Descriptor.Digest
}
