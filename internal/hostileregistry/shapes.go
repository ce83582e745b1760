package hostileregistry

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The shapes of hostile content the tests serve, stored in r.

// JSON stores v marshaled as mediaType.
func (r *Registry) JSON(mediaType string, v any) ocispec.Descriptor {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only test values are marshaled
	}
	return r.Put(mediaType, b)
}

// Image stores a valid one-layer gzip image for platform ("os/arch"): its
// config, its layer and its manifest; seed makes it distinct. pad > 0 pads
// the manifest with an annotation of that many bytes (a document far
// larger than a real one, that is still an image). The returned descriptor
// carries the platform, as an index lists it.
func (r *Registry) Image(platform, seed string, pad int) ocispec.Descriptor {
	parts := strings.SplitN(platform+"//", "/", 4)
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1], Variant: parts[2]}
	config := r.JSON(ocispec.MediaTypeImageConfig, ocispec.Image{Platform: p, Author: seed,
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: nil}})
	layer := r.Put(ocispec.MediaTypeImageLayerGzip, []byte("layer "+seed))
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config,
		Layers:    []ocispec.Descriptor{layer},
	}
	if pad > 0 {
		m.Annotations = map[string]string{"org.example.pad": strings.Repeat("x", pad)}
	}
	d := r.JSON(ocispec.MediaTypeImageManifest, m)
	d.Platform = &p
	return d
}

// Index stores an OCI index listing children in order.
func (r *Registry) Index(children ...ocispec.Descriptor) ocispec.Descriptor {
	if children == nil {
		children = []ocispec.Descriptor{}
	}
	return r.JSON(ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: children,
	})
}

// Repeat is child n times.
func Repeat(child ocispec.Descriptor, n int) []ocispec.Descriptor {
	out := make([]ocispec.Descriptor, n)
	for i := range out {
		out[i] = child
	}
	return out
}

// Nested stores levels indexes around leaf, each listing the next level
// (the innermost: leaf) n times, and returns the outermost: levels+1
// documents that list n^levels paths to leaf.
func (r *Registry) Nested(leaf ocispec.Descriptor, levels, n int) ocispec.Descriptor {
	d := leaf
	for range levels {
		d = r.Index(Repeat(d, n)...)
	}
	return d
}

// Wide stores n distinct indexes, the i-th listing child each+i times, and
// an index listing them: n*each descriptors or more in n+1 documents.
func (r *Registry) Wide(child ocispec.Descriptor, n, each int) ocispec.Descriptor {
	var children []ocispec.Descriptor
	for i := range n {
		children = append(children, r.Index(Repeat(child, each+i)...))
	}
	return r.Index(children...)
}

// Platforms are distinct valid platforms, for Images.
var Platforms = []string{
	"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/386", "linux/ppc64le",
	"linux/s390x", "linux/riscv64", "linux/mips64le", "linux/loong64", "linux/ppc64", "linux/mips64",
	"windows/amd64", "windows/arm64", "freebsd/amd64", "freebsd/arm64", "darwin/amd64", "darwin/arm64",
	"netbsd/amd64", "openbsd/amd64", "illumos/amd64", "solaris/amd64", "aix/ppc64", "linux/mipsle",
}

// Images stores n (at most len(Platforms)) distinct images, one per
// platform of Platforms, each padded with pad bytes, so that an index may
// list them all.
func (r *Registry) Images(n, pad int) []ocispec.Descriptor {
	out := make([]ocispec.Descriptor, n)
	for i := range out {
		out[i] = r.Image(Platforms[i], fmt.Sprintf("images %d", i), pad)
	}
	return out
}
