package index

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/oci"
)

func TestAssembleOrder(t *testing.T) {
	tests := []struct {
		name    string
		entries []Entry
		want    []string // seeds, in index order
	}{
		{
			name: "one platform, zstd:chunked given first",
			entries: []Entry{
				entry("linux/amd64", formats.ZstdChunked, "amd64-zc"),
				entry("linux/amd64", formats.Gzip, "amd64-gz"),
			},
			want: []string{"amd64-gz", "amd64-zc"},
		},
		{
			name: "one platform, already gzip first",
			entries: []Entry{
				entry("linux/amd64", formats.Gzip, "amd64-gz"),
				entry("linux/amd64", formats.Zstd, "amd64-zs"),
			},
			want: []string{"amd64-gz", "amd64-zs"},
		},
		{
			name: "three platforms scrambled and interleaved",
			entries: []Entry{
				entry("linux/s390x", formats.ZstdChunked, "s390x-zc"),
				entry("linux/amd64", formats.ZstdChunked, "amd64-zc"),
				entry("linux/arm64", formats.ZstdChunked, "arm64-zc"),
				entry("linux/amd64", formats.Gzip, "amd64-gz"),
				entry("linux/s390x", formats.Gzip, "s390x-gz"),
				entry("linux/arm64", formats.Gzip, "arm64-gz"),
			},
			want: []string{"s390x-gz", "s390x-zc", "amd64-gz", "amd64-zc", "arm64-gz", "arm64-zc"},
		},
		{
			name: "arm64 and arm64/v8 are one platform",
			entries: []Entry{
				entry("linux/arm64", formats.ZstdChunked, "arm64-zc"),
				entry("linux/amd64", formats.Gzip, "amd64-gz"),
				entry("linux/arm64/v8", formats.Gzip, "arm64v8-gz"),
			},
			want: []string{"arm64v8-gz", "arm64-zc", "amd64-gz"},
		},
		{
			name: "arm/v6 and arm/v7 stay distinct",
			entries: []Entry{
				entry("linux/arm/v7", formats.Zstd, "v7-zs"),
				entry("linux/arm/v6", formats.Zstd, "v6-zs"),
				entry("linux/arm/v7", formats.Gzip, "v7-gz"),
				entry("linux/arm/v6", formats.Gzip, "v6-gz"),
			},
			want: []string{"v7-gz", "v7-zs", "v6-gz", "v6-zs"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idx, err := Assemble(tc.entries)
			if err != nil {
				t.Fatal(err)
			}
			if idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex {
				t.Errorf("schemaVersion %d mediaType %q", idx.SchemaVersion, idx.MediaType)
			}
			var got []digest.Digest
			for _, d := range idx.Manifests {
				got = append(got, d.Digest)
			}
			var want []digest.Digest
			for _, s := range tc.want {
				want = append(want, digest.FromString(s))
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("order:\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestAssembleAnnotations(t *testing.T) {
	const other = "org.example.keep"
	tests := []struct {
		name    string
		format  formats.Format
		in      map[string]string
		want    map[string]string
		wantNil bool
	}{
		{name: "gzip keeps others", format: formats.Gzip, in: map[string]string{other: "x"}, want: map[string]string{other: "x"}},
		{name: "gzip loses zstd annotation", format: formats.Gzip, in: map[string]string{oci.AnnotationZstd: "true", other: "x"}, want: map[string]string{other: "x"}},
		{name: "gzip with only zstd annotation ends with none", format: formats.Gzip, in: map[string]string{oci.AnnotationZstd: "true"}, wantNil: true},
		{name: "gzip without annotations", format: formats.Gzip, wantNil: true},
		{name: "zstd gains it", format: formats.Zstd, want: map[string]string{oci.AnnotationZstd: "true"}},
		{name: "zstd:chunked gains it, keeps others", format: formats.ZstdChunked, in: map[string]string{other: "y"}, want: map[string]string{oci.AnnotationZstd: "true", other: "y"}},
		{name: "wrong value corrected", format: formats.ZstdChunked, in: map[string]string{oci.AnnotationZstd: "false"}, want: map[string]string{oci.AnnotationZstd: "true"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := entry("linux/amd64", tc.format, tc.name)
			var before map[string]string
			if tc.in != nil {
				e.Descriptor.Annotations = map[string]string{}
				before = map[string]string{}
				for k, v := range tc.in {
					e.Descriptor.Annotations[k] = v
					before[k] = v
				}
			}
			idx, err := Assemble([]Entry{e})
			if err != nil {
				t.Fatal(err)
			}
			got := idx.Manifests[0].Annotations
			if tc.wantNil {
				if got != nil {
					t.Errorf("annotations = %v, want none", got)
				}
			} else if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("annotations = %v, want %v", got, tc.want)
			}
			if !reflect.DeepEqual(e.Descriptor.Annotations, before) {
				t.Errorf("input annotations changed to %v, were %v", e.Descriptor.Annotations, before)
			}
		})
	}
}

func TestAssembleErrors(t *testing.T) {
	noArch := entry("linux/amd64", formats.Gzip, "noarch")
	noArch.Descriptor.Platform.Architecture = ""
	badDigest := entry("linux/amd64", formats.Gzip, "bad")
	badDigest.Descriptor.Digest = "sha256:nothex"
	indexType := entry("linux/amd64", formats.Gzip, "idx")
	indexType.Descriptor.MediaType = ocispec.MediaTypeImageIndex
	zeroSize := entry("linux/amd64", formats.Gzip, "zero")
	zeroSize.Descriptor.Size = 0
	dupDigest := entry("linux/arm64", formats.Gzip, "amd64-gz")
	tests := []struct {
		name    string
		entries []Entry
		parts   []string
	}{
		{name: "no entries", parts: []string{"no entries"}},
		{name: "no platform", entries: []Entry{entry("", formats.Gzip, "x")}, parts: []string{"no platform", digest.FromString("x").String()}},
		{name: "no architecture", entries: []Entry{noArch}, parts: []string{"no platform"}},
		{name: "unknown format", entries: []Entry{entry("linux/amd64", "brotli", "x")}, parts: []string{`"brotli"`}},
		{name: "bad digest", entries: []Entry{badDigest}, parts: []string{"invalid digest"}},
		{name: "index media type", entries: []Entry{indexType}, parts: []string{"not an image manifest"}},
		{name: "zero size", entries: []Entry{zeroSize}, parts: []string{"invalid size"}},
		{
			name: "same platform and format",
			entries: []Entry{
				entry("linux/amd64", formats.Gzip, "one"),
				entry("linux/amd64", formats.Gzip, "two"),
			},
			parts: []string{"linux/amd64", "two gzip entries", digest.FromString("one").String(), digest.FromString("two").String()},
		},
		{
			name: "arm64 and arm64/v8 collide",
			entries: []Entry{
				entry("linux/arm64/v8", formats.ZstdChunked, "one"),
				entry("linux/arm64", formats.ZstdChunked, "two"),
			},
			parts: []string{"linux/arm64 has two zstd:chunked entries"},
		},
		{
			name: "zstd and zstd:chunked for one platform",
			entries: []Entry{
				entry("linux/amd64", formats.ZstdChunked, "zc"),
				entry("linux/amd64", formats.Zstd, "zs"),
			},
			parts: []string{"both a zstd (" + digest.FromString("zs").String() + ") and a zstd:chunked (" + digest.FromString("zc").String()},
		},
		{
			name: "digest listed twice",
			entries: []Entry{
				entry("linux/amd64", formats.Gzip, "amd64-gz"),
				dupDigest,
			},
			parts: []string{digest.FromString("amd64-gz").String() + " is listed twice", "linux/amd64 gzip", "linux/arm64 gzip"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idx, err := Assemble(tc.entries)
			if err == nil {
				t.Fatalf("Assemble = %+v, want error", idx)
			}
			for _, p := range tc.parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not mention %q", err, p)
				}
			}
		})
	}
}

func TestAssembleDoesNotAliasPlatform(t *testing.T) {
	e := entry("linux/amd64", formats.Gzip, "x")
	idx, err := Assemble([]Entry{e})
	if err != nil {
		t.Fatal(err)
	}
	idx.Manifests[0].Platform.Architecture = "changed"
	if e.Descriptor.Platform.Architecture != "amd64" {
		t.Fatalf("index shares the entry's platform: %q", e.Descriptor.Platform.Architecture)
	}
}

func TestMarshal(t *testing.T) {
	tests := []struct {
		name    string
		entries []Entry
	}{
		{name: "one", entries: []Entry{entry("linux/amd64", formats.Gzip, "a")}},
		{name: "two platforms with annotations", entries: []Entry{
			entry("linux/arm64", formats.ZstdChunked, "b"),
			entry("linux/amd64", formats.Gzip, "a"),
			entry("linux/arm64", formats.Gzip, "c"),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idx, err := Assemble(tc.entries)
			if err != nil {
				t.Fatal(err)
			}
			b1, d1, err := Marshal(idx)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := Assemble(tc.entries)
			b2, d2, err := Marshal(again)
			if err != nil {
				t.Fatal(err)
			}
			if string(b1) != string(b2) || !reflect.DeepEqual(d1, d2) {
				t.Errorf("not deterministic:\n%s\n%s", b1, b2)
			}
			if d1.MediaType != ocispec.MediaTypeImageIndex || d1.Digest != digest.FromBytes(b1) || d1.Size != int64(len(b1)) {
				t.Errorf("descriptor %+v does not describe the bytes", d1)
			}
			if d1.Platform != nil || d1.Annotations != nil || d1.Data != nil {
				t.Errorf("descriptor carries extra fields: %+v", d1)
			}
			if !strings.HasPrefix(string(b1), `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`) {
				t.Errorf("unexpected encoding: %s", b1)
			}
			var back ocispec.Index
			if err := json.Unmarshal(b1, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, idx) {
				t.Errorf("round trip differs:\n got %+v\nwant %+v", back, idx)
			}
		})
	}
}

func TestPlatformKey(t *testing.T) {
	tests := []struct {
		a, b  ocispec.Platform
		equal bool
	}{
		{a: ocispec.Platform{OS: "linux", Architecture: "arm64"}, b: ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, equal: true},
		{a: ocispec.Platform{OS: "linux", Architecture: "amd64"}, b: ocispec.Platform{OS: "linux", Architecture: "amd64", Variant: "v1"}, equal: true},
		{a: ocispec.Platform{OS: "linux", Architecture: "amd64"}, b: ocispec.Platform{OS: "linux", Architecture: "amd64", Variant: "v3"}},
		{a: ocispec.Platform{OS: "linux", Architecture: "arm"}, b: ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
		{a: ocispec.Platform{OS: "linux", Architecture: "arm64"}, b: ocispec.Platform{OS: "windows", Architecture: "arm64"}},
		{a: ocispec.Platform{OS: "windows", Architecture: "amd64", OSVersion: "10.0.17763.1"}, b: ocispec.Platform{OS: "windows", Architecture: "amd64", OSVersion: "10.0.20348.1"}},
		{a: ocispec.Platform{OS: "linux", Architecture: "amd64", OSFeatures: []string{"a", "b"}}, b: ocispec.Platform{OS: "linux", Architecture: "amd64", OSFeatures: []string{"b", "a"}}, equal: true},
	}
	for _, tc := range tests {
		ka, kb := platformKey(&tc.a), platformKey(&tc.b)
		if (ka == kb) != tc.equal {
			t.Errorf("platformKey(%+v)=%q, platformKey(%+v)=%q; want equal=%v", tc.a, ka, tc.b, kb, tc.equal)
		}
	}
}
