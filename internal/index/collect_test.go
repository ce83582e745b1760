package index

import (
	"context"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"github.com/mcbuild/mcbuild/internal/oci"
)

const attestation = "attestation-manifest"

// collectCase builds its inputs into a fresh store and states what Collect
// must return: entry summaries (see summary) in order, or error fragments.
type collectCase struct {
	name  string
	setup func(b *builder) (roots []ocispec.Descriptor, want []string)
	warns []string // fragments, one per expected warning
	parts []string // error fragments; empty means success expected
}

func runCollectCases(t *testing.T, tests []collectCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(t, memory.New())
			roots, want := tc.setup(b)
			entries, warns, err := Collect(context.Background(), b.Target, roots)
			if len(tc.parts) > 0 {
				if err == nil {
					t.Fatalf("Collect = %v, want error", summary(entries))
				}
				for _, p := range tc.parts {
					if !strings.Contains(err.Error(), p) {
						t.Errorf("error %q does not mention %q", err, p)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(entries); !reflect.DeepEqual(got, want) {
				t.Errorf("entries:\n got %q\nwant %q", got, want)
			}
			if len(warns) != len(tc.warns) {
				t.Fatalf("warnings %q, want %d", warns, len(tc.warns))
			}
			for i, w := range tc.warns {
				if !strings.Contains(warns[i], w) {
					t.Errorf("warning %q does not mention %q", warns[i], w)
				}
			}
		})
	}
}

func TestCollectFlattening(t *testing.T) {
	runCollectCases(t, []collectCase{
		{
			name: "nested indexes flattened in order",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				amdGz := on(b.gzipImage("linux/amd64"), "linux/amd64")
				amdZc := on(b.chunkedImage("linux/amd64"), "linux/amd64")
				armGz := on(b.gzipImage("linux/arm64"), "linux/arm64/v8")
				s390Gz := on(b.gzipImage("linux/s390x"), "linux/s390x")
				inner := b.Index(amdZc, amdGz)
				deep := b.Index(b.Index(s390Gz))
				root := b.Index(inner, armGz, deep)
				return []ocispec.Descriptor{root}, []string{
					"linux/amd64 zstd:chunked " + short(amdZc),
					"linux/amd64 gzip " + short(amdGz),
					"linux/arm64 gzip " + short(armGz),
					"linux/s390x gzip " + short(s390Gz),
				}
			},
		},
		{
			name: "single manifest root takes platform from config",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				m := b.chunkedImage("linux/ppc64le")
				return []ocispec.Descriptor{m}, []string{"linux/ppc64le zstd:chunked " + short(m)}
			},
		},
		{
			name: "descriptor platform wins over config",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				m := on(b.gzipImage("linux/amd64"), "linux/riscv64")
				return []ocispec.Descriptor{b.Index(m)}, []string{"linux/riscv64 gzip " + short(m)}
			},
		},
		{
			name: "index child without platform gets it from config",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				m := b.gzipImage("linux/arm64/v8")
				return []ocispec.Descriptor{b.Index(m)}, []string{"linux/arm64 gzip " + short(m)}
			},
		},
		{
			name: "docker manifest list and schema2 manifest",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				m := b.JSON(oci.MediaTypeDockerManifest, ocispec.Manifest{
					Versioned: specs.Versioned{SchemaVersion: 2},
					MediaType: oci.MediaTypeDockerManifest,
					Config:    b.Config(oci.MediaTypeDockerConfig, "linux/amd64"),
					Layers:    []ocispec.Descriptor{b.Layer(oci.MediaTypeDockerLayerGzip, false)},
				})
				list := b.JSON(oci.MediaTypeDockerManifestList, ocispec.Index{
					Versioned: specs.Versioned{SchemaVersion: 2},
					MediaType: oci.MediaTypeDockerManifestList,
					Manifests: []ocispec.Descriptor{m},
				})
				return []ocispec.Descriptor{list}, []string{"linux/amd64 gzip " + short(m)}
			},
		},
		{
			name: "several inputs, index and manifest",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				amdGz := on(b.gzipImage("linux/amd64"), "linux/amd64")
				amdZc := on(b.chunkedImage("linux/amd64"), "linux/amd64")
				armZc := b.chunkedImage("linux/arm64")
				return []ocispec.Descriptor{b.Index(amdGz, amdZc), armZc}, []string{
					"linux/amd64 gzip " + short(amdGz),
					"linux/amd64 zstd:chunked " + short(amdZc),
					"linux/arm64 zstd:chunked " + short(armZc),
				}
			},
		},
		{
			name: "four index levels are accepted",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				m := on(b.gzipImage("linux/amd64"), "linux/amd64")
				return []ocispec.Descriptor{b.Index(b.Index(b.Index(b.Index(m))))}, []string{"linux/amd64 gzip " + short(m)}
			},
		},
		{
			name: "five index levels are refused",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				m := on(b.gzipImage("linux/amd64"), "linux/amd64")
				return []ocispec.Descriptor{b.Index(b.Index(b.Index(b.Index(b.Index(m)))))}, nil
			},
			parts: []string{"nested more than 4 levels"},
		},
		{
			name: "empty index",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				return []ocispec.Descriptor{b.Index()}, nil
			},
			parts: []string{"lists no manifests"},
		},
		{
			name: "no roots",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				return nil, nil
			},
			parts: []string{"no inputs"},
		},
	})
}

func TestCollectFormats(t *testing.T) {
	single := func(platform string, layers func(b *builder) []ocispec.Descriptor, format string) func(b *builder) ([]ocispec.Descriptor, []string) {
		return func(b *builder) ([]ocispec.Descriptor, []string) {
			m := b.image(platform, layers(b)...)
			return []ocispec.Descriptor{m}, []string{platform + " " + format + " " + short(m)}
		}
	}
	runCollectCases(t, []collectCase{
		{name: "gzip", setup: single("linux/amd64", func(b *builder) []ocispec.Descriptor {
			return []ocispec.Descriptor{b.gzipLayer(), b.gzipLayer()}
		}, "gzip")},
		{name: "docker and foreign gzip", setup: single("windows/amd64", func(b *builder) []ocispec.Descriptor {
			return []ocispec.Descriptor{
				b.Layer(oci.MediaTypeDockerForeignLayerGzip, false),
				b.Layer(oci.MediaTypeDockerLayerGzip, false),
			}
		}, "gzip")},
		{name: "zstd:chunked when every layer has the checksum", setup: single("linux/amd64", func(b *builder) []ocispec.Descriptor {
			return []ocispec.Descriptor{b.chunkedLayer(), b.chunkedLayer()}
		}, "zstd:chunked")},
		{name: "plain zstd", setup: single("linux/amd64", func(b *builder) []ocispec.Descriptor {
			return []ocispec.Descriptor{b.zstdLayer(), b.zstdLayer()}
		}, "zstd")},
		{name: "zstd when only some layers are chunked", setup: single("linux/amd64", func(b *builder) []ocispec.Descriptor {
			return []ocispec.Descriptor{b.chunkedLayer(), b.zstdLayer()}
		}, "zstd")},
		{
			name: "mixed gzip and zstd",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				m := b.image("linux/amd64", b.gzipLayer(), b.chunkedLayer())
				return []ocispec.Descriptor{m}, nil
			},
			parts: []string{"mixed", ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd},
		},
		{
			name: "uncompressed",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				return []ocispec.Descriptor{b.image("linux/amd64", b.Layer(ocispec.MediaTypeImageLayer, false))}, nil
			},
			parts: []string{"uncompressed", ocispec.MediaTypeImageLayer},
		},
		{
			name: "no layers",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				return []ocispec.Descriptor{b.image("linux/amd64")}, nil
			},
			parts: []string{"has no layers"},
		},
		{
			name: "manifest without config",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				// an index body (no mediaType field) served as a manifest
				m := b.JSON(ocispec.MediaTypeImageManifest, map[string]any{
					"schemaVersion": 2,
					"manifests":     []ocispec.Descriptor{on(b.gzipImage("linux/amd64"), "linux/amd64")},
				})
				return []ocispec.Descriptor{b.Index(on(m, "linux/amd64"))}, nil
			},
			parts: []string{"malformed", "config has no media type"},
		},
		{
			name: "zstd annotation on gzip layers",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				m := annotate(on(b.gzipImage("linux/amd64"), "linux/amd64"), oci.AnnotationZstd, "true")
				return []ocispec.Descriptor{b.Index(m)}, nil
			},
			parts: []string{"gzip layers", oci.AnnotationZstd},
		},
	})
}

func TestCollectErrorNamesManifest(t *testing.T) {
	b := newBuilder(t, memory.New())
	m := b.image("linux/amd64", b.gzipLayer(), b.zstdLayer())
	_, _, err := Collect(context.Background(), b.Target, []ocispec.Descriptor{b.Index(on(m, "linux/amd64"))})
	if err == nil || !strings.Contains(err.Error(), m.Digest.String()) {
		t.Fatalf("error %v does not name manifest %s", err, m.Digest)
	}
}

func TestCollectDuplicates(t *testing.T) {
	runCollectCases(t, []collectCase{
		{
			name: "same manifest in two inputs is kept once",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				amd := on(b.gzipImage("linux/amd64"), "linux/amd64")
				arm := on(b.gzipImage("linux/arm64"), "linux/arm64")
				return []ocispec.Descriptor{b.Index(amd, arm), b.Index(amd)}, []string{
					"linux/amd64 gzip " + short(amd),
					"linux/arm64 gzip " + short(arm),
				}
			},
		},
		{
			name: "same manifest as index child and as root",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				m := b.chunkedImage("linux/arm64")
				return []ocispec.Descriptor{b.Index(on(m, "linux/arm64/v8")), m}, []string{"linux/arm64 zstd:chunked " + short(m)}
			},
		},
		{
			name: "different manifests for one platform and format",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				one := on(b.gzipImage("linux/amd64"), "linux/amd64")
				two := b.gzipImage("linux/amd64")
				root := b.Index(one)
				root.Annotations = map[string]string{ocispec.AnnotationRefName: "quay.io/x/a:amd64"}
				return []ocispec.Descriptor{root, two}, nil
			},
			parts: []string{"two different manifests for linux/amd64 gzip", `"quay.io/x/a:amd64"`, "input 2 ("},
		},
		{
			name: "one digest under two platforms",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				m := b.gzipImage("linux/amd64")
				return []ocispec.Descriptor{b.Index(on(m, "linux/amd64"), on(m, "linux/arm64"))}, nil
			},
			parts: []string{"listed as linux/amd64 gzip", "as linux/arm64 gzip"},
		},
	})
}

func TestCollectSkipsNonImages(t *testing.T) {
	runCollectCases(t, []collectCase{
		{
			name: "buildkit attestation",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				amd := on(b.gzipImage("linux/amd64"), "linux/amd64")
				att := b.JSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{
					Versioned: specs.Versioned{SchemaVersion: 2},
					MediaType: ocispec.MediaTypeImageManifest,
					Config:    b.Config(ocispec.MediaTypeImageConfig, ""),
					Layers:    []ocispec.Descriptor{b.Layer("application/vnd.in-toto+json", false)},
				})
				att = annotate(on(att, "unknown/unknown"), oci.AnnotationDockerReferenceType, attestation)
				att = annotate(att, "vnd.docker.reference.digest", amd.Digest.String())
				return []ocispec.Descriptor{b.Index(amd, att)}, []string{"linux/amd64 gzip " + short(amd)}
			},
			warns: []string{attestation},
		},
		{
			name: "unknown/unknown without annotation",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				amd := on(b.gzipImage("linux/amd64"), "linux/amd64")
				unk := on(b.gzipImage(""), "unknown/unknown")
				return []ocispec.Descriptor{b.Index(unk, amd)}, []string{"linux/amd64 gzip " + short(amd)}
			},
			warns: []string{"unknown/unknown"},
		},
		{
			name: "artifact manifest and foreign media type",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				amd := on(b.gzipImage("linux/amd64"), "linux/amd64")
				sbom := b.JSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{
					Versioned:    specs.Versioned{SchemaVersion: 2},
					MediaType:    ocispec.MediaTypeImageManifest,
					ArtifactType: "application/spdx+json",
					Config:       ocispec.DescriptorEmptyJSON,
					Layers:       []ocispec.Descriptor{b.Layer("application/spdx+json", false)},
				})
				blob := b.Layer("application/octet-stream", false)
				return []ocispec.Descriptor{b.Index(amd, sbom, blob)}, []string{"linux/amd64 gzip " + short(amd)}
			},
			warns: []string{"application/spdx+json", "application/octet-stream"},
		},
		{
			name: "index with only attestations",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				att := annotate(on(b.gzipImage(""), "unknown/unknown"), oci.AnnotationDockerReferenceType, attestation)
				return []ocispec.Descriptor{b.Index(att)}, nil
			},
			parts: []string{"contains no image manifest"},
		},
		{
			name: "root artifact is an error",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				return []ocispec.Descriptor{b.JSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{
					Versioned:    specs.Versioned{SchemaVersion: 2},
					MediaType:    ocispec.MediaTypeImageManifest,
					ArtifactType: "application/vnd.example",
					Config:       ocispec.DescriptorEmptyJSON,
					Layers:       []ocispec.Descriptor{ocispec.DescriptorEmptyJSON},
				})}, nil
			},
			parts: []string{"is not an image", "application/vnd.example"},
		},
		{
			name: "root of a foreign media type is an error",
			setup: func(b *builder) ([]ocispec.Descriptor, []string) {
				return []ocispec.Descriptor{b.Layer(ocispec.MediaTypeImageLayerGzip, false)}, nil
			},
			parts: []string{"not an image manifest or index"},
		},
	})
}

// TestCollectEntryDescriptor checks what Collect copies into an Entry.
func TestCollectEntryDescriptor(t *testing.T) {
	b := newBuilder(t, memory.New())
	child := annotate(on(b.chunkedImage("linux/amd64"), "linux/amd64"), "org.example.keep", "1")
	root := b.chunkedImage("linux/arm64/v8")
	named := annotate(root, ocispec.AnnotationRefName, "reg/x:arm64")
	named = annotate(named, "org.example.root", "2")
	entries, _, err := Collect(context.Background(), b.Target, []ocispec.Descriptor{b.Index(child), named})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("got %d entries", len(entries))
	}
	if got := entries[0].Descriptor.Annotations; !reflect.DeepEqual(got, map[string]string{"org.example.keep": "1"}) {
		t.Errorf("child annotations %v", got)
	}
	d := entries[1].Descriptor
	if got := d.Annotations; !reflect.DeepEqual(got, map[string]string{"org.example.root": "2"}) {
		t.Errorf("root annotations %v (ref.name must be dropped)", got)
	}
	if d.MediaType != ocispec.MediaTypeImageManifest || d.Size != root.Size || d.Digest != root.Digest {
		t.Errorf("descriptor %+v does not match %+v", d, root)
	}
	if d.Platform == nil || d.Platform.Variant != "v8" || d.Platform.Architecture != "arm64" {
		t.Errorf("platform from config = %+v, want linux/arm64/v8", d.Platform)
	}
	// The entries are fit for Assemble.
	if _, err := Assemble(entries); err != nil {
		t.Errorf("Assemble(Collect(...)): %v", err)
	}
}

// TestCollectUntrusted checks the size cap and digest verification.
func TestCollectUntrusted(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	b := newBuilder(t, store)
	m := on(b.gzipImage("linux/amd64"), "linux/amd64")
	good := b.Index(m)
	other := b.Index(on(b.gzipImage("linux/arm64"), "linux/arm64"))
	substitute := content.FetcherFunc(func(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
		if d.Digest == good.Digest {
			d = other // a registry answering with other content
		}
		return store.Fetch(ctx, d)
	})
	huge := good
	huge.Size = oci.MaxDocumentBytes + 1
	tooSmall := good
	tooSmall.Size--
	liar := good
	liar.MediaType = ocispec.MediaTypeImageManifest
	// like a registry, which does not key content by media type
	ignoreMediaType := content.FetcherFunc(func(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
		if d.Digest == good.Digest {
			d = good
		}
		return store.Fetch(ctx, d)
	})
	noMediaType := good
	noMediaType.MediaType = ""
	tests := []struct {
		name    string
		fetcher content.Fetcher
		root    ocispec.Descriptor
		parts   []string
	}{
		{name: "oversized", fetcher: store, root: huge, parts: []string{"outside 1..4194304"}},
		{name: "size mismatch", fetcher: store, root: tooSmall, parts: []string{good.Digest.String()}},
		{name: "substituted content", fetcher: substitute, root: good, parts: []string{"mismatched digest"}},
		{name: "media type contradicts content", fetcher: ignoreMediaType, root: liar, parts: []string{"content says", ocispec.MediaTypeImageIndex}},
		{name: "no media type", fetcher: ignoreMediaType, root: noMediaType, parts: []string{"no media type"}},
		// an index never pushed to this store
		{name: "missing", fetcher: store, root: newBuilder(t, memory.New()).Index(m, m), parts: []string{"fetching manifest", "not found"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			entries, _, err := Collect(ctx, tc.fetcher, []ocispec.Descriptor{tc.root})
			if err == nil {
				t.Fatalf("Collect = %v, want error", summary(entries))
			}
			for _, p := range tc.parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not mention %q", err, p)
				}
			}
		})
	}
}

// TestCollectCycle bypasses digest verification (which makes a cycle
// impossible to build honestly) to check the cycle guard.
func TestCollectCycle(t *testing.T) {
	self := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("self"), Size: 10}
	data, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{self},
	})
	if err != nil {
		t.Fatal(err)
	}
	fetches := 0
	c := newCollector(func(context.Context, ocispec.Descriptor, string) ([]byte, error) {
		fetches++
		return data, nil
	})
	_, _, err = c.collect(context.Background(), []ocispec.Descriptor{self})
	if err == nil || !strings.Contains(err.Error(), "index cycle") {
		t.Fatalf("err = %v, want index cycle", err)
	}
	if fetches != 1 {
		t.Errorf("fetched %d times, want 1 (cached)", fetches)
	}
}

func TestMerge(t *testing.T) {
	b := newBuilder(t, memory.New())
	amdGz := on(b.gzipImage("linux/amd64"), "linux/amd64")
	amdZc := on(b.chunkedImage("linux/amd64"), "linux/amd64")
	b.Tag(b.Index(amdZc, amdGz), "amd64")
	armZc := b.chunkedImage("linux/arm64")
	b.Tag(armZc, "arm64-zstd")
	armGz := b.gzipImage("linux/arm64")
	b.Tag(armGz, "arm64-gzip")
	b.Tag(b.gzipImage("linux/arm64"), "arm64-rebuilt")

	tests := []struct {
		name  string
		refs  []string
		want  []digest.Digest
		parts []string
	}{
		{
			name: "three inputs",
			refs: []string{"amd64", "arm64-zstd", "arm64-gzip"},
			want: []digest.Digest{amdGz.Digest, amdZc.Digest, armGz.Digest, armZc.Digest},
		},
		{name: "conflict names both refs", refs: []string{"arm64-gzip", "amd64", "arm64-rebuilt"}, parts: []string{`"arm64-gzip"`, `"arm64-rebuilt"`}},
		{name: "unknown ref", refs: []string{"amd64", "nope"}, parts: []string{`resolving "nope"`}},
		{name: "no refs", parts: []string{"no inputs"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			entries, warns, err := Merge(context.Background(), b.Target, tc.refs...)
			idx, _ := Assemble(entries)
			if len(tc.parts) > 0 {
				if err == nil {
					t.Fatalf("Merge = %+v, want error", idx)
				}
				for _, p := range tc.parts {
					if !strings.Contains(err.Error(), p) {
						t.Errorf("error %q does not mention %q", err, p)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) != 0 {
				t.Errorf("warnings %q", warns)
			}
			var got []digest.Digest
			for _, d := range idx.Manifests {
				got = append(got, d.Digest)
				_, zstd := d.Annotations[oci.AnnotationZstd]
				if wantZstd := d.Digest == amdZc.Digest || d.Digest == armZc.Digest; zstd != wantZstd {
					t.Errorf("%s: zstd annotation %v, want %v", d.Digest, zstd, wantZstd)
				}
				if _, ok := d.Annotations[ocispec.AnnotationRefName]; ok {
					t.Errorf("%s: ref name leaked into the index", d.Digest)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("order:\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}
