package subjects

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/testimage"
)

func hexOf(d digest.Digest) string { return d.Encoded() }

func TestNew(t *testing.T) {
	idx := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("index"), Size: 10}
	amd := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("amd"), Size: 1,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}}
	arm := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("arm"), Size: 1,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}}
	tests := []struct {
		name      string
		repo      string
		manifests []Manifest
		want      Document
	}{
		{
			name: "index first, manifests in the given order",
			repo: "127.0.0.1:5000/ns/app",
			manifests: []Manifest{
				{Descriptor: arm, Compression: string(formats.ZstdChunked)},
				{Descriptor: amd, Compression: string(formats.Gzip)},
			},
			want: Document{Subjects: []Subject{
				{Name: "127.0.0.1:5000/ns/app", Digest: map[string]string{"sha256": hexOf(idx.Digest)}, MediaType: ocispec.MediaTypeImageIndex},
				{Name: "127.0.0.1:5000/ns/app", Digest: map[string]string{"sha256": hexOf(arm.Digest)}, MediaType: ocispec.MediaTypeImageManifest,
					Annotations: map[string]string{"platform": "linux/arm/v7", "compression": "zstd:chunked"}},
				{Name: "127.0.0.1:5000/ns/app", Digest: map[string]string{"sha256": hexOf(amd.Digest)}, MediaType: ocispec.MediaTypeImageManifest,
					Annotations: map[string]string{"platform": "linux/amd64", "compression": "gzip"}},
			}},
		},
		{
			name: "tag dropped from the name",
			repo: "quay.io/ns/app:v1",
			want: Document{Subjects: []Subject{
				{Name: "quay.io/ns/app", Digest: map[string]string{"sha256": hexOf(idx.Digest)}, MediaType: ocispec.MediaTypeImageIndex},
			}},
		},
		{
			name: "digest dropped from the name",
			repo: "quay.io/ns/app@" + idx.Digest.String(),
			want: Document{Subjects: []Subject{
				{Name: "quay.io/ns/app", Digest: map[string]string{"sha256": hexOf(idx.Digest)}, MediaType: ocispec.MediaTypeImageIndex},
			}},
		},
		{
			name:      "no platform nor format: no annotations",
			repo:      "r.example/a",
			manifests: []Manifest{{Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: amd.Digest}}},
			want: Document{Subjects: []Subject{
				{Name: "r.example/a", Digest: map[string]string{"sha256": hexOf(idx.Digest)}, MediaType: ocispec.MediaTypeImageIndex},
				{Name: "r.example/a", Digest: map[string]string{"sha256": hexOf(amd.Digest)}, MediaType: ocispec.MediaTypeImageManifest},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := New(tt.repo, idx, tt.manifests)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("New =\n%+v\nwant\n%+v", got, tt.want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestDocumentJSON(t *testing.T) {
	doc := Document{Subjects: []Subject{{Name: "r/a", Digest: map[string]string{"sha256": strings.Repeat("a", 64)},
		Annotations: map[string]string{"platform": "linux/amd64", "compression": "gzip"}}}}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"subjects":[{"name":"r/a","digest":{"sha256":"` + strings.Repeat("a", 64) + `"},"annotations":{"compression":"gzip","platform":"linux/amd64"}}]}`
	if string(b) != want {
		t.Fatalf("JSON =\n%s\nwant\n%s", b, want)
	}
}

func TestPushArtifactShape(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	fx := newFixture(t, store, "shape")
	doc := New("r.example/ns/app", fx.index, fx.entries)
	// A subject carrying extra fields: only mediaType, digest and size are kept.
	subject := fx.index
	subject.Annotations = map[string]string{"x": "y"}
	subject.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	desc, err := Push(ctx, store, doc, subject)
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != ocispec.MediaTypeImageManifest || desc.ArtifactType != ArtifactType {
		t.Fatalf("descriptor = %+v", desc)
	}
	raw, err := content.FetchAll(ctx, store, desc)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	if _, ok := generic["annotations"]; ok {
		t.Errorf("manifest has annotations (a created time makes it non-deterministic): %s", raw)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	wantConfig := ocispec.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: ocispec.DescriptorEmptyJSON.Digest, Size: 2}
	wantSubject := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: fx.index.Digest, Size: fx.index.Size}
	checks := []struct {
		what      string
		got, want any
	}{
		{"schemaVersion", m.SchemaVersion, 2},
		{"mediaType", m.MediaType, "application/vnd.oci.image.manifest.v1+json"},
		{"artifactType", m.ArtifactType, "application/vnd.mcbuild.subjects.v1+json"},
		{"config", m.Config, wantConfig},
		{"layer count", len(m.Layers), 1},
		{"layer mediaType", m.Layers[0].MediaType, "application/vnd.mcbuild.subjects.v1+json"},
		{"subject", *m.Subject, wantSubject},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.what, c.got, c.want)
		}
	}
	cfg, err := content.FetchAll(ctx, store, wantConfig)
	if err != nil || string(cfg) != "{}" {
		t.Errorf("empty config blob = %q, %v; want {}", cfg, err)
	}
	layer, err := content.FetchAll(ctx, store, m.Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	var got Document
	if err := json.Unmarshal(layer, &got); err != nil || !reflect.DeepEqual(got, doc) {
		t.Errorf("layer document = %+v, %v; want %+v", got, err, doc)
	}
}

func TestPushDeterministic(t *testing.T) {
	ctx := context.Background()
	var digests []digest.Digest
	for i := 0; i < 2; i++ {
		store := memory.New()
		fx := newFixture(t, store, "same")
		desc, err := Push(ctx, store, New("r.example/ns/app", fx.index, fx.entries), fx.index)
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, desc.Digest)
	}
	if digests[0] != digests[1] {
		t.Fatalf("same inputs gave %s and %s", digests[0], digests[1])
	}
	// Pushing again into the same store is not an error.
	store := memory.New()
	fx := newFixture(t, store, "same")
	for i := 0; i < 2; i++ {
		if _, err := Push(ctx, store, New("r.example/ns/app", fx.index, fx.entries), fx.index); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
}

func TestPushRejects(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	fx := newFixture(t, store, "rejects")
	good := New("r.example/ns/app", fx.index, fx.entries)
	other := fx.entries[0].Descriptor
	tests := []struct {
		name    string
		doc     Document
		subject ocispec.Descriptor
		wantErr string
	}{
		{"empty document", Document{}, fx.index, "no entries"},
		{"first entry is not the subject", good, other, "first entry is " + fx.index.Digest.String()},
		{"entry without name", Document{Subjects: []Subject{{Digest: map[string]string{"sha256": hexOf(fx.index.Digest)}}}}, fx.index, "no name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Push(ctx, store, tt.doc, tt.subject)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Push = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRoundTripMemory(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	fx := newFixture(t, store, "roundtrip")
	doc := New("r.example/ns/app", fx.index, fx.entries)
	desc, err := Push(ctx, store, doc, fx.index)
	if err != nil {
		t.Fatal(err)
	}
	found, err := Find(ctx, store, fx.index)
	if err != nil {
		t.Fatal(err)
	}
	if found.Digest != desc.Digest {
		t.Fatalf("Find = %s, want %s", found.Digest, desc.Digest)
	}
	got, m, err := Fetch(ctx, store, found)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, doc) || m.Subject.Digest != fx.index.Digest {
		t.Fatalf("Fetch = %+v (subject %s), want %+v", got, m.Subject.Digest, doc)
	}
	ms, err := Verify(ctx, store, "r.example/ns/app", found)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 0 {
		t.Fatalf("Verify of an untouched artifact = %v", mismatchStrings(ms))
	}
}

// fixedReferrers answers the referrers API with a fixed list, in order.
type fixedReferrers struct {
	*memory.Store
	list []ocispec.Descriptor
}

func (f fixedReferrers) Referrers(_ context.Context, _ ocispec.Descriptor, _ string, fn func([]ocispec.Descriptor) error) error {
	return fn(f.list)
}

func TestFind(t *testing.T) {
	ctx := context.Background()
	subj := func(seed string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ArtifactType, Digest: digest.FromString(seed), Size: 1}
	}
	other := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: "application/vnd.example.sbom", Digest: digest.FromString("sbom"), Size: 1}
	asIndex := subj("as-index")
	asIndex.MediaType = ocispec.MediaTypeImageIndex
	tests := []struct {
		name    string
		list    []ocispec.Descriptor
		want    digest.Digest
		wantErr string
	}{
		{"none", nil, "", "no subjects artifact"},
		{"only another artifactType (filter ignored by the registry)", []ocispec.Descriptor{other}, "", "no subjects artifact"},
		{"an index with the artifactType is not one", []ocispec.Descriptor{asIndex}, "", "no subjects artifact"},
		{"one among others", []ocispec.Descriptor{other, subj("a"), other}, digest.FromString("a"), ""},
		{"several: the last listed", []ocispec.Descriptor{subj("a"), subj("b"), other, subj("c"), other}, digest.FromString("c"), ""},
	}
	idx := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("idx"), Size: 1}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Find(ctx, fixedReferrers{memory.New(), tt.list}, idx)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), idx.Digest.String()) {
					t.Fatalf("Find = %v, want error containing %q and the index digest", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Digest != tt.want {
				t.Fatalf("Find = %s, %v; want %s", got.Digest, err, tt.want)
			}
		})
	}
}

// TestFindMemoryGraph uses the memory store's predecessor graph (no
// referrers API): a pushed artifact is found, another artifactType is not.
func TestFindMemoryGraph(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	fx := newFixture(t, store, "find")
	b := testimage.New(t, store)
	b.JSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: "application/vnd.example.sbom", Config: emptyConfig(),
		Layers: []ocispec.Descriptor{emptyConfig()}, Subject: &fx.index,
	})
	if _, err := Find(ctx, store, fx.index); err == nil {
		t.Fatal("Find found an artifact of another type")
	}
	want, err := Push(ctx, store, New("r.example/a", fx.index, fx.entries), fx.index)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Find(ctx, store, fx.index)
	if err != nil || got.Digest != want.Digest {
		t.Fatalf("Find = %s, %v; want %s", got.Digest, err, want.Digest)
	}
}

func TestResolveArtifact(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	fx := newFixture(t, store, "resolve")
	art, err := Push(ctx, store, New("r.example/ns/app", fx.index, fx.entries), fx.index)
	if err != nil {
		t.Fatal(err)
	}
	lone := newFixture(t, store, "lone") // an index without subjects artifact
	for ref, d := range map[string]ocispec.Descriptor{"index": fx.index, "artifact": art, "image": fx.entries[0].Descriptor, "lone": lone.index} {
		if err := store.Tag(ctx, d, ref); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		ref     string
		wantErr string
	}{
		{"index", ""},
		{"artifact", ""},
		{"r.example/ns/app:index", ""},
		{"image", "neither an index nor a subjects artifact"},
		{"lone", "no subjects artifact"},
		{"nope", "resolving nope"},
		{"r.example/ns/app", "has no tag or digest"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := ResolveArtifact(ctx, store, tt.ref)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ResolveArtifact = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Digest != art.Digest {
				t.Fatalf("ResolveArtifact = %s, %v; want %s", got.Digest, err, art.Digest)
			}
		})
	}
}
