package subjects

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"github.com/mcbuild/mcbuild/internal/formats"
)

// fuzzSeedDoc is a valid document: an index and two manifests.
func fuzzSeedDoc() []byte {
	idx := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("index"), Size: 300}
	var entries []Manifest
	for i, f := range []formats.Format{formats.Gzip, formats.ZstdChunked} {
		entries = append(entries, Manifest{Compression: string(f), Descriptor: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(strconv.Itoa(i)), Size: 500,
			Platform: &ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"},
		}})
	}
	b, _ := json.Marshal(New("registry.example:5000/ns/app:v1", idx, entries))
	return b
}

// canonical is the document as mcbuild would write it.
func canonical(t *testing.T, doc Document) []byte {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("an accepted document does not marshal: %v", err)
	}
	return b
}

// FuzzDecode: any bytes as the subjects layer either are refused or give a
// valid document that survives a write/read round trip unchanged.
func FuzzDecode(f *testing.F) {
	f.Add(fuzzSeedDoc())
	f.Add([]byte(`{"subjects":[{"name":"a","digest":{"sha256":"` + strings.Repeat("a", 64) + `","sha512":"x"},"annotations":{}}],"extra":1}`))
	f.Add([]byte(`{"subjects":[]}`))
	f.Add([]byte(`{"subjects":null} {}`))
	f.Add([]byte(`[]`))
	f.Add([]byte("{\"subjects\":[{\"name\":\"\xff\",\"digest\":{\"sha256\":\"" + strings.Repeat("0", 64) + "\"}}]}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := decode(b)
		if err != nil {
			return
		}
		if err := doc.Validate(); err != nil {
			t.Fatalf("decode accepted a document Validate refuses: %v", err)
		}
		if doc.Subjects[0].DigestOf() == "" {
			t.Fatal("accepted entry without a sha256 digest")
		}
		first := canonical(t, doc)
		again, err := decode(first)
		if err != nil {
			t.Fatalf("re-reading an accepted document: %v\n%s", err, first)
		}
		if second := canonical(t, again); !bytes.Equal(first, second) {
			t.Fatalf("round trip changed the document:\n%s\n%s", first, second)
		}
	})
}

// fuzzManifest is a subjects manifest template: "<L>" and <LS> stand for the
// layer's digest and size, filled in from the fuzzed layer bytes.
// fuzzFallbackManifest is the OCI 1.0 fallback form of the same artifact.
const fuzzFallbackManifest = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
	`"config":{"mediaType":"application/vnd.mcbuild.subjects.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},` +
	`"layers":[{"mediaType":"application/vnd.mcbuild.subjects.v1+json","digest":"<L>","size":<LS>}]}`

const fuzzManifest = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
	`"artifactType":"application/vnd.mcbuild.subjects.v1+json",` +
	`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},` +
	`"layers":[{"mediaType":"application/vnd.mcbuild.subjects.v1+json","digest":"<L>","size":<LS>}],` +
	`"subject":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:` +
	"1111111111111111111111111111111111111111111111111111111111111111" + `","size":300}}`

// FuzzFetch: Fetch over arbitrary manifest and layer bytes (served without
// any checking, as by a hostile registry) never panics; what it accepts is
// a well-formed subjects artifact whose document pushes and fetches back
// unchanged.
func FuzzFetch(f *testing.F) {
	f.Add([]byte(fuzzManifest), fuzzSeedDoc(), false)
	f.Add([]byte(fuzzManifest), []byte(`{"subjects":[]}`), false)
	f.Add([]byte(strings.Replace(fuzzManifest, `"size":<LS>`, `"size":99999999`, 1)), fuzzSeedDoc(), false)
	f.Add([]byte(strings.Replace(fuzzManifest, `"subject"`, `"subjekt"`, 1)), fuzzSeedDoc(), false)
	f.Add([]byte(`{"schemaVersion":2}`), []byte{}, true)
	f.Add([]byte(fuzzFallbackManifest), fuzzSeedDoc(), false)
	f.Fuzz(func(t *testing.T, manifest, layer []byte, wrongType bool) {
		ld := digest.FromBytes(layer)
		manifest = bytes.ReplaceAll(manifest, []byte("<L>"), []byte(ld.String()))
		manifest = bytes.ReplaceAll(manifest, []byte("<LS>"), []byte(strconv.Itoa(len(layer))))
		store := mapFetcher{ld: layer}
		mt := ocispec.MediaTypeImageManifest
		if wrongType {
			mt = ocispec.MediaTypeImageIndex
		}
		desc := store.add(mt, manifest)
		ctx := context.Background()
		doc, m, err := Fetch(ctx, store, desc)
		if err != nil {
			return
		}
		switch {
		case wrongType:
			t.Fatal("accepted an index descriptor")
		case len(m.Layers) != 1 || (m.ArtifactType != ArtifactType || m.Subject == nil) && !IsFallbackForm(m):
			t.Fatalf("accepted a malformed artifact: %+v", m)
		case doc.Validate() != nil:
			t.Fatalf("accepted an invalid document: %v", doc.Validate())
		case m.Layers[0].Size > MaxSize:
			t.Fatalf("accepted a %d-byte layer", m.Layers[0].Size)
		}
		mem := memory.New()
		if m.Subject == nil { // the OCI 1.0 fallback form (PushOrFallback)
			pushed, err := pushForm(ctx, mem, doc, nil)
			if err != nil {
				t.Fatalf("pushing an accepted document: %v", err)
			}
			doc2, m2, err := Fetch(ctx, mem, pushed)
			if err != nil || !IsFallbackForm(m2) || !bytes.Equal(canonical(t, doc), canonical(t, doc2)) {
				t.Fatalf("fallback round trip: %v", err)
			}
			return
		}
		subject := *m.Subject
		if subject.Digest.Validate() != nil {
			// Fetch reads the document, not the subject; Verify checks the
			// subject against the registry. A bad subject digest cannot be
			// pushed, so there is no round trip to check.
			return
		}
		pushed, err := push(ctx, mem, doc, subject)
		if err != nil {
			t.Fatalf("pushing an accepted document: %v", err)
		}
		doc2, m2, err := Fetch(ctx, mem, pushed)
		if err != nil {
			t.Fatalf("fetching a pushed document back: %v", err)
		}
		if !bytes.Equal(canonical(t, doc), canonical(t, doc2)) || m2.Subject.Digest != subject.Digest {
			t.Fatalf("round trip changed the artifact:\n%s\n%s", canonical(t, doc), canonical(t, doc2))
		}
		// Reading is deterministic.
		if raw, err := content.FetchAll(ctx, mem, pushed); err != nil || digest.FromBytes(raw) != pushed.Digest {
			t.Fatalf("pushed manifest does not match its descriptor: %v", err)
		}
	})
}
