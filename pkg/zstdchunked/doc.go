// Package zstdchunked writes zstd:chunked layers, the format of
// go.podman.io/storage/pkg/chunked, which containers/storage (Podman,
// CRI-O) can pull partially, using every core.
//
// # What it reads and writes
//
// NewWriter takes an uncompressed layer tar and writes a zstd:chunked blob:
//
//   - the tar itself as a sequence of independent zstd frames (each file's
//     run of tar headers, and each chunk of a file's payload, is a frame of
//     its own), so any zstd reader decompresses the blob to the exact input
//     tar and a zstd:chunked-aware reader can fetch single files or chunks;
//   - then, in zstd skippable frames that plain readers pass over, the
//     table of contents (TOC: JSON, zstd-compressed; see TOC and
//     FileMetadata), the tar-split data that rebuilds the tar's exact bytes,
//     and a 64-byte footer locating both.
//
// On Close it fills the metadata map it was given with the three layer
// annotations a manifest must carry for partial pulls: ManifestChecksumKey
// (digest of the compressed TOC), ManifestInfoKey (its position) and
// TarSplitInfoKey (the tar-split's position).
//
// The frames are compressed on a worker pool (WithWorkers, default
// GOMAXPROCS) and written in order. The output is byte for byte what
// storage's compressor.ZstdCompressor writes for the same tar and level
// (same chunk boundaries, same frames, same TOC, tar-split and footer, same
// annotations); only the time it takes differs. NewUpstreamWriter is that
// compressor, with NewWriter's signature, to compare against. The tests check
// the equality, and that storage's own reader accepts the output. One
// deliberate difference: sparse tar entries are refused (ErrSparse), where
// upstream writes a stream that does not decompress to its input.
//
// The package does not read zstd:chunked layers back (beyond the exported
// TOC types); containers/storage does that.
//
// # Stability
//
// The format is containers/storage's, pinned by the go.podman.io/storage
// version in go.mod (v1.64.0) and checked against it by the tests: should a
// storage release change its output, the tests fail and this package has to
// follow, since byte-for-byte equality with it is the point. The Go API (NewWriter, its options, the TOC
// types and annotation keys) is small and meant to stay, but mcbuild has no
// tagged release yet and makes no compatibility promise beyond that.
package zstdchunked
