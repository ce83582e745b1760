package zstdchunked

import (
	"io"

	"go.podman.io/storage/pkg/chunked/compressor"
)

// NewUpstreamWriter is the reference encoder, containers/storage's
// compressor.ZstdCompressor (one core), with NewWriter's signature.
// NewWriter's output is byte for byte the same; this stays selectable to
// compare against.
func NewUpstreamWriter(dest io.Writer, metadata map[string]string, level int) (io.WriteCloser, error) {
	return compressor.ZstdCompressor(dest, metadata, &level)
}
