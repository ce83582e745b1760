package subjects

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

func repository(t *testing.T, ref string) *remote.Repository {
	t.Helper()
	s, err := registry.NewSession(registry.Options{TLSVerify: false})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Repository(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegistries(t *testing.T) {
	t.Setenv("REGISTRY_AUTH_FILE", "/nonexistent/auth.json") // no user credentials
	tests := []struct {
		name         string
		start        func(testing.TB) *testregistry.Registry
		referrersAPI bool
	}{
		{"distribution", func(t testing.TB) *testregistry.Registry { return testregistry.StartDistribution(t) }, false},
		{"olareg", testregistry.StartOlareg, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			reg := tt.start(t)
			name := reg.Repo("ns/app")
			repo := repository(t, name)
			fx := newFixture(t, repo, "integration")
			if err := repo.Tag(ctx, fx.index, "v1"); err != nil {
				t.Fatal(err)
			}
			art, err := Push(ctx, repo, New(name, fx.index, fx.entries), fx.index)
			if err != nil {
				t.Fatal(err)
			}

			// How the registry records the referrer.
			fallbackTag := "sha256-" + fx.index.Digest.Encoded()
			fallback, ferr := repository(t, name).Resolve(ctx, fallbackTag)
			if tt.referrersAPI {
				if ferr == nil {
					t.Errorf("fallback tag %s exists on a registry with the referrers API", fallbackTag)
				}
				resp, err := http.Get(reg.URL + "/v2/ns/app/referrers/" + fx.index.Digest.String())
				if err != nil {
					t.Fatal(err)
				}
				var list ocispec.Index
				err = json.NewDecoder(resp.Body).Decode(&list)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("referrers API: %d, %v", resp.StatusCode, err)
				}
				if len(list.Manifests) != 1 || list.Manifests[0].Digest != art.Digest || list.Manifests[0].ArtifactType != ArtifactType {
					t.Fatalf("referrers API lists %+v, want %s with artifactType %s", list.Manifests, art.Digest, ArtifactType)
				}
			} else {
				if ferr != nil {
					t.Fatalf("fallback tag %s: %v", fallbackTag, ferr)
				}
				raw, err := content.FetchAll(ctx, repo, fallback)
				if err != nil {
					t.Fatal(err)
				}
				var list ocispec.Index
				if err := json.Unmarshal(raw, &list); err != nil {
					t.Fatal(err)
				}
				if len(list.Manifests) != 1 || list.Manifests[0].Digest != art.Digest {
					t.Fatalf("fallback tag index lists %+v, want %s", list.Manifests, art.Digest)
				}
			}

			// A fresh client (no cached referrers capability) finds and reads it.
			fresh := repository(t, name)
			found, err := Find(ctx, fresh, fx.index)
			if err != nil || found.Digest != art.Digest {
				t.Fatalf("Find = %s, %v; want %s", found.Digest, err, art.Digest)
			}
			for _, ref := range []string{name + ":v1", name + "@" + fx.index.Digest.String(), name + "@" + art.Digest.String(), "v1"} {
				got, err := ResolveArtifact(ctx, repository(t, name), ref)
				if err != nil || got.Digest != art.Digest {
					t.Errorf("ResolveArtifact(%s) = %s, %v; want %s", ref, got.Digest, err, art.Digest)
				}
			}
			doc, _, err := Fetch(ctx, fresh, found)
			if err != nil {
				t.Fatal(err)
			}
			if doc.Subjects[0].Name != name || len(doc.Subjects) != 5 {
				t.Fatalf("document = %+v", doc)
			}
			ms, err := Verify(ctx, fresh, name, found)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 0 {
				t.Fatalf("Verify = %v, want no mismatch", mismatchStrings(ms))
			}

			// Tampered artifacts, pushed next to the good one.
			stranger := fx.entries[0].Descriptor.Digest // replaced below by an unknown digest
			extra := New(name, fx.index, fx.entries)
			extra.Subjects = append(extra.Subjects, Subject{Name: name, Digest: map[string]string{"sha256": strings.Repeat("0", 64)}})
			tampers := []struct {
				name string
				doc  Document
				want []string
			}{
				{"extra digest", extra, []string{"in the subjects but not in the index: sha256:" + strings.Repeat("0", 64)}},
				{"missing manifest", New(name, fx.index, fx.entries[1:]), []string{"listed in the index but not in the subjects: " + stranger.String() + " (linux/amd64)"}},
			}
			var last ocispec.Descriptor
			for _, tp := range tampers {
				bad, err := push(ctx, repo, tp.doc, fx.index)
				if err != nil {
					t.Fatal(err)
				}
				last = bad
				ms, err := Verify(ctx, repository(t, name), name, bad)
				if err != nil {
					t.Fatal(err)
				}
				if got := mismatchStrings(ms); !reflect.DeepEqual(got, tp.want) {
					t.Errorf("%s: Verify = %v, want %v", tp.name, got, tp.want)
				}
			}
			if !tt.referrersAPI {
				// Fallback tag: the referrers are listed in push order.
				found, err := Find(ctx, repository(t, name), fx.index)
				if err != nil || found.Digest != last.Digest {
					t.Errorf("Find with 3 artifacts = %s, %v; want the last pushed %s", found.Digest, err, last.Digest)
				}
			}

			// A manifest deleted from the registry.
			gone := fx.entries[3].Descriptor
			if err := repo.Delete(ctx, gone); err != nil {
				t.Fatalf("deleting %s: %v", gone.Digest, err)
			}
			ms, err = Verify(ctx, repository(t, name), name, art)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"missing in registry: " + gone.Digest.String() + " (linux/arm64)"}
			if got := mismatchStrings(ms); !reflect.DeepEqual(got, want) {
				t.Fatalf("Verify after delete = %v, want %v", got, want)
			}

			// Something else than a subjects artifact.
			if _, _, err := Fetch(ctx, repo, fx.entries[0].Descriptor); err == nil || !strings.Contains(err.Error(), "not a subjects artifact") {
				t.Fatalf("Fetch of an image manifest = %v, want 'not a subjects artifact'", err)
			}
		})
	}
}
