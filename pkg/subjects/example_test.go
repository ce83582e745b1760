package subjects_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/pkg/subjects"
)

// pushJSON stores v in store as a blob of media type mt.
func pushJSON(ctx context.Context, store *memory.Store, mt string, v any) ocispec.Descriptor {
	b, err := json.Marshal(v)
	if err != nil {
		log.Fatal(err)
	}
	d := content.NewDescriptorFromBytes(mt, b)
	if err := store.Push(ctx, d, bytes.NewReader(b)); err != nil {
		log.Fatal(err)
	}
	return d
}

// Describe an index of two manifests (one platform, gzip and zstd:chunked),
// push the subjects artifact for it, find it again from the index, read it
// and check it against the store. An in-memory oras store stands in for the
// registry; with a registry, pass an oras-go remote.Repository. (index and
// formats are mcbuild's internal packages: outside its module, build the
// Document literal instead of calling New.)
func Example() {
	ctx := context.Background()
	store := memory.New()

	// The image: two manifests (their layers need not be stored here) and
	// the index listing them, as mcbuild publishes it.
	amd64 := &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	var entries []subjects.Manifest
	for _, v := range []struct {
		format    formats.Format
		layerType string
	}{{formats.Gzip, ocispec.MediaTypeImageLayerGzip}, {formats.ZstdChunked, ocispec.MediaTypeImageLayerZstd}} {
		m := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.DescriptorEmptyJSON,
			Layers:    []ocispec.Descriptor{content.NewDescriptorFromBytes(v.layerType, []byte(v.format))},
		}
		d := pushJSON(ctx, store, ocispec.MediaTypeImageManifest, m)
		d.Platform = amd64
		if v.format.IsZstd() {
			d.Annotations = map[string]string{oci.AnnotationZstd: "true"}
		}
		entries = append(entries, subjects.Manifest{Descriptor: d, Compression: string(v.format)})
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, e := range entries {
		idx.Manifests = append(idx.Manifests, e.Descriptor)
	}
	indexDesc := pushJSON(ctx, store, ocispec.MediaTypeImageIndex, idx)

	// The document: the index first, then the manifests in its order. The
	// tag on the repository is dropped.
	doc := subjects.New("registry.example/ns/app:v1", indexDesc, entries)
	artifact, err := subjects.Push(ctx, store, doc, indexDesc)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("artifactType:", artifact.ArtifactType)

	// A reader finds the artifact from the index and reads the document.
	found, err := subjects.Find(ctx, store, indexDesc)
	if err != nil {
		log.Fatal(err)
	}
	got, manifest, err := subjects.Fetch(ctx, store, found)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("found the pushed artifact:", found.Digest == artifact.Digest)
	fmt.Println("subject is the index:", manifest.Subject.Digest == indexDesc.Digest)
	// Each entry names the repository and one digest: the index's, then
	// each manifest's.
	want := []ocispec.Descriptor{indexDesc, entries[0].Descriptor, entries[1].Descriptor}
	for i, s := range got.Subjects {
		fmt.Printf("%s %s digest ok: %v %q\n", s.Name, s.MediaType, s.DigestOf() == want[i].Digest, s.Annotations)
	}

	mismatches, err := subjects.Verify(ctx, store, "registry.example/ns/app", found)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("mismatches:", len(mismatches))
	// Output:
	// artifactType: application/vnd.mcbuild.subjects.v1+json
	// found the pushed artifact: true
	// subject is the index: true
	// registry.example/ns/app application/vnd.oci.image.index.v1+json digest ok: true map[]
	// registry.example/ns/app application/vnd.oci.image.manifest.v1+json digest ok: true map["compression":"gzip" "platform":"linux/amd64"]
	// registry.example/ns/app application/vnd.oci.image.manifest.v1+json digest ok: true map["compression":"zstd:chunked" "platform":"linux/amd64"]
	// mismatches: 0
}
