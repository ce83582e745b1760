package oci

// AnnotationZstd marks an index entry whose layers are zstd (plain or
// chunked), with the value "true"; containers/image based clients prefer
// such entries for their platform, other clients take the first entry.
const AnnotationZstd = "io.github.containers.compression.zstd"

// zstd:chunked layer annotations, as containers/storage writes and reads them.
const (
	// AnnotationZstdChunkedChecksum is the digest of the compressed TOC; a
	// zstd layer carrying it is zstd:chunked.
	AnnotationZstdChunkedChecksum = "io.github.containers.zstd-chunked.manifest-checksum"
	// AnnotationZstdChunkedPosition is the TOC's
	// <offset>:<length>:<uncompressed length>:<type>.
	AnnotationZstdChunkedPosition = "io.github.containers.zstd-chunked.manifest-position"
	// AnnotationZstdChunkedTarSplitPosition is the tar-split data's
	// <offset>:<length>:<uncompressed length>.
	AnnotationZstdChunkedTarSplitPosition = "io.github.containers.zstd-chunked.tarsplit-position"
)

// AnnotationDockerReferenceType marks buildkit's attestation manifests
// ("attestation-manifest") inside an index.
const AnnotationDockerReferenceType = "vnd.docker.reference.type"
