// Package subjects builds, pushes, finds, reads and verifies mcbuild's
// subjects artifact: an OCI artifact attached (by `subject`) to a published
// image index that lists the index and every manifest it holds, so that
// provenance tools (Tekton Chains) and policy checks can see every digest a
// build produced. docs/subjects.md in the mcbuild repository describes the
// format for users; this comment is the summary.
//
// # Format
//
// The artifact is an OCI image manifest with artifactType ArtifactType
// ("application/vnd.mcbuild.subjects.v1+json"), the OCI empty config, a
// subject naming the index, no annotations, and exactly one layer of media
// type ArtifactType whose content is a Document in JSON:
//
//	{"subjects": [
//	  {"name": "quay.io/ns/app", "digest": {"sha256": "<index>"},
//	   "mediaType": "application/vnd.oci.image.index.v1+json"},
//	  {"name": "quay.io/ns/app", "digest": {"sha256": "<manifest>"},
//	   "mediaType": "application/vnd.oci.image.manifest.v1+json",
//	   "annotations": {"platform": "linux/amd64", "compression": "gzip"}},
//	  ...
//	]}
//
// Each entry is an in-toto v1 ResourceDescriptor (Subject); the index comes
// first, then the manifests in the index's order. The same index and
// manifests in the same repository always give the same artifact digest. Registries that refuse OCI 1.1 manifests
// get the OCI 1.0 fallback form instead (PushOrFallback, FallbackTag).
//
// # Use
//
// Writing: New builds the Document, Push or PushOrFallback pushes it to any
// oras-go Target (a remote.Repository for a registry). Reading: FindAll
// looks up every artifact attached to the index (referrers API, referrers
// tag, then FallbackTag) and Find the last one, ResolveArtifacts and
// ResolveArtifact do so from a reference, Fetch reads and validates one,
// and Verify checks it against the registry and the repository it is read
// from (every entry must name it) and returns every Mismatch. Everything
// read is untrusted: each document is bounded by MaxSize and checked
// against its digest, and referrers listings and index walks are bounded
// as a whole (the limits of internal/oci's Walk, named in their errors).
//
// # Stability
//
// The format carries its version in its media type (v1), and readers must
// ignore fields they do not know (docs/subjects.md). The Go API has no
// compatibility promise yet (mcbuild has no tagged release).
package subjects
