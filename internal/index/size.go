package index

import (
	"context"
	"encoding/json"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/mcbuild/mcbuild/internal/oci"
)

// ImageSize is what a client downloads for the manifest desc: the manifest,
// its config and every (compressed) layer.
func ImageSize(ctx context.Context, fetcher content.Fetcher, desc ocispec.Descriptor) (int64, error) {
	raw, err := oci.FetchBounded(ctx, fetcher, desc, oci.MaxDocumentBytes, "manifest")
	if err != nil {
		return 0, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return 0, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	return DownloadSize(desc, m), nil
}

// DownloadSize is ImageSize of a manifest already read: desc's size, its
// config's and every layer's.
func DownloadSize(desc ocispec.Descriptor, m ocispec.Manifest) int64 {
	total := desc.Size + m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	return total
}
