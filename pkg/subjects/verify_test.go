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
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/testimage"
)

func TestVerifyTampered(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	fx := newFixture(t, store, "verify")
	e := fx.entries // amd64 gzip, arm64 gzip, amd64 zstd:chunked, arm64 zstd:chunked
	stranger := digest.FromString("not pushed anywhere")
	repo := "r.example/ns/app"

	tests := []struct {
		name    string
		doc     func() Document
		subject ocispec.Descriptor
		want    []string
	}{
		{"untouched", func() Document { return New(repo, fx.index, e) }, fx.index, nil},
		{"extra digest", func() Document {
			d := New(repo, fx.index, e)
			d.Subjects = append(d.Subjects, Subject{Name: repo, Digest: map[string]string{"sha256": stranger.Encoded()},
				Annotations: map[string]string{"platform": "linux/s390x"}})
			return d
		}, fx.index, []string{"in the subjects but not in the index: " + stranger.String() + " (linux/s390x)"}},
		{"missing manifest", func() Document { return New(repo, fx.index, e[:3]) }, fx.index,
			[]string{"listed in the index but not in the subjects: " + e[3].Descriptor.Digest.String() + " (linux/arm64)"}},
		{"wrong platform", func() Document {
			d := New(repo, fx.index, e)
			d.Subjects[1].Annotations["platform"] = "linux/arm64"
			return d
		}, fx.index, []string{e[0].Descriptor.Digest.String() + " (linux/amd64): platform is linux/arm64 in the subjects but linux/amd64 in the index"}},
		{"arm64/v8 equals arm64", func() Document {
			d := New(repo, fx.index, e)
			d.Subjects[2].Annotations["platform"] = "linux/arm64/v8"
			return d
		}, fx.index, nil},
		{"architecture alias equals its OCI name", func() Document {
			d := New(repo, fx.index, e)
			d.Subjects[2].Annotations["platform"] = "linux/aarch64"
			return d
		}, fx.index, nil},
		{"malformed platform", func() Document {
			d := New(repo, fx.index, e)
			d.Subjects[1].Annotations["platform"] = "linux/amd64/"
			return d
		}, fx.index, []string{e[0].Descriptor.Digest.String() + " (linux/amd64): platform is linux/amd64/ in the subjects but linux/amd64 in the index"}},
		{"wrong compression", func() Document {
			d := New(repo, fx.index, e)
			d.Subjects[1].Annotations["compression"] = string(formats.Zstd)
			return d
		}, fx.index, []string{e[0].Descriptor.Digest.String() + " (linux/amd64): compression is zstd in the subjects but gzip (no zstd annotation) in the index"}},
		{"wrong media type", func() Document {
			d := New(repo, fx.index, e)
			d.Subjects[2].MediaType = oci.MediaTypeDockerManifest
			return d
		}, fx.index, []string{e[1].Descriptor.Digest.String() + " (linux/arm64): mediaType is application/vnd.docker.distribution.manifest.v2+json in the subjects but application/vnd.oci.image.manifest.v1+json in the index"}},
		{"other repository name", func() Document {
			d := New(repo, fx.index, e)
			d.Subjects[4].Name = "evil.example/x"
			return d
		}, fx.index, []string{
			`names another repository: ` + e[3].Descriptor.Digest.String() + ` (linux/arm64): the entry names "evil.example/x", verified in "r.example/ns/app"`,
			e[3].Descriptor.Digest.String() + ` (linux/arm64): name is "evil.example/x", the first entry's is "r.example/ns/app"`,
		}},
		{"duplicate entry", func() Document {
			d := New(repo, fx.index, e)
			d.Subjects = append(d.Subjects, d.Subjects[1])
			return d
		}, fx.index, []string{"listed more than once in the subjects: " + e[0].Descriptor.Digest.String() + " (linux/amd64)"}},
		{"first entry is not the subject", func() Document {
			d := New(repo, fx.index, e)
			d.Subjects[0], d.Subjects[1] = d.Subjects[1], d.Subjects[0]
			return d
		}, fx.index, []string{"first subject is not the artifact's subject (the index): the first entry is " +
			e[0].Descriptor.Digest.String() + ", the subject is " + fx.index.Digest.String()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			art, err := push(ctx, store, tt.doc(), tt.subject)
			if err != nil {
				t.Fatal(err)
			}
			wantMismatches(t, store, repo, art, tt.want)
		})
	}
}

// TestVerifyNestedIndex: an index child that is itself an index is listed,
// and so are its children (one level).
func TestVerifyNestedIndex(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	b := testimage.New(t, store)
	amd := Manifest{Descriptor: b.Image("linux/amd64", formats.Gzip), Compression: string(formats.Gzip)}
	arm := Manifest{Descriptor: b.Image("linux/arm64", formats.Gzip), Compression: string(formats.Gzip)}
	s390 := Manifest{Descriptor: b.Image("linux/s390x", formats.Gzip), Compression: string(formats.Gzip)}
	inner := b.Index(arm.Descriptor, s390.Descriptor)
	outer := b.Index(amd.Descriptor, inner)
	innerEntry := Manifest{Descriptor: inner}

	tests := []struct {
		name    string
		entries []Manifest
		want    []string
	}{
		{"flattened one level", []Manifest{amd, innerEntry, arm, s390}, nil},
		{"inner children missing", []Manifest{amd, innerEntry}, []string{
			"listed in the index but not in the subjects: " + arm.Descriptor.Digest.String() + " (linux/arm64)",
			"listed in the index but not in the subjects: " + s390.Descriptor.Digest.String() + " (linux/s390x)",
		}},
		{"inner index missing", []Manifest{amd, arm, s390}, []string{
			"listed in the index but not in the subjects: " + inner.Digest.String(),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			art, err := Push(ctx, store, New("r.example/a", outer, tt.entries), outer)
			if err != nil {
				t.Fatal(err)
			}
			wantMismatches(t, store, "r.example/a", art, tt.want)
		})
	}
}

// TestVerifyMissingInStore: manifests the index lists but the store lacks.
func TestVerifyMissingInStore(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	b := testimage.New(t, store)
	amd := Manifest{Descriptor: b.Image("linux/amd64", formats.Gzip), Compression: string(formats.Gzip)}
	ghost := amd
	ghost.Descriptor = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("ghost"), Size: 5,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64"}}
	idx := b.Index(amd.Descriptor, ghost.Descriptor)
	art, err := Push(ctx, store, New("r.example/a", idx, []Manifest{amd, ghost}), idx)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := Verify(ctx, store, "r.example/a", art)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"missing in registry: " + ghost.Descriptor.Digest.String() + " (linux/arm64)"}
	if got := mismatchStrings(ms); !reflect.DeepEqual(got, want) {
		t.Fatalf("Verify = %v, want %v", got, want)
	}

	// An artifact whose subject (the index) is not in the store.
	store2 := memory.New()
	lost := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("lost"), Size: 4}
	art2, err := Push(ctx, store2, New("r.example/a", lost, nil), lost)
	if err != nil {
		t.Fatal(err)
	}
	ms, err = Verify(ctx, store2, "r.example/a", art2)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"missing in registry: " + lost.Digest.String()}
	if got := mismatchStrings(ms); !reflect.DeepEqual(got, want) {
		t.Fatalf("Verify = %v, want %v", got, want)
	}
}

func TestFetchUntrusted(t *testing.T) {
	ctx := context.Background()
	hex := strings.Repeat("ab", 32)
	idx := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.NewDigestFromEncoded(digest.SHA256, hex), Size: 100}
	goodDoc := []byte(`{"subjects":[{"name":"r/a","digest":{"sha256":"` + hex + `"}}]}`)
	withLayer := func(doc string) func(*ocispec.Manifest, *[]byte) {
		return func(_ *ocispec.Manifest, layer *[]byte) { *layer = []byte(doc) }
	}

	tests := []struct {
		name string
		// build changes the manifest or layer content before they are stored.
		build func(m *ocispec.Manifest, layer *[]byte)
		// stored changes the stored bytes or the descriptor passed to Fetch.
		stored  func(f mapFetcher, desc *ocispec.Descriptor, layer ocispec.Descriptor)
		wantErr string
	}{
		{name: "valid"},
		{name: "other artifactType", build: func(m *ocispec.Manifest, _ *[]byte) { m.ArtifactType = "application/vnd.example.sbom" }, wantErr: "not a subjects artifact"},
		{name: "no artifactType", build: func(m *ocispec.Manifest, _ *[]byte) { m.ArtifactType = "" }, wantErr: "not a subjects artifact"},
		{name: "two layers", build: func(m *ocispec.Manifest, _ *[]byte) { m.Layers = append(m.Layers, m.Layers[0]) }, wantErr: "2 layers, want exactly 1"},
		{name: "no layer", build: func(m *ocispec.Manifest, _ *[]byte) { m.Layers = nil }, wantErr: "0 layers, want exactly 1"},
		{name: "layer media type", build: func(m *ocispec.Manifest, _ *[]byte) { m.Layers[0].MediaType = "application/json" }, wantErr: "layer mediaType"},
		{name: "config media type", build: func(m *ocispec.Manifest, _ *[]byte) { m.Config.MediaType = ocispec.MediaTypeImageConfig }, wantErr: "config mediaType"},
		{name: "no subject", build: func(m *ocispec.Manifest, _ *[]byte) { m.Subject = nil }, wantErr: "no subject"},
		{name: "schema version", build: func(m *ocispec.Manifest, _ *[]byte) { m.SchemaVersion = 1 }, wantErr: "schemaVersion 1"},
		{name: "manifest mediaType field", build: func(m *ocispec.Manifest, _ *[]byte) { m.MediaType = "" }, wantErr: "mediaType \"\""},
		{name: "layer too large", build: func(m *ocispec.Manifest, _ *[]byte) { m.Layers[0].Size = MaxSize + 1 }, wantErr: "outside 1..4194304"},
		{name: "descriptor is an index", stored: func(_ mapFetcher, d *ocispec.Descriptor, _ ocispec.Descriptor) {
			d.MediaType = ocispec.MediaTypeImageIndex
		}, wantErr: "not an OCI image manifest"},
		{name: "manifest too large", stored: func(_ mapFetcher, d *ocispec.Descriptor, _ ocispec.Descriptor) { d.Size = MaxSize + 1 }, wantErr: "outside 1..4194304"},
		{name: "manifest digest mismatch", stored: func(f mapFetcher, d *ocispec.Descriptor, _ ocispec.Descriptor) {
			b := f[d.Digest]
			f[d.Digest] = append([]byte(" "), b[:len(b)-1]...) // same size, other bytes
		}, wantErr: "fetching subjects manifest"},
		{name: "layer digest mismatch", stored: func(f mapFetcher, _ *ocispec.Descriptor, l ocispec.Descriptor) {
			f[l.Digest] = []byte(strings.Repeat("x", int(l.Size)))
		}, wantErr: "fetching subjects layer"},
		{name: "layer not JSON", build: withLayer("not json"), wantErr: "invalid JSON"},
		{name: "trailing data", build: withLayer(string(goodDoc) + ` {}`), wantErr: "data after the JSON object"},
		{name: "no entries", build: withLayer(`{"subjects":[]}`), wantErr: "no entries"},
		{name: "no name", build: withLayer(`{"subjects":[{"digest":{"sha256":"` + hex + `"}}]}`), wantErr: "has no name"},
		{name: "no sha256", build: withLayer(`{"subjects":[{"name":"r/a","digest":{"sha512":"` + hex + hex + `"}}]}`), wantErr: "no sha256 digest"},
		{name: "short hex", build: withLayer(`{"subjects":[{"name":"r/a","digest":{"sha256":"abc"}}]}`), wantErr: "malformed sha256 digest"},
		{name: "upper-case hex", build: withLayer(`{"subjects":[{"name":"r/a","digest":{"sha256":"` + strings.ToUpper(hex) + `"}}]}`), wantErr: "malformed sha256 digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mapFetcher{}
			layer := goodDoc
			m := ocispec.Manifest{
				Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
				ArtifactType: ArtifactType, Config: emptyConfig(), Subject: &idx,
				Layers: []ocispec.Descriptor{content.NewDescriptorFromBytes(ArtifactType, goodDoc)},
			}
			if tt.build != nil {
				tt.build(&m, &layer)
			}
			l := f.add(ArtifactType, layer)
			if len(m.Layers) > 0 && m.Layers[0].Digest == digest.FromBytes(goodDoc) && string(layer) != string(goodDoc) {
				m.Layers[0] = l // the layer content was replaced
			}
			desc := f.addJSON(t, ocispec.MediaTypeImageManifest, m)
			if tt.stored != nil {
				tt.stored(f, &desc, l)
			}
			doc, got, err := Fetch(ctx, f, desc)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Fetch = %v", err)
				}
				var want Document
				if err := json.Unmarshal(goodDoc, &want); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(doc, want) || got.Subject.Digest != idx.Digest {
					t.Fatalf("Fetch = %+v, %+v", doc, got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Fetch = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

// wantMismatches verifies art in store, as repository repo, and compares
// the mismatches, in order.
func wantMismatches(t *testing.T, store content.ReadOnlyStorage, repo string, art ocispec.Descriptor, want []string) {
	t.Helper()
	ms, err := Verify(context.Background(), store, repo, art)
	if err != nil {
		t.Fatal(err)
	}
	if got := mismatchStrings(ms); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("Verify =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
