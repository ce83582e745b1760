package subjects

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/oci"
)

// Kind classifies a Mismatch.
type Kind string

const (
	// KindSubject: the document's first entry is not the artifact's subject.
	KindSubject Kind = "subject"
	// KindMissing: a manifest or index is not in the registry.
	KindMissing Kind = "missing"
	// KindNotInSubjects: the index lists a manifest the document does not.
	KindNotInSubjects Kind = "not-in-subjects"
	// KindNotInIndex: the document lists a digest the index does not.
	KindNotInIndex Kind = "not-in-index"
	// KindDiffers: an entry's media type, platform, compression or name does
	// not match the index.
	KindDiffers Kind = "differs"
	// KindDuplicate: the document lists a digest more than once.
	KindDuplicate Kind = "duplicate"
	// KindRepository: an entry names another repository than the one
	// verified.
	KindRepository Kind = "repository"
)

// Mismatch is one difference between a subjects artifact and the registry.
type Mismatch struct {
	Kind     Kind
	Digest   digest.Digest
	Platform string // os/arch[/variant] when known
	Detail   string // for KindSubject and KindDiffers
}

// String describes the mismatch for humans.
func (m Mismatch) String() string {
	d := string(m.Digest)
	if m.Platform != "" {
		d += " (" + m.Platform + ")"
	}
	switch m.Kind {
	case KindMissing:
		return "missing in registry: " + d
	case KindNotInSubjects:
		return "listed in the index but not in the subjects: " + d
	case KindNotInIndex:
		return "in the subjects but not in the index: " + d
	case KindDuplicate:
		return "listed more than once in the subjects: " + d
	case KindSubject:
		return "first subject is not the artifact's subject (the index): " + m.Detail
	case KindRepository:
		return "names another repository: " + d + ": " + m.Detail
	default:
		return d + ": " + m.Detail
	}
}

// Verify checks the subjects artifact artifactDesc, read from target, the
// repository repo ("host[:port]/path"; a tag or digest on it is dropped, as
// New drops it), against the registry:
//   - every entry names repo: the document is only this repository's
//     claim about its own digests, so an artifact whose entries name
//     another repository (forged to lend this index to another name, or
//     copied here from elsewhere) does not verify here (KindRepository);
//   - the document's first entry is the artifact's subject (the index), and
//     the index exists (an artifact in the OCI 1.0 fallback form has no
//     subject: its first entry is taken as the index);
//   - the entries are exactly the index plus every manifest it lists (index
//     children that are indexes are listed too, and their children, one
//     level), with matching mediaType and, where the entry has them,
//     platform and compression annotations (compression is checked against
//     the index's zstd annotation: zstd and zstd:chunked look the same
//     there);
//   - every manifest the index lists exists in the registry.
//
// Reading the index is bounded as a walk is (oci.Walk): each child index is
// read once however often it is listed, and the documents, bytes and
// descriptors read are capped (oci.MaxWalkDocuments, oci.MaxWalkBytes,
// oci.MaxWalkDescriptors); going over one is an error naming it.
//
// An error is returned when the artifact cannot be read, is malformed or
// its index goes over a limit; an empty slice means it matches.
func Verify(ctx context.Context, target content.ReadOnlyStorage, repo string, artifactDesc ocispec.Descriptor) ([]Mismatch, error) {
	doc, m, err := Fetch(ctx, target, artifactDesc)
	if err != nil {
		return nil, err
	}
	subj, err := subjectOf(ctx, target, doc, m)
	if err != nil {
		return nil, err
	}
	out := otherRepository(doc, repoName(repo))
	first := doc.Subjects[0]
	if first.DigestOf() != subj.Digest {
		out = append(out, Mismatch{Kind: KindSubject, Digest: first.DigestOf(),
			Detail: fmt.Sprintf("the first entry is %s, the subject is %s", first.DigestOf(), subj.Digest)})
	}
	ok, err := target.Exists(ctx, subj)
	if err != nil {
		return nil, fmt.Errorf("checking index %s: %w", subj.Digest, err)
	}
	if !ok {
		return append(out, Mismatch{Kind: KindMissing, Digest: subj.Digest}), nil
	}
	want, err := wanted(ctx, target, subj)
	if err != nil {
		return nil, err
	}
	listed, dups := byDigest(doc)
	out = append(out, dups...)
	found, inIndex, err := againstIndex(ctx, target, want, listed, first.Name)
	if err != nil {
		return nil, err
	}
	out = append(out, found...)
	for _, s := range doc.Subjects {
		if d := s.DigestOf(); !inIndex[d] {
			inIndex[d] = true // report once
			out = append(out, Mismatch{Kind: KindNotInIndex, Digest: d, Platform: s.Annotations[AnnotationPlatform]})
		}
	}
	return out, nil
}

// againstIndex compares what the index lists (want, the index first) with
// the entries listed by digest: each must be listed, alike, and present.
// inIndex is want's digests.
func againstIndex(ctx context.Context, target content.ReadOnlyStorage, want []ocispec.Descriptor, listed map[digest.Digest]Subject, name string) ([]Mismatch, map[digest.Digest]bool, error) {
	var out []Mismatch
	inIndex := map[digest.Digest]bool{}
	for i, w := range want {
		if inIndex[w.Digest] {
			continue // the same manifest under two indexes
		}
		inIndex[w.Digest] = true
		plat := ""
		if w.Platform != nil {
			plat = oci.PlatformString(*w.Platform)
		}
		if i > 0 {
			ok, err := target.Exists(ctx, w)
			if err != nil {
				return nil, nil, fmt.Errorf("checking %s: %w", w.Digest, err)
			}
			if !ok {
				out = append(out, Mismatch{Kind: KindMissing, Digest: w.Digest, Platform: plat})
			}
		}
		s, ok := listed[w.Digest]
		if !ok {
			out = append(out, Mismatch{Kind: KindNotInSubjects, Digest: w.Digest, Platform: plat})
			continue
		}
		for _, detail := range compare(s, w, name) {
			out = append(out, Mismatch{Kind: KindDiffers, Digest: w.Digest, Platform: plat, Detail: detail})
		}
	}
	return out, inIndex, nil
}

// OtherRepository lists (by position) the entries of doc that name another
// repository than repo (normalized as New does): not this repository's
// digests, whatever the document claims.
func OtherRepository(doc Document, repo string) []int {
	var out []int
	repo = repoName(repo)
	for i, s := range doc.Subjects {
		if s.Name != repo {
			out = append(out, i)
		}
	}
	return out
}

// otherRepository is a KindRepository mismatch per entry naming another
// repository than repo.
func otherRepository(doc Document, repo string) []Mismatch {
	var out []Mismatch
	for _, i := range OtherRepository(doc, repo) {
		s := doc.Subjects[i]
		out = append(out, Mismatch{Kind: KindRepository, Digest: s.DigestOf(), Platform: s.Annotations[AnnotationPlatform],
			Detail: fmt.Sprintf("the entry names %q, verified in %q", truncate(s.Name, 100), repo)})
	}
	return out
}

// wanted lists what the subjects must name: the index, its children and,
// for a child that is an index itself, its children (one level, as
// mcbuild's index merge flattens). Each child index is read and expanded
// once, however often it is listed; the reads and the descriptors listed
// are one walk's budget (oci.Walk).
func wanted(ctx context.Context, target content.ReadOnlyStorage, subj ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	want := []ocispec.Descriptor{subj}
	if !oci.IsIndex(subj.MediaType) {
		return want, nil
	}
	var budget oci.Walk
	children, err := fetchIndex(ctx, target, subj, &budget)
	if err != nil {
		return nil, err
	}
	read := map[digest.Digest]bool{}
	for _, c := range children {
		want = append(want, c)
		if !oci.IsIndex(c.MediaType) || read[c.Digest] {
			continue
		}
		read[c.Digest] = true
		ok, err := target.Exists(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("checking index %s: %w", c.Digest, err)
		}
		if !ok {
			continue // reported as missing by Verify
		}
		grand, err := fetchIndex(ctx, target, c, &budget)
		if err != nil {
			return nil, err
		}
		want = append(want, grand...)
	}
	return want, nil
}

// byDigest is the document's entries by digest, and a mismatch for each
// entry listed again.
func byDigest(doc Document) (map[digest.Digest]Subject, []Mismatch) {
	listed := map[digest.Digest]Subject{}
	var dups []Mismatch
	for _, s := range doc.Subjects {
		d := s.DigestOf()
		if _, dup := listed[d]; dup {
			dups = append(dups, Mismatch{Kind: KindDuplicate, Digest: d, Platform: s.Annotations[AnnotationPlatform]})
			continue
		}
		listed[d] = s
	}
	return listed, dups
}

// compare lists how entry s differs from the index's descriptor w.
func compare(s Subject, w ocispec.Descriptor, name string) []string {
	var diffs []string
	if s.Name != name {
		diffs = append(diffs, fmt.Sprintf("name is %q, the first entry's is %q", truncate(s.Name, 100), truncate(name, 100)))
	}
	if s.MediaType != "" && w.MediaType != "" && s.MediaType != w.MediaType {
		diffs = append(diffs, fmt.Sprintf("mediaType is %s in the subjects but %s in the index", s.MediaType, w.MediaType))
	}
	if p, ok := s.Annotations[AnnotationPlatform]; ok {
		got := "<none>"
		if w.Platform != nil {
			got = oci.PlatformString(*w.Platform)
		}
		// The index's platform is as written; the document's is parsed and
		// normalized (aliases, implied variants) as a --platforms entry is.
		sp, err := oci.ParsePlatform(p)
		if w.Platform == nil || err != nil || !oci.SamePlatform(sp, *w.Platform) {
			diffs = append(diffs, fmt.Sprintf("platform is %s in the subjects but %s in the index", p, got))
		}
	}
	if c, ok := s.Annotations[AnnotationCompression]; ok {
		zstdInIndex := w.Annotations[oci.AnnotationZstd] == "true"
		if formats.Format(c).IsZstd() != zstdInIndex {
			idx := "gzip (no zstd annotation)"
			if zstdInIndex {
				idx = "zstd (" + oci.AnnotationZstd + ")"
			}
			diffs = append(diffs, fmt.Sprintf("compression is %s in the subjects but %s in the index", c, idx))
		}
	}
	return diffs
}

// fetchIndex fetches (bounded by budget, verified) an index and returns its
// children, charged to budget.
func fetchIndex(ctx context.Context, f content.Fetcher, desc ocispec.Descriptor, budget *oci.Walk) ([]ocispec.Descriptor, error) {
	raw, err := budget.Fetch(ctx, f, desc, "index")
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("index %s: invalid JSON: %w", desc.Digest, err)
	}
	if err := budget.Visit(ctx, "index "+desc.Digest.String(), len(idx.Manifests)); err != nil {
		return nil, err
	}
	for _, c := range idx.Manifests {
		if err := c.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("index %s: child with invalid digest: %w", desc.Digest, err)
		}
	}
	return idx.Manifests, nil
}
