package index

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/hostileregistry"
	"github.com/mcbuild/mcbuild/internal/oci"
)

// hostile starts a hostile registry and an oras repository reading it.
func hostile(t *testing.T) (*hostileregistry.Registry, *remote.Repository) {
	t.Helper()
	reg := hostileregistry.Start(t)
	repo, err := remote.NewRepository(reg.Repo("hostile/app"))
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	return reg, repo
}

// collectErr runs Collect on root and checks its error mentions every part
// (success when there are none); it returns the entries and how long it took.
func collectErr(t *testing.T, ctx context.Context, repo *remote.Repository, root ocispec.Descriptor, parts ...string) ([]Entry, time.Duration) {
	t.Helper()
	start := time.Now()
	entries, _, err := Collect(ctx, repo, []ocispec.Descriptor{root})
	took := time.Since(start)
	switch {
	case len(parts) == 0 && err != nil:
		t.Fatalf("Collect: %v", err)
	case len(parts) > 0 && err == nil:
		t.Fatalf("Collect = %v, want an error", summary(entries))
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
	return entries, took
}

// TestCollectRepeatedNesting: an index nested 4 deep, each level listing
// the next 1000 times (5 documents, 10^12 paths), is walked once per
// distinct document: 5 manifest GETs, 4000 descriptors, well under a second.
func TestCollectRepeatedNesting(t *testing.T) {
	reg, repo := hostile(t)
	leaf := reg.Image("linux/amd64", "leaf", 0)
	root := reg.Nested(leaf, oci.MaxIndexDepth, 1000)
	entries, took := collectErr(t, context.Background(), repo, root)
	if len(entries) != 1 || entries[0].Descriptor.Digest != leaf.Digest {
		t.Fatalf("entries %v, want the one image", summary(entries))
	}
	if n := reg.Count("GET", "manifests"); n != 5 {
		t.Errorf("%d manifest GETs, want 5 (each document once)", n)
	}
	t.Logf("4 levels x 1000: %v, requests %v", took, reg.Counts())
	if took > 5*time.Second {
		t.Errorf("took %v, want well under 5s", took)
	}
}

// TestCollectWalkLimits: the walk's budget is the whole walk's, whatever
// each document holds.
func TestCollectWalkLimits(t *testing.T) {
	t.Run("descriptors", func(t *testing.T) {
		reg, repo := hostile(t)
		// 11 distinct indexes of 1000+ entries each: > MaxWalkDescriptors.
		root := reg.Wide(reg.Image("linux/amd64", "d", 0), 11, 1000)
		collectErr(t, context.Background(), repo, root, "MaxWalkDescriptors", "more than 10000 descriptors", "index sha256:")
	})
	t.Run("bytes", func(t *testing.T) {
		reg, repo := hostile(t)
		// 20 distinct images of ~4 MB: 80 MB > MaxWalkBytes.
		root := reg.Index(reg.Images(20, oci.MaxDocumentBytes-1000)...)
		collectErr(t, context.Background(), repo, root, "MaxWalkBytes", "more than 64 MiB", "manifest sha256:")
		gets := reg.Count("GET", "manifests")
		if gets > 1+oci.MaxWalkBytes/(oci.MaxDocumentBytes-1000) {
			t.Errorf("%d manifest GETs, want at most %d", gets, 1+oci.MaxWalkBytes/(oci.MaxDocumentBytes-1000))
		}
		if sent := reg.Sent(); sent > oci.MaxWalkBytes {
			t.Errorf("%d bytes sent, want at most MaxWalkBytes", sent)
		}
	})
	t.Run("depth through a shared index", func(t *testing.T) {
		// inner (2 levels) is walked at depth 1 first, fine; then listed
		// at depth 3, where its 2 levels would make 5.
		reg, repo := hostile(t)
		inner := reg.Nested(reg.Image("linux/amd64", "deep", 0), 2, 1)
		root := reg.Index(inner, reg.Index(reg.Index(inner)))
		collectErr(t, context.Background(), repo, root, inner.Digest.String(), "nested more than 4 levels", "MaxIndexDepth")
	})
	t.Run("same index in two inputs", func(t *testing.T) {
		reg, repo := hostile(t)
		idx := reg.Index(reg.Image("linux/amd64", "twice", 0))
		entries, _, err := Collect(context.Background(), repo, []ocispec.Descriptor{idx, reg.Index(idx)})
		if err != nil || len(entries) != 1 {
			t.Fatalf("Collect = %v, %v; want the one image", summary(entries), err)
		}
	})
}

// TestCollectLyingDocuments: a document served with more bytes than it
// declares, endlessly, or stalled after its headers is refused without
// reading more than it declared, and a stall ends with the context.
func TestCollectLyingDocuments(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer hostileregistry.Answer
		parts  []string
	}{
		{"longer than declared", hostileregistry.Answer{Body: make([]byte, 10<<20)}, []string{"fetching manifest"}},
		{"endless", hostileregistry.Answer{Endless: true}, []string{"fetching manifest"}},
		{"stall", hostileregistry.Answer{Stall: true}, []string{"fetching manifest", "deadline"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, repo := hostile(t)
			img := reg.Image("linux/amd64", "lie", 0)
			reg.Answer(img.Digest, tc.answer)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, took := collectErr(t, ctx, repo, reg.Index(img), append(tc.parts, img.Digest.String())...)
			if took > 5*time.Second {
				t.Errorf("took %v", took)
			}
			// What the client read is bounded; what the server could push
			// into socket buffers before the client hung up is a few MiB.
			if sent := reg.Sent(); sent > 16<<20 && tc.answer.Body == nil {
				t.Errorf("%d bytes sent", sent)
			}
		})
	}
}

// TestCollectCancelled: a cancelled context stops the walk before any
// fetch.
func TestCollectCancelled(t *testing.T) {
	reg, repo := hostile(t)
	root := reg.Nested(reg.Image("linux/amd64", "c", 0), 3, 10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := Collect(ctx, repo, []ocispec.Descriptor{root})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := reg.Count("GET", "manifests"); n != 0 {
		t.Errorf("%d GETs after cancellation", n)
	}
}
