// Package release finishes a publish: given manifests already pushed by
// digest, it pushes the gzip-first index, the subjects artifact, the SBOM
// referrers (each platform's SBOM on its manifests, the index SBOM on the
// index; Options.SBOM), verifies that everything the tag will point at is
// in the registry, stages the Tekton results (and the caller's files, such
// as the summary) in temporary files beside their targets, moves the tag
// and renames the staged files into place, in that order. The tag is the commit point: a
// failure at any step before it leaves the user's tag where it was and no
// result written, and after it only renames within a directory remain.
package release

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry"

	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/index"
	"github.com/mcbuild/mcbuild/internal/oci"
	mcregistry "github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/results"
	"github.com/mcbuild/mcbuild/pkg/subjects"
)

// Options configure where results go.
type Options struct {
	ResultsDir    string // "" writes no results
	ResultsBudget int    // 0 means results.DefaultBudget
	// Files, when set, returns more files to write with the results, made
	// from the complete Outcome before the tag moves; they are staged and
	// committed with the results.
	Files func(Outcome) ([]File, error)
	Log   io.Writer
	// Registry is what the repository's session was made from; its Retry
	// says, in messages, how often a failing request was tried (the
	// session's transport does the retrying, reads cut short included).
	Registry mcregistry.Options
	// SBOM, when set, attaches SBOMs: each platform's to every manifest of
	// the platform, and an index SBOM to the index, after the subjects
	// artifact and before the last look; nil attaches none.
	SBOM *SBOMs
}

// Outcome is everything a release published.
type Outcome struct {
	Index    ocispec.Descriptor
	Entries  []index.Entry // in index order
	Subjects ocispec.Descriptor
	// SBOMs are the SBOM referrers attached (none without Options.SBOM).
	SBOMs   Attached
	Results results.Set
	// Sizes is what a client downloads per manifest (manifest, config and
	// layers), learned while verifying, by manifest digest.
	Sizes    map[digest.Digest]int64
	Warnings []string
	Phases   Phases
}

// File is a file written with the results: staged before the tag moves,
// renamed into place after.
type File struct {
	Path string
	What string // names it in errors: "summary"
	Data []byte
}

// Phases are the wall times of a release's steps.
type Phases struct {
	Index    time.Duration // assembling, checking and pushing the index
	Subjects time.Duration // pushing the subjects artifact
	SBOM     time.Duration // making the index SBOM and attaching every SBOM
	Verify   time.Duration // the last look before the tag moves
}

// Target is where a release is published: a registry repository (oras
// remote.Repository) that can push manifests by digest and by tag.
type Target interface {
	oras.Target
	registry.ReferencePusher
}

// Finish publishes the index of entries to dest. The tag moves last but
// one, once the results and opts.Files are staged; renaming them into
// place is the last step.
func Finish(ctx context.Context, repo Target, dest imageref.Ref, entries []index.Entry, opts Options) (Outcome, error) {
	var out Outcome
	r := &releaser{repo: repo, dest: dest, opts: opts}
	start := time.Now()
	raw, idxDesc, ordered, err := r.pushIndex(ctx, entries)
	if err != nil {
		return out, err
	}
	out.Phases.Index = time.Since(start)

	start = time.Now()
	subjDesc, warnings, err := r.pushSubjects(ctx, idxDesc, ordered)
	if err != nil {
		return out, err
	}
	out.Phases.Subjects = time.Since(start)

	artifacts := []Artifact{{subjDesc, "the subjects artifact"}}
	var attached Attached
	if opts.SBOM != nil {
		start = time.Now()
		var sbomWarnings []string
		attached, sbomWarnings, err = r.attachSBOMs(ctx, *opts.SBOM, idxDesc, ordered)
		if err != nil {
			return out, err
		}
		warnings = append(warnings, sbomWarnings...)
		artifacts = append(artifacts, attached.artifacts()...)
		out.Phases.SBOM = time.Since(start)
	}

	// The last look before the tag moves: every blob and manifest the tag
	// will lead to must be in the registry.
	start = time.Now()
	sizes, err := Verify(ctx, repo, dest.Repository, idxDesc, ordered, artifacts, opts.Registry)
	if err != nil {
		return out, err
	}
	r.logf("verified index, %d manifests, their blobs and %d artifacts referring to them in %s", len(ordered), len(artifacts), dest.Repository)
	out.Phases.Verify = time.Since(start)

	set := resultSet(dest, idxDesc, ordered, subjDesc)
	if opts.SBOM != nil {
		set.SBOMBlobURL = dest.WithDigest(attached.IndexBlob.Digest)
	}
	// Checked before the tag moves: a budget failure must leave it in place.
	planned, err := results.Plan(set, opts.ResultsBudget)
	if err != nil {
		return out, fmt.Errorf("results for %s: %w", dest.Tagged(), err)
	}
	out.Index, out.Entries, out.Subjects, out.SBOMs, out.Results, out.Sizes = idxDesc, ordered, subjDesc, attached, set, sizes
	out.Warnings = append(warnings, planned.Warnings...)

	var staged results.Staged
	defer staged.Discard()
	if err := r.stage(&staged, planned, out); err != nil {
		return Outcome{}, fmt.Errorf("%w; the tag was not moved", err)
	}
	if err := repo.PushReference(ctx, idxDesc, bytes.NewReader(raw), dest.Tag); err != nil {
		return Outcome{}, opts.Registry.Explain(fmt.Sprintf("tagging %s as %s", idxDesc.Digest, dest.Tagged()), err)
	}
	r.logf("tagged %s", dest.TaggedWithDigest(idxDesc.Digest))
	if err := staged.Commit(); err != nil {
		return Outcome{}, fmt.Errorf("the tag %s moved, but %w", dest.TaggedWithDigest(idxDesc.Digest), err)
	}
	return out, nil
}

// stage writes the planned results and the caller's files (opts.Files, made
// from out) to temporary files beside their targets.
func (r *releaser) stage(st *results.Staged, planned results.Planned, out Outcome) error {
	if err := planned.Stage(st, r.opts.ResultsDir); err != nil {
		return fmt.Errorf("writing results to %s: %w", r.opts.ResultsDir, err)
	}
	if r.opts.Files == nil {
		return nil
	}
	files, err := r.opts.Files(out)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := st.File(f.Path, f.What, f.Data); err != nil {
			return err
		}
	}
	return nil
}

// releaser is one release in the making.
type releaser struct {
	repo Target
	dest imageref.Ref
	opts Options
}

func (r *releaser) logf(format string, a ...any) {
	if r.opts.Log != nil {
		fmt.Fprintf(r.opts.Log, format+"\n", a...)
	}
}

// pushIndex assembles the gzip-first index of entries and pushes it by
// digest, once every manifest it lists is confirmed present. It returns the
// index, its descriptor and the entries in index order.
func (r *releaser) pushIndex(ctx context.Context, entries []index.Entry) ([]byte, ocispec.Descriptor, []index.Entry, error) {
	idx, err := index.Assemble(entries)
	if err != nil {
		return nil, ocispec.Descriptor{}, nil, fmt.Errorf("assembling the index: %w", err)
	}
	raw, idxDesc, err := index.Marshal(idx)
	if err != nil {
		return nil, ocispec.Descriptor{}, nil, err
	}
	ordered, err := inIndexOrder(idx, entries)
	if err != nil {
		return nil, ocispec.Descriptor{}, nil, err
	}
	// Never publish an index that points at something missing.
	for _, e := range ordered {
		ok, err := r.repo.Exists(ctx, e.Descriptor)
		if err != nil {
			return nil, ocispec.Descriptor{}, nil, r.opts.Registry.Explain(fmt.Sprintf("checking %s@%s before pushing the index", r.dest.Repository, e.Descriptor.Digest), err)
		}
		if !ok {
			return nil, ocispec.Descriptor{}, nil, fmt.Errorf("manifest %s@%s (%s %s) is not in the registry; refusing to push an index that points at it", r.dest.Repository, e.Descriptor.Digest, oci.PlatformString(*e.Descriptor.Platform), e.Format)
		}
	}
	if err := r.repo.Push(ctx, idxDesc, bytes.NewReader(raw)); err != nil {
		return nil, ocispec.Descriptor{}, nil, r.opts.Registry.Explain(fmt.Sprintf("pushing the index to %s@%s", r.dest.Repository, idxDesc.Digest), err)
	}
	r.logf("pushed index %s@%s (%d manifests)", r.dest.Repository, idxDesc.Digest, len(ordered))
	return raw, idxDesc, ordered, nil
}

// pushSubjects pushes the subjects artifact of the index and its manifests,
// with a warning when the registry only took the OCI 1.0 fallback form.
func (r *releaser) pushSubjects(ctx context.Context, idxDesc ocispec.Descriptor, ordered []index.Entry) (ocispec.Descriptor, []string, error) {
	manifests := make([]subjects.Manifest, len(ordered))
	for i, e := range ordered {
		manifests[i] = subjects.Manifest{Descriptor: e.Descriptor, Compression: string(e.Format)}
	}
	doc := subjects.New(r.dest.Repository, idxDesc, manifests)
	pushed, err := subjects.PushOrFallback(ctx, r.repo, doc, idxDesc)
	if err != nil {
		return ocispec.Descriptor{}, nil, r.opts.Registry.Explain(fmt.Sprintf("pushing the subjects artifact to %s", r.dest.Repository), err)
	}
	var warnings []string
	if pushed.Fallback {
		warnings = append(warnings, fmt.Sprintf("the registry refused the subjects artifact as an OCI 1.1 artifact (%s: %v); pushed it in the OCI 1.0 fallback form, tagged %s:%s (docs/subjects.md, \"Registries that refuse OCI 1.1 artifacts\")",
			mcregistry.Reason(pushed.Refusal), mcregistry.Redact(pushed.Refusal.Error()), r.dest.Repository, subjects.FallbackTag(idxDesc.Digest)))
	}
	r.logf("pushed subjects artifact %s@%s (%d entries)", r.dest.Repository, pushed.Desc.Digest, len(doc.Subjects))
	return pushed.Desc, warnings, nil
}

// resultSet is every result of the release.
func resultSet(dest imageref.Ref, idxDesc ocispec.Descriptor, ordered []index.Entry, subjDesc ocispec.Descriptor) results.Set {
	set := results.Set{
		ImageURL:    dest.Tagged(),
		ImageDigest: idxDesc.Digest.String(),
		ImageRef:    dest.TaggedWithDigest(idxDesc.Digest),
		SubjectsRef: dest.WithDigest(subjDesc.Digest),
		Images:      []string{dest.WithDigest(idxDesc.Digest)},
	}
	for _, e := range ordered {
		set.Images = append(set.Images, dest.WithDigest(e.Descriptor.Digest))
	}
	return set
}

// inIndexOrder returns entries in the order Assemble listed them.
func inIndexOrder(idx ocispec.Index, entries []index.Entry) ([]index.Entry, error) {
	byDigest := make(map[string]index.Entry, len(entries))
	for _, e := range entries {
		byDigest[e.Descriptor.Digest.String()] = e
	}
	ordered := make([]index.Entry, 0, len(idx.Manifests))
	for _, d := range idx.Manifests {
		e, ok := byDigest[d.Digest.String()]
		if !ok {
			return nil, fmt.Errorf("index lists %s, which is not among the published manifests", d.Digest)
		}
		e.Descriptor = d
		ordered = append(ordered, e)
	}
	return ordered, nil
}

// verifyConcurrency bounds the HEAD and GET requests Verify runs at once.
const verifyConcurrency = 8

// Artifact is an artifact Verify checks with its blobs: the subjects
// artifact, an SBOM referrer.
type Artifact struct {
	Desc ocispec.Descriptor
	What string // names it in errors: "the subjects artifact"
}

// Verify checks, with cheap HEAD requests (and a GET of each manifest, to
// learn its blobs), that the index, every manifest in entries, each
// manifest's config and layers, and every artifact with its blobs are all
// in repo. The first thing missing fails it with a message naming
// the thing and what it belongs to; Finish calls it before the tag moves.
// A manifest read back proves itself present; only the index and blobs get a
// HEAD. It returns, per manifest, the bytes a client downloads for it.
// Nothing is retried here: repo's transport (a [mcregistry.Session]'s)
// retries every request, a read whose body was cut short included; ro
// only words the errors.
func Verify(ctx context.Context, repo content.ReadOnlyStorage, repoName string, idx ocispec.Descriptor, entries []index.Entry, artifacts []Artifact, ro mcregistry.Options) (map[digest.Digest]int64, error) {
	type check struct {
		desc ocispec.Descriptor
		what string
	}
	var (
		mu     sync.Mutex
		seen   = map[digest.Digest]bool{}
		checks []check
		sizes  = map[digest.Digest]int64{}
	)
	add := func(d ocispec.Descriptor, what string) {
		mu.Lock()
		defer mu.Unlock()
		if !seen[d.Digest] {
			seen[d.Digest] = true
			checks = append(checks, check{d, what})
		}
	}
	add(idx, "the index")
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(verifyConcurrency)
	type manifestRef struct {
		desc ocispec.Descriptor
		what string
	}
	var refs []manifestRef
	for _, a := range artifacts {
		refs = append(refs, manifestRef{a.Desc, a.What})
	}
	for _, e := range entries {
		refs = append(refs, manifestRef{e.Descriptor, fmt.Sprintf("the %s %s manifest %s", oci.PlatformString(*e.Descriptor.Platform), e.Format, e.Descriptor.Digest)})
	}
	for _, r := range refs {
		mu.Lock()
		seen[r.desc.Digest] = true // read back below: no HEAD needed
		mu.Unlock()
		g.Go(func() error {
			if err := oci.CheckSize(r.what, r.desc.Size, oci.MaxDocumentBytes); err != nil {
				return fmt.Errorf("verifying %s: %w", repoName, err)
			}
			raw, err := content.FetchAll(gctx, repo, r.desc)
			if err != nil {
				return ro.Explain(fmt.Sprintf("verifying %s before tagging: reading %s", repoName, r.what), err)
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(raw, &m); err != nil {
				return fmt.Errorf("verifying %s before tagging: %s is not a manifest: %w", repoName, r.what, err)
			}
			add(m.Config, "the config of "+r.what)
			for i, l := range m.Layers {
				add(l, fmt.Sprintf("layer %d of %s", i, r.what))
			}
			mu.Lock()
			sizes[r.desc.Digest] = index.DownloadSize(r.desc, m)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(verifyConcurrency)
	for _, c := range checks {
		g.Go(func() error {
			ok, err := repo.Exists(gctx, c.desc)
			if err != nil {
				return ro.Explain(fmt.Sprintf("verifying %s before tagging: checking %s (%s)", repoName, c.desc.Digest, c.what), err)
			}
			if !ok {
				return fmt.Errorf("verifying %s before tagging: %s (%s) is missing from the registry; the tag was not moved", repoName, c.desc.Digest, c.what)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return sizes, nil
}
