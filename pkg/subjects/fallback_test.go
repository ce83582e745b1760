package subjects

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/mcbuild/mcbuild/internal/faultproxy"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

func TestRefused(t *testing.T) {
	e := func(method, path string, status int, codes ...string) error {
		u, _ := url.Parse("http://r.example" + path)
		er := &errcode.ErrorResponse{Method: method, URL: u, StatusCode: status}
		for _, c := range codes {
			er.Errors = append(er.Errors, errcode.Error{Code: c})
		}
		return er
	}
	const m = "/v2/a/manifests/sha256:" + "00"
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"415", e(http.MethodPut, m, 415), true},
		{"400 MANIFEST_INVALID", e(http.MethodPut, m, 400, errcode.ErrorCodeManifestInvalid), true},
		{"400 UNSUPPORTED", e(http.MethodPut, m, 400, errcode.ErrorCodeUnsupported), true},
		{"400 without code", e(http.MethodPut, m, 400), true},
		{"wrapped", errors.Join(errors.New("pushing"), e(http.MethodPut, "/v2/a/manifests/sha256-00", 400)), true},
		{"400 MANIFEST_BLOB_UNKNOWN", e(http.MethodPut, m, 400, errcode.ErrorCodeManifestBlobUnknown), false},
		{"400 on a blob", e(http.MethodPut, "/v2/a/blobs/uploads/x", 400), false},
		{"GET", e(http.MethodGet, m, 400), false},
		{"403", e(http.MethodPut, m, 403, errcode.ErrorCodeDenied), false},
		{"503", e(http.MethodPut, m, 503), false},
		{"plain error", errors.New("400 manifest invalid"), false},
	}
	for _, tt := range tests {
		if got := Refused(tt.err); got != tt.want {
			t.Errorf("%s: Refused = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestFallbackMemory: the OCI 1.0 form is read, found and verified like
// the OCI 1.1 form.
func TestFallbackMemory(t *testing.T) {
	ctx := context.Background()
	store := &digestResolving{Store: memory.New(), known: map[string]ocispec.Descriptor{}}
	fx := newFixture(t, store, "fallback-memory")
	store.known[fx.index.Digest.String()] = fx.index
	doc := New("r.example/ns/app", fx.index, fx.entries)
	desc, err := pushFallback(ctx, store, doc, fx.index)
	if err != nil {
		t.Fatal(err)
	}
	if desc.ArtifactType != ArtifactType || desc.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("descriptor %+v", desc)
	}
	again, err := pushFallback(ctx, store, doc, fx.index)
	if err != nil || again.Digest != desc.Digest {
		t.Errorf("second push %s (%v), want the same %s", again.Digest, err, desc.Digest)
	}
	got, m, err := Fetch(ctx, store, desc)
	if err != nil {
		t.Fatal(err)
	}
	if !IsFallbackForm(m) || m.Subject != nil || m.ArtifactType != "" || m.Config.MediaType != ArtifactType {
		t.Errorf("manifest %+v is not the fallback form", m)
	}
	if len(got.Subjects) != len(doc.Subjects) {
		t.Errorf("document has %d entries, want %d", len(got.Subjects), len(doc.Subjects))
	}
	found, err := Find(ctx, store, fx.index)
	if err != nil || found.Digest != desc.Digest {
		t.Fatalf("Find = %v, %v; want %s", found.Digest, err, desc.Digest)
	}
	if err := store.Tag(ctx, fx.index, "v1"); err != nil {
		t.Fatal(err)
	}
	store.known[desc.Digest.String()] = desc
	for _, ref := range []string{"v1", desc.Digest.String(), FallbackTag(fx.index.Digest)} {
		r, err := ResolveArtifact(ctx, store, ref)
		if err != nil || r.Digest != desc.Digest {
			t.Errorf("ResolveArtifact(%s) = %v, %v; want %s", ref, r.Digest, err, desc.Digest)
		}
	}
	if mm, err := Verify(ctx, store, doc.Subjects[0].Name, desc); err != nil || len(mm) != 0 {
		t.Errorf("Verify = %v, %v", mismatchStrings(mm), err)
	}
	// A fallback artifact that leaves a manifest out is caught.
	short := doc
	short.Subjects = doc.Subjects[:len(doc.Subjects)-1]
	bad, err := pushForm(ctx, store, short, nil)
	if err != nil {
		t.Fatal(err)
	}
	mm, err := Verify(ctx, store, doc.Subjects[0].Name, bad)
	if err != nil || len(mm) != 1 || mm[0].Kind != KindNotInSubjects {
		t.Errorf("Verify of a short fallback artifact = %v, %v; want one not-in-subjects", mismatchStrings(mm), err)
	}
	// The fallback tag must describe the index it is named after.
	other := newFixture(t, store, "fallback-other")
	if err := store.Tag(ctx, desc, FallbackTag(other.index.Digest)); err != nil {
		t.Fatal(err)
	}
	if _, err := Find(ctx, store, other.index); err == nil || !strings.Contains(err.Error(), "describes") {
		t.Errorf("Find through a fallback tag naming another index: %v", err)
	}
}

func TestFallbackTag(t *testing.T) {
	d := digest.FromString("x")
	if got, want := FallbackTag(d), "sha256-"+d.Encoded()+".subjects"; got != want {
		t.Errorf("FallbackTag = %s, want %s", got, want)
	}
}

// TestPushOrFallbackRegistries: through a proxy that refuses manifests with
// a subject (and, on the referrers-API registry, those with an
// artifactType), PushOrFallback pushes the OCI 1.0 form; Find, Resolve and
// Verify work from the index. When both forms are refused, the error names
// both.
func TestPushOrFallbackRegistries(t *testing.T) {
	t.Setenv("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
	tests := []struct {
		name    string
		start   func(testing.TB) *testregistry.Registry
		refuse  string
		status  int
		errCode string
	}{
		{"distribution refuses subject", func(t testing.TB) *testregistry.Registry { return testregistry.StartDistribution(t) }, `"subject"`, 400, "MANIFEST_INVALID"},
		{"olareg refuses artifactType", testregistry.StartOlareg, `"artifactType"`, 415, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			reg := tt.start(t)
			p := faultproxy.Start(t, reg.URL)
			name := p.Host + "/ns/app"
			repo := repository(t, name)
			fx := newFixture(t, repo, "fallback-"+tt.name)
			if err := repo.Tag(ctx, fx.index, "v1"); err != nil {
				t.Fatal(err)
			}
			doc := New(name, fx.index, fx.entries)
			rule := p.Add(&faultproxy.Rule{Method: http.MethodPut, Path: `/manifests/`, Body: tt.refuse, Action: faultproxy.StatusCode(tt.status, tt.errCode)})
			pushed, err := PushOrFallback(ctx, repo, doc, fx.index)
			if err != nil {
				t.Fatal(err)
			}
			if !pushed.Fallback || !Refused(pushed.Refusal) || rule.Fired() != 1 {
				t.Fatalf("pushed %+v, rule fired %d: want the fallback after one refusal", pushed, rule.Fired())
			}
			tagged, err := repo.Resolve(ctx, FallbackTag(fx.index.Digest))
			if err != nil || tagged.Digest != pushed.Desc.Digest {
				t.Fatalf("fallback tag -> %v (%v), want %s", tagged.Digest, err, pushed.Desc.Digest)
			}
			fresh := repository(t, name) // no cached referrers state
			found, err := ResolveArtifact(ctx, fresh, name+":v1")
			if err != nil || found.Digest != pushed.Desc.Digest {
				t.Fatalf("ResolveArtifact(v1) = %v, %v", found.Digest, err)
			}
			if mm, err := Verify(ctx, fresh, name, found); err != nil || len(mm) != 0 {
				t.Errorf("Verify = %v, %v", mismatchStrings(mm), err)
			}

			// Refusing both forms: a clear error naming both refusals.
			p.Reset()
			p.Add(&faultproxy.Rule{Method: http.MethodPut, Path: `/manifests/sha256:`, Body: `vnd\.mcbuild\.subjects`, Action: faultproxy.StatusCode(400, "MANIFEST_INVALID")})
			other := newFixture(t, repo, "fallback-both-"+tt.name)
			_, err = PushOrFallback(ctx, repo, New(name, other.index, other.entries), other.index)
			if err == nil || !strings.Contains(err.Error(), "as an OCI 1.1 artifact") || !strings.Contains(err.Error(), "in the OCI 1.0 fallback form") {
				t.Fatalf("both refused: %v", err)
			}
		})
	}
}

// digestResolving is a memory store that also resolves the digests it was
// told about, as a registry resolves any digest (memory.Store resolves tags
// only).
type digestResolving struct {
	*memory.Store
	known map[string]ocispec.Descriptor
}

func (d *digestResolving) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	if desc, ok := d.known[ref]; ok {
		return desc, nil
	}
	return d.Store.Resolve(ctx, ref)
}
