package oci

import (
	"context"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// Limits of one walk over untrusted registry content: `index --from`'s
// merge, `inspect`, `subjects verify`. Each document is bounded by
// MaxDocumentBytes; these bound what a walk does in total, however the
// documents list each other, so that a few small documents cannot make it
// run or grow without end. Real walks stay far below them: an index of 20
// platforms in 3 formats is about 60 descriptors and 200 KiB.
const (
	// MaxIndexDepth is the number of index levels a walk follows, the root
	// index included: root index -> nested index -> ... ; an index at a
	// deeper level is an error.
	MaxIndexDepth = 4
	// MaxWalkDocuments caps the distinct documents (indexes, manifests,
	// configs) one walk fetches.
	MaxWalkDocuments = 1000
	// MaxWalkBytes caps the bytes of all the documents one walk fetches
	// (declared sizes, charged before each fetch).
	MaxWalkBytes = 64 << 20
	// MaxWalkDescriptors caps the descriptors one walk visits: every entry
	// of every index it reads, counted each time it is listed.
	MaxWalkDescriptors = 10000
	// MaxReferrersPages caps the pages of one referrers listing.
	MaxReferrersPages = 100
	// MaxReferrers caps the referrers one listing accepts (after the
	// artifactType filter).
	MaxReferrers = 10000
)

// LimitError is a walk over registry content that went over one of the
// limits above: Limit names it ("MaxWalkBytes"), What the document at
// which it was hit.
type LimitError struct {
	What   string // e.g. "manifest sha256:…"
	Limit  string // the constant's name
	Detail string // what was over the limit, with the limit's value
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s: %s (limit %s)", e.What, e.Detail, e.Limit)
}

// Walk is the budget of one walk: it counts the documents, bytes and
// descriptors a walk reads against MaxWalkDocuments, MaxWalkBytes and
// MaxWalkDescriptors, and checks the context as it goes, so that a walk of
// cached documents stops on --timeout or a signal too. The zero value is
// an unused budget. Not safe for concurrent use.
type Walk struct {
	docs        int
	bytes       int64
	descriptors int
}

// Fetch is FetchBounded (what names the document, size bounded by
// MaxDocumentBytes, verified) within the walk's budget: the document and
// its declared size are charged before anything is fetched.
func (w *Walk) Fetch(ctx context.Context, fetcher content.Fetcher, desc ocispec.Descriptor, what string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name := what + " " + desc.Digest.String()
	if err := CheckSize(name, desc.Size, MaxDocumentBytes); err != nil {
		return nil, err
	}
	if w.docs >= MaxWalkDocuments {
		return nil, &LimitError{What: name, Limit: "MaxWalkDocuments",
			Detail: fmt.Sprintf("more than %d documents in one walk", MaxWalkDocuments)}
	}
	if w.bytes+desc.Size > MaxWalkBytes {
		return nil, &LimitError{What: name, Limit: "MaxWalkBytes",
			Detail: fmt.Sprintf("more than %d MiB of documents in one walk (%d bytes read before this one of %d)", MaxWalkBytes>>20, w.bytes, desc.Size)}
	}
	w.docs++
	w.bytes += desc.Size
	return FetchBounded(ctx, fetcher, desc, MaxDocumentBytes, what)
}

// Visit charges n descriptors (the entries of an index about to be walked,
// say) that what lists, and checks the context.
func (w *Walk) Visit(ctx context.Context, what string, n int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.descriptors+n > MaxWalkDescriptors {
		return &LimitError{What: what, Limit: "MaxWalkDescriptors",
			Detail: fmt.Sprintf("more than %d descriptors in one walk (%d visited before its %d)", MaxWalkDescriptors, w.descriptors, n)}
	}
	w.descriptors += n
	return nil
}

// Read is what the walk has fetched so far: documents and bytes.
func (w *Walk) Read() (docs int, bytes int64) { return w.docs, w.bytes }
