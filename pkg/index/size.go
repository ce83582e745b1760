package index

import (
	"context"
	"encoding/json"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// ImageSize is what a client downloads for the manifest desc: the manifest,
// its config and every (compressed) layer.
func ImageSize(ctx context.Context, fetcher content.Fetcher, desc ocispec.Descriptor) (int64, error) {
	if desc.Size > MaxDocumentBytes {
		return 0, fmt.Errorf("manifest %s: %d bytes is over the %d-byte limit", desc.Digest, desc.Size, MaxDocumentBytes)
	}
	raw, err := content.FetchAll(ctx, fetcher, desc)
	if err != nil {
		return 0, fmt.Errorf("fetching manifest %s: %w", desc.Digest, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return 0, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	total := desc.Size + m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	return total, nil
}
