// Package release finishes a publish: given manifests already pushed by
// digest, it pushes the gzip-first index, the subjects artifact, moves the
// tag and writes the Tekton results, in that order, so that a failure at any
// step leaves the user's tag where it was and no result written.
package release

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry"

	"github.com/mcbuild/mcbuild/pkg/imageref"
	"github.com/mcbuild/mcbuild/pkg/index"
	"github.com/mcbuild/mcbuild/pkg/platforms"
	"github.com/mcbuild/mcbuild/pkg/results"
	"github.com/mcbuild/mcbuild/pkg/subjects"
)

// Options configure where results go.
type Options struct {
	ResultsDir    string // "" writes no results
	ResultsBudget int    // 0 means results.DefaultBudget
	Log           io.Writer
}

// Outcome is everything a release published.
type Outcome struct {
	Index    ocispec.Descriptor
	Entries  []index.Entry // in index order
	Subjects ocispec.Descriptor
	Results  results.Set
	Warnings []string
	Phases   map[string]time.Duration
}

// Target is where a release is published: a registry repository (oras
// remote.Repository) that can push manifests by digest and by tag.
type Target interface {
	oras.Target
	registry.ReferencePusher
}

// Finish publishes the index of entries to dest (whose tag is moved last but
// one; results are written last).
func Finish(ctx context.Context, repo Target, dest imageref.Ref, entries []index.Entry, opts Options) (Outcome, error) {
	out := Outcome{Phases: map[string]time.Duration{}}
	logf := func(format string, a ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, format+"\n", a...)
		}
	}
	start := time.Now()
	idx, err := index.Assemble(entries)
	if err != nil {
		return out, fmt.Errorf("assembling the index: %w", err)
	}
	raw, idxDesc, err := index.Marshal(idx)
	if err != nil {
		return out, err
	}
	ordered, err := inIndexOrder(idx, entries)
	if err != nil {
		return out, err
	}
	// Never publish an index that points at something missing.
	for _, e := range ordered {
		ok, err := repo.Exists(ctx, e.Descriptor)
		if err != nil {
			return out, fmt.Errorf("checking %s@%s before pushing the index: %w", dest.Repository, e.Descriptor.Digest, err)
		}
		if !ok {
			return out, fmt.Errorf("manifest %s@%s (%s %s) is not in the registry; refusing to push an index that points at it", dest.Repository, e.Descriptor.Digest, platforms.String(*e.Descriptor.Platform), e.Format)
		}
	}
	if err := repo.Push(ctx, idxDesc, bytes.NewReader(raw)); err != nil {
		return out, fmt.Errorf("pushing the index to %s@%s: %w", dest.Repository, idxDesc.Digest, err)
	}
	logf("pushed index %s@%s (%d manifests)", dest.Repository, idxDesc.Digest, len(ordered))
	out.Phases["index"] = time.Since(start)

	start = time.Now()
	doc := subjects.New(dest.Repository, idxDesc, ordered)
	subjDesc, err := subjects.Push(ctx, repo, doc, idxDesc)
	if err != nil {
		return out, fmt.Errorf("pushing the subjects artifact to %s: %w", dest.Repository, err)
	}
	logf("pushed subjects artifact %s@%s (%d entries)", dest.Repository, subjDesc.Digest, len(doc.Subjects))
	out.Phases["subjects"] = time.Since(start)

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
	// Checked before the tag moves: a budget failure must leave it in place.
	planned, err := results.Plan(set, opts.ResultsBudget)
	if err != nil {
		return out, fmt.Errorf("results for %s: %w", dest.Tagged(), err)
	}

	if err := repo.PushReference(ctx, idxDesc, bytes.NewReader(raw), dest.Tag); err != nil {
		return out, fmt.Errorf("tagging %s as %s: %w", idxDesc.Digest, dest.Tagged(), err)
	}
	logf("tagged %s", dest.TaggedWithDigest(idxDesc.Digest))

	if err := planned.Write(opts.ResultsDir); err != nil {
		return out, fmt.Errorf("writing results to %s: %w", opts.ResultsDir, err)
	}
	warnings := planned.Warnings
	out.Index, out.Entries, out.Subjects, out.Results, out.Warnings = idxDesc, ordered, subjDesc, set, warnings
	return out, nil
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
