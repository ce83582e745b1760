package oci

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
)

func TestFetchBounded(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	doc := []byte(`{"schemaVersion":2}`)
	good := content.NewDescriptorFromBytes(MediaTypeImageManifest, doc)
	if err := store.Push(ctx, good, strings.NewReader(string(doc))); err != nil {
		t.Fatal(err)
	}
	got, err := FetchBounded(ctx, store, good, MaxDocumentBytes, "manifest")
	if err != nil || string(got) != string(doc) {
		t.Fatalf("FetchBounded = %q, %v; want the document", got, err)
	}

	with := func(mod func(*ocispec.Descriptor)) ocispec.Descriptor {
		d := good
		mod(&d)
		return d
	}
	for _, tc := range []struct {
		name  string
		desc  ocispec.Descriptor
		limit int64
		parts []string
		size  bool // a *SizeError
	}{
		{name: "over the limit", desc: good, limit: good.Size - 1, size: true,
			parts: []string{"manifest " + good.Digest.String(), "size 19 is outside 1..18 bytes"}},
		{name: "empty", desc: with(func(d *ocispec.Descriptor) { d.Size = 0 }), limit: MaxDocumentBytes, size: true,
			parts: []string{"size 0 is outside 1..4194304 bytes"}},
		{name: "negative", desc: with(func(d *ocispec.Descriptor) { d.Size = -1 }), limit: MaxDocumentBytes, size: true,
			parts: []string{"size -1 is outside 1..4194304 bytes"}},
		{name: "bad digest", desc: with(func(d *ocispec.Descriptor) { d.Digest = digest.Digest("sha256:" + strings.Repeat("g", 200)) }), limit: MaxDocumentBytes,
			parts: []string{"manifest: invalid digest", `"sha256:ggg`}},
		{name: "missing", desc: with(func(d *ocispec.Descriptor) { d.Digest = digest.FromString("other") }), limit: MaxDocumentBytes,
			parts: []string{"fetching manifest " + digest.FromString("other").String(), "not found"}},
		{name: "wrong size", desc: with(func(d *ocispec.Descriptor) { d.Size++ }), limit: MaxDocumentBytes,
			parts: []string{"fetching manifest"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FetchBounded(ctx, store, tc.desc, tc.limit, "manifest")
			if err == nil {
				t.Fatal("no error")
			}
			for _, p := range tc.parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not mention %q", err, p)
				}
			}
			var se *SizeError
			if errors.As(err, &se) != tc.size {
				t.Errorf("error %q: *SizeError %v, want %v", err, !tc.size, tc.size)
			}
		})
	}
}

func TestCheckSize(t *testing.T) {
	if err := CheckSize("x", MaxDocumentBytes, MaxDocumentBytes); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	err := CheckSize("the subjects artifact", MaxDocumentBytes+1, MaxDocumentBytes)
	if want := "the subjects artifact: size 4194305 is outside 1..4194304 bytes"; err == nil || err.Error() != want {
		t.Errorf("over the limit: %v, want %q", err, want)
	}
}
