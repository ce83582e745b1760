package referrer

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
)

const (
	spdx      = "application/spdx+json"
	cyclonedx = "application/vnd.cyclonedx+json"
	other     = "application/vnd.example.other"
)

// subject pushes a small manifest for artifacts to refer to.
func subject(t *testing.T, store *memory.Store) ocispec.Descriptor {
	t.Helper()
	raw, _ := json.Marshal(ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: EmptyConfig(), Layers: []ocispec.Descriptor{}})
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, raw)
	if err := store.Push(context.Background(), desc, bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	return desc
}

// TestPushAndList: artifacts of several types attached to one subject are
// listed by the types asked for, and only by them; each is the OCI 1.1 form.
func TestPushAndList(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	subj := subject(t, store)
	pushed := map[string]ocispec.Descriptor{}
	for _, typ := range []string{spdx, cyclonedx, other} {
		d, err := Push(ctx, store, Artifact{Type: typ, Data: []byte(`{"t":"` + typ + `"}`), What: typ}, &subj)
		if err != nil {
			t.Fatal(err)
		}
		if d.ArtifactType != typ || d.MediaType != ocispec.MediaTypeImageManifest {
			t.Errorf("pushed %+v, want an image manifest of artifactType %s", d, typ)
		}
		pushed[typ] = d
	}
	for _, tc := range []struct {
		types []string
		want  []string
	}{
		{[]string{spdx}, []string{spdx}},
		{[]string{spdx, cyclonedx}, []string{spdx, cyclonedx}},
		{[]string{"application/none"}, nil},
	} {
		got, err := List(ctx, store, subj, tc.types...)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[digest.Digest]bool{}
		for _, d := range got {
			seen[d.Digest] = true
		}
		if len(got) != len(tc.want) {
			t.Errorf("List(%v) = %d artifacts, want %d", tc.types, len(got), len(tc.want))
		}
		for _, w := range tc.want {
			if !seen[pushed[w].Digest] {
				t.Errorf("List(%v) lacks the %s artifact", tc.types, w)
			}
		}
	}
}

// TestFallbackForm: the OCI 1.0 form has no artifactType and no subject,
// its config media type is the artifact type, and it is tagged
// "sha256-<subject hex><suffix>", where FindFallback finds it.
func TestFallbackForm(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	subj := subject(t, store)
	a := Artifact{Type: spdx, Data: []byte(`{"spdxVersion":"SPDX-2.3"}`), FallbackSuffix: ".sbom", What: "SBOM"}
	if _, found, err := FindFallback(ctx, store, subj.Digest, a.FallbackSuffix); err != nil || found {
		t.Fatalf("FindFallback before the push: found %v, %v", found, err)
	}
	d, err := PushFallback(ctx, store, a, subj)
	if err != nil {
		t.Fatal(err)
	}
	if tag := FallbackTag(subj.Digest, ".sbom"); tag != "sha256-"+subj.Digest.Encoded()+".sbom" {
		t.Errorf("FallbackTag = %s", tag)
	}
	found, ok, err := FindFallback(ctx, store, subj.Digest, a.FallbackSuffix)
	if err != nil || !ok || found.Digest != d.Digest {
		t.Fatalf("FindFallback = %s, %v, %v; want %s", found.Digest, ok, err, d.Digest)
	}
	raw, err := content.FetchAll(ctx, store, found)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if !IsFallbackForm(m, spdx) || IsFallbackForm(m, cyclonedx) || m.Layers[0].MediaType != spdx {
		t.Errorf("manifest %+v: want the fallback form of %s", m, spdx)
	}
	if refs, err := List(ctx, store, subj, spdx); err != nil || len(refs) != 0 {
		t.Errorf("the fallback form is listed as a referrer: %v, %v", refs, err)
	}
	// The OCI 1.1 form of the same artifact differs only in those fields.
	p, err := Pack(a, &subj)
	if err != nil {
		t.Fatal(err)
	}
	var m11 ocispec.Manifest
	if err := json.Unmarshal(p.Manifest, &m11); err != nil {
		t.Fatal(err)
	}
	if m11.ArtifactType != spdx || m11.Subject == nil || m11.Subject.Digest != subj.Digest || m11.Config.MediaType != ocispec.MediaTypeEmptyJSON || m11.Layers[0].Digest != m.Layers[0].Digest {
		t.Errorf("OCI 1.1 form %+v: want artifactType, subject, the empty config and the same layer", m11)
	}
}
