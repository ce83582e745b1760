// Package oci is the OCI/registry vocabulary mcbuild speaks, defined once.
// So far: target platforms (platform.go).
//
// Every other package names these through oci instead of spelling them
// again, so that the code that writes a value and the code that checks it
// cannot drift apart.
package oci
