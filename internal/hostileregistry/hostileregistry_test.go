package hostileregistry

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
)

func repo(t *testing.T, r *Registry, name string) *remote.Repository {
	t.Helper()
	repo, err := remote.NewRepository(r.Repo(name))
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	return repo
}

// TestServesAndAcceptsContent: what is stored reads back through oras, and
// what oras pushes (blobs, a manifest with a subject, a tag) is stored and
// listed as a referrer.
func TestServesAndAcceptsContent(t *testing.T) {
	ctx := context.Background()
	r := Start(t)
	doc := r.Put(ocispec.MediaTypeImageIndex, []byte(`{"schemaVersion":2,"manifests":[]}`))
	if err := r.Tag(ctx, doc, "v1"); err != nil {
		t.Fatal(err)
	}
	rp := repo(t, r, "ns/app")
	got, err := rp.Resolve(ctx, "v1")
	if err != nil || got.Digest != doc.Digest || got.MediaType != doc.MediaType || got.Size != doc.Size {
		t.Fatalf("Resolve = %+v, %v; want %+v", got, err, doc)
	}
	if b, err := content.FetchAll(ctx, rp, doc); err != nil || int64(len(b)) != doc.Size {
		t.Fatalf("FetchAll = %d bytes, %v", len(b), err)
	}

	artifact, err := oras.PackManifest(ctx, rp, oras.PackManifestVersion1_1, "application/x-test",
		oras.PackManifestOptions{Subject: &doc})
	if err != nil {
		t.Fatalf("pushing an artifact: %v", err)
	}
	if err := rp.Tag(ctx, artifact, "art"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.Exists(ctx, artifact); !ok {
		t.Fatal("the pushed artifact is not stored")
	}
	var refs []ocispec.Descriptor
	if err := rp.Referrers(ctx, doc, "application/x-test", func(p []ocispec.Descriptor) error {
		refs = append(refs, p...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(refs) != 1 || refs[0].Digest != artifact.Digest {
		t.Fatalf("referrers = %v, want the artifact %s", refs, artifact.Digest)
	}
	var tags []string
	if err := rp.Tags(ctx, "", func(ts []string) error { tags = append(tags, ts...); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(tags, ",") != "art,v1" {
		t.Errorf("tags %v", tags)
	}
	if r.Count("PUT", "manifests") != 2 || r.Count("HEAD", "manifests") == 0 { // the artifact, then the tag
		t.Errorf("counts %v", r.Counts())
	}
}

// TestHostileAnswers: lies and stalls are served as set.
func TestHostileAnswers(t *testing.T) {
	ctx := context.Background()
	r := Start(t)
	rp := repo(t, r, "ns/app")
	doc := r.Put(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2}`))

	r.Answer(doc.Digest, Answer{Body: []byte(`{"schemaVersion":3}`)})
	if _, err := content.FetchAll(ctx, rp, doc); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("other bytes: %v, want a digest mismatch", err)
	}

	r.Answer(doc.Digest, Answer{Endless: true})
	if _, err := content.FetchAll(ctx, rp, doc); err == nil {
		t.Error("endless answer: no error")
	}

	r.Answer(doc.Digest, Answer{Stall: true})
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := content.FetchAll(sctx, rp, doc); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stall: %v, want the deadline", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("stall outlived the client's deadline: %v", el)
	}
	if r.Count("GET", "manifests") != 3 {
		t.Errorf("GET manifests %d, want 3", r.Count("GET", "manifests"))
	}
}

// TestEndlessReferrers: every page links to the next; a client bounded by
// pages stops.
func TestEndlessReferrers(t *testing.T) {
	ctx := context.Background()
	r := Start(t)
	r.SetReferrers(EndlessReferrers(50, "application/x-test"))
	rp := repo(t, r, "ns/app")
	rp.ReferrerListMaxPages = 7
	subject := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("s"), Size: 1}
	seen := map[digest.Digest]bool{}
	err := rp.Referrers(ctx, subject, "", func(p []ocispec.Descriptor) error {
		for _, d := range p {
			seen[d.Digest] = true
		}
		return nil
	})
	if !errors.Is(err, errdef.ErrTooManyPages) {
		t.Fatalf("err = %v, want too many pages", err)
	}
	if len(seen) != 7*50 || r.Count("GET", "referrers") != 7 {
		t.Errorf("%d distinct referrers in %d pages, want 350 in 7", len(seen), r.Count("GET", "referrers"))
	}
	if r.Sent() == 0 || !bytes.Contains([]byte(r.URL), []byte("127.0.0.1")) {
		t.Errorf("sent %d from %s", r.Sent(), r.URL)
	}
}
