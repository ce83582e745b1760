// Package oci is the OCI/registry vocabulary mcbuild speaks, defined once:
// the media types it writes and accepts (mediatype.go), the annotation keys
// it reads and writes (annotation.go), target platforms (platform.go) and the
// bounded read of an untrusted registry document (fetch.go).
//
// Every other package names these through oci instead of spelling a string
// again, so a media type or an annotation key cannot drift between the code
// that writes it and the code that checks it.
package oci
