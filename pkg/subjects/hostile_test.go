package subjects

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/hostileregistry"
	"github.com/mcbuild/mcbuild/internal/oci"
)

const hostileRepo = "hostile/app"

// hostile starts a hostile registry and an oras repository reading it; name
// is the repository's full name, as entries carry it.
func hostile(t *testing.T) (reg *hostileregistry.Registry, repo *remote.Repository, name string) {
	t.Helper()
	reg = hostileregistry.Start(t)
	repo, err := remote.NewRepository(reg.Repo(hostileRepo))
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	return reg, repo, reg.Repo(hostileRepo)
}

// manifests is descs as New's input (gzip images).
func manifests(descs []ocispec.Descriptor) []Manifest {
	out := make([]Manifest, len(descs))
	for i, d := range descs {
		out[i] = Manifest{Descriptor: d, Compression: string(formats.Gzip)}
	}
	return out
}

// TestFindEndlessReferrers: a referrers API that always links to a next
// page is read for a bounded number of pages, keeping only subjects
// artifacts, and stops with the context.
func TestFindEndlessReferrers(t *testing.T) {
	subject := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("index"), Size: 100}
	for _, tc := range []struct {
		name     string
		pages    hostileregistry.ReferrersFunc
		timeout  time.Duration
		parts    []string
		maxPages int
	}{
		{"2000 subjects artifacts a page", hostileregistry.EndlessReferrers(2000, ArtifactType), 0,
			[]string{"more than 10000 referrers", "limit MaxReferrers", subject.Digest.String()}, oci.MaxReferrers/2000 + 1},
		{"2000 other artifacts a page", hostileregistry.EndlessReferrers(2000, "application/vnd.example.sbom"), 0,
			[]string{"more than 100 pages", "limit MaxReferrersPages", subject.Digest.String()}, oci.MaxReferrersPages},
		{"slow pages, a deadline", hostileregistry.Slow(hostileregistry.EndlessReferrers(10, "application/vnd.example.sbom"), 50*time.Millisecond), 500 * time.Millisecond,
			[]string{"deadline exceeded"}, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, repo, _ := hostile(t)
			reg.SetReferrers(tc.pages)
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			start := time.Now()
			_, err := FindAll(ctx, repo, subject)
			took := time.Since(start)
			if err == nil {
				t.Fatal("FindAll succeeded")
			}
			for _, p := range tc.parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not mention %q", err, p)
				}
			}
			pages := reg.Count("GET", "referrers")
			t.Logf("%d pages, %d bytes, %v: %v", pages, reg.Sent(), took, err)
			if pages > tc.maxPages || took > 10*time.Second {
				t.Errorf("%d pages in %v, want at most %d pages", pages, took, tc.maxPages)
			}
		})
	}
}

// TestFindAllSeveral: every distinct subjects artifact is returned, in
// order; more than MaxArtifacts is an error.
func TestFindAllSeveral(t *testing.T) {
	ctx := context.Background()
	reg, repo, _ := hostile(t)
	subject := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("index"), Size: 100}
	page := hostileregistry.EndlessReferrers(MaxArtifacts+1, ArtifactType)
	reg.SetReferrers(func(s digest.Digest, n int) ([]ocispec.Descriptor, bool) {
		all, _ := page(s, 0)
		return append(all[:2], all[0]), false // two, the first listed twice
	})
	got, err := FindAll(ctx, repo, subject)
	if err != nil || len(got) != 2 {
		t.Fatalf("FindAll = %v, %v; want the 2 distinct artifacts", got, err)
	}
	reg.SetReferrers(func(s digest.Digest, n int) ([]ocispec.Descriptor, bool) {
		all, _ := page(s, 0)
		return all, false
	})
	if _, err := FindAll(ctx, repo, subject); err == nil || !strings.Contains(err.Error(), "limit MaxArtifacts") {
		t.Fatalf("FindAll of %d artifacts: %v, want the MaxArtifacts limit", MaxArtifacts+1, err)
	}
}

// TestVerifyRepeatedChild: a root index listing one child index 200 times
// reads the child once; a child listing more descriptors than a walk may
// visit is refused, naming the limit, after one read of it.
func TestVerifyRepeatedChild(t *testing.T) {
	ctx := context.Background()
	t.Run("matches", func(t *testing.T) {
		reg, repo, name := hostile(t)
		imgs := reg.Images(20, 0)
		child := reg.Index(imgs...)
		root := reg.Index(hostileregistry.Repeat(child, 200)...)
		art, err := Push(ctx, reg, New(name, root, append([]Manifest{{Descriptor: child}}, manifests(imgs)...)), root)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := Verify(ctx, repo, name, art)
		if err != nil || len(ms) != 0 {
			t.Fatalf("Verify = %v, %v", mismatchStrings(ms), err)
		}
		if n := reg.Count("GET", "manifests"); n != 3 {
			t.Errorf("%d manifest GETs, want 3: the artifact, the root, the child once", n)
		}
	})
	t.Run("child over the descriptor limit", func(t *testing.T) {
		reg, repo, name := hostile(t)
		img := reg.Image("linux/amd64", "one", 0)
		child := reg.Index(hostileregistry.Repeat(img, oci.MaxWalkDescriptors)...) // ~2.3 MB
		root := reg.Index(hostileregistry.Repeat(child, 200)...)
		art, err := Push(ctx, reg, New(name, root, []Manifest{{Descriptor: child}}), root)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Verify(ctx, repo, name, art)
		if err == nil || !strings.Contains(err.Error(), "limit MaxWalkDescriptors") || !strings.Contains(err.Error(), child.Digest.String()) {
			t.Fatalf("Verify: %v, want the MaxWalkDescriptors limit naming the child %s", err, child.Digest)
		}
		if n := reg.Count("GET", "manifests"); n != 3 {
			t.Errorf("%d manifest GETs, want 3", n)
		}
	})
	t.Run("child indexes over the byte limit", func(t *testing.T) {
		reg, repo, name := hostile(t)
		var children []ocispec.Descriptor
		for i := range 20 { // 20 distinct ~3.9 MB indexes
			pad := reg.Put(ocispec.MediaTypeImageIndex, fmt.Appendf(nil, `{"schemaVersion":2,"manifests":[],"annotations":{"pad":"%d%s"}}`, i, strings.Repeat("x", oci.MaxDocumentBytes-1000)))
			children = append(children, pad)
		}
		root := reg.Index(children...)
		art, err := Push(ctx, reg, New(name, root, nil), root)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Verify(ctx, repo, name, art)
		if err == nil || !strings.Contains(err.Error(), "limit MaxWalkBytes") {
			t.Fatalf("Verify: %v, want the MaxWalkBytes limit", err)
		}
		if sent := reg.Sent(); sent > oci.MaxWalkBytes+oci.MaxDocumentBytes {
			t.Errorf("%d bytes read", sent)
		}
	})
}

// TestVerifyForged: an artifact whose entries name another repository does
// not verify, one mismatch per entry; with a genuine artifact beside it,
// FindAll returns both, so a verifier sees the forged one.
func TestVerifyForged(t *testing.T) {
	ctx := context.Background()
	reg, repo, name := hostile(t)
	imgs := reg.Images(2, 0)
	root := reg.Index(imgs...)
	genuine, err := Push(ctx, reg, New(name, root, manifests(imgs)), root)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := Push(ctx, reg, New("quay.io/victim/app", root, manifests(imgs)), root)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := Verify(ctx, repo, name, forged)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("Verify of the forged artifact = %v, want 3 (one per entry)", mismatchStrings(ms))
	}
	for _, m := range ms {
		if m.Kind != KindRepository || !strings.Contains(m.String(), `"quay.io/victim/app"`) || !strings.Contains(m.String(), name) {
			t.Errorf("mismatch %q, want a repository mismatch naming both", m)
		}
	}
	if ms, err := Verify(ctx, repo, name, genuine); err != nil || len(ms) != 0 {
		t.Fatalf("Verify of the genuine artifact = %v, %v", mismatchStrings(ms), err)
	}
	all, err := FindAll(ctx, repo, root)
	if err != nil || len(all) != 2 {
		t.Fatalf("FindAll = %v, %v; want both artifacts", all, err)
	}
	if other := OtherRepository(New("quay.io/victim/app", root, nil), name+":v1"); len(other) != 1 {
		t.Errorf("OtherRepository = %v", other)
	}
	if ms, err := Verify(ctx, repo, "quay.io/victim/app", forged); err != nil || len(ms) != 0 {
		// In the repository it names, the same document is consistent.
		t.Errorf("Verify as quay.io/victim/app = %v, %v", mismatchStrings(ms), errors.Unwrap(err))
	}
}
