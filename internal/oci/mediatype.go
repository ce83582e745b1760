package oci

import ocispec "github.com/opencontainers/image-spec/specs-go/v1"

// OCI image-spec media types, re-exported from ocispec so that one import
// names every type mcbuild uses.
const (
	MediaTypeImageManifest  = ocispec.MediaTypeImageManifest
	MediaTypeImageIndex     = ocispec.MediaTypeImageIndex
	MediaTypeImageConfig    = ocispec.MediaTypeImageConfig
	MediaTypeEmptyJSON      = ocispec.MediaTypeEmptyJSON
	MediaTypeImageLayer     = ocispec.MediaTypeImageLayer
	MediaTypeImageLayerGzip = ocispec.MediaTypeImageLayerGzip
	MediaTypeImageLayerZstd = ocispec.MediaTypeImageLayerZstd

	// Non-distributable (foreign) layers: image-spec 1.1 deprecates them, and
	// ocispec's constants with them, but registries still serve such images.
	MediaTypeImageLayerNondistributableGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	MediaTypeImageLayerNondistributableZstd = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
)

// Docker image manifest v2 schema 2 media types: mcbuild publishes OCI only,
// but indexes it merges may list Docker images.
const (
	MediaTypeDockerManifest         = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig           = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayerGzip        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerForeignLayerGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// IsIndex reports whether mediaType is an index: an OCI image index or a
// Docker manifest list.
func IsIndex(mediaType string) bool {
	return mediaType == MediaTypeImageIndex || mediaType == MediaTypeDockerManifestList
}

// IsManifest reports whether mediaType is an image manifest: OCI or Docker
// schema 2.
func IsManifest(mediaType string) bool {
	return mediaType == MediaTypeImageManifest || mediaType == MediaTypeDockerManifest
}

// IsImageConfig reports whether mediaType is an image config: OCI or Docker.
func IsImageConfig(mediaType string) bool {
	return mediaType == MediaTypeImageConfig || mediaType == MediaTypeDockerConfig
}

// IsGzipLayer reports whether mediaType is a gzip-compressed layer, OCI or
// Docker; non-distributable (foreign) layers count.
func IsGzipLayer(mediaType string) bool {
	switch mediaType {
	case MediaTypeImageLayerGzip, MediaTypeImageLayerNondistributableGzip,
		MediaTypeDockerLayerGzip, MediaTypeDockerForeignLayerGzip:
		return true
	}
	return false
}

// IsZstdLayer reports whether mediaType is a zstd-compressed layer (plain or
// zstd:chunked: the media type does not tell them apart).
func IsZstdLayer(mediaType string) bool {
	return mediaType == MediaTypeImageLayerZstd || mediaType == MediaTypeImageLayerNondistributableZstd
}

// SBOM media types: an SBOM referrer's artifactType and the media type of
// its one layer (as `oras attach` and cosign use them).
const (
	MediaTypeSPDXJSON      = "application/spdx+json"
	MediaTypeCycloneDXJSON = "application/vnd.cyclonedx+json"
)

// IsSBOM reports whether artifactType is an SBOM's: SPDX or CycloneDX JSON.
func IsSBOM(artifactType string) bool {
	return artifactType == MediaTypeSPDXJSON || artifactType == MediaTypeCycloneDXJSON
}
