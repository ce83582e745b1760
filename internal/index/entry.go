// Package index assembles the gzip-first OCI image index mcbuild publishes,
// and merges the per-platform results of separate builds into one.
package index

import (
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mcbuild/mcbuild/internal/formats"
)

// Entry is one published image manifest: its descriptor (with Platform set)
// and the compression format of its layers.
type Entry struct {
	Descriptor ocispec.Descriptor
	Format     formats.Format
	// DownloadSize is what a client downloads for it (DownloadSize), when
	// known: Collect sets it from the manifest it read; 0 otherwise.
	DownloadSize int64
}
