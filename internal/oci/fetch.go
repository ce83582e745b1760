package oci

import (
	"context"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// MaxDocumentBytes bounds every document mcbuild reads from a registry: an
// index, a manifest, a config, a subjects document. They are untrusted input
// and real ones are kilobytes; a larger declared size is refused before
// anything is fetched.
const MaxDocumentBytes = 4 << 20

// SizeError refuses a document whose declared size is outside 1..Limit
// bytes (an empty document is never valid JSON).
type SizeError struct {
	What  string // the document, e.g. "manifest sha256:…"
	Size  int64
	Limit int64
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("%s: size %d is outside 1..%d bytes", e.What, e.Size, e.Limit)
}

// CheckSize returns a *SizeError unless 0 < size <= limit; what names the
// document in the error.
func CheckSize(what string, size, limit int64) error {
	if size <= 0 || size > limit {
		return &SizeError{What: what, Size: size, Limit: limit}
	}
	return nil
}

// FetchBounded fetches desc after checking its declared size against limit
// (CheckSize), then its digest's syntax; content.FetchAll then verifies the
// bytes against the descriptor's size and digest, so a registry can neither
// send more nor substitute content. what ("manifest", "config", ...) names
// the document in errors, followed by its digest.
func FetchBounded(ctx context.Context, fetcher content.Fetcher, desc ocispec.Descriptor, limit int64, what string) ([]byte, error) {
	if err := CheckSize(what+" "+desc.Digest.String(), desc.Size, limit); err != nil {
		return nil, err
	}
	if err := desc.Digest.Validate(); err != nil {
		// %.80q: the digest is untrusted and may be long.
		return nil, fmt.Errorf("%s: invalid digest %.80q: %w", what, desc.Digest, err)
	}
	b, err := content.FetchAll(ctx, fetcher, desc)
	if err != nil {
		return nil, fmt.Errorf("fetching %s %s: %w", what, desc.Digest, err)
	}
	return b, nil
}
