package testregistry

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
)

func pushBlob(ctx context.Context, t *testing.T, repo *remote.Repository, mediaType string, data []byte) ocispec.Descriptor {
	t.Helper()
	desc := content.NewDescriptorFromBytes(mediaType, data)
	if err := repo.Push(ctx, desc, strings.NewReader(string(data))); err != nil {
		t.Fatalf("push %s: %v", mediaType, err)
	}
	return desc
}

func pushManifest(ctx context.Context, t *testing.T, repo *remote.Repository, m ocispec.Manifest) ocispec.Descriptor {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return pushBlob(ctx, t, repo, ocispec.MediaTypeImageManifest, b)
}

func TestRegistries(t *testing.T) {
	tests := []struct {
		name          string
		start         func(testing.TB) *Registry
		referrersCode int
	}{
		{"distribution", func(t testing.TB) *Registry { return StartDistribution(t) }, http.StatusNotFound},
		{"olareg", StartOlareg, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			r := tt.start(t)
			if !strings.HasPrefix(r.Host, "127.0.0.1:") {
				t.Fatalf("Host = %q, want 127.0.0.1:<port>", r.Host)
			}
			if got, want := r.Repo("ns/app"), r.Host+"/ns/app"; got != want {
				t.Fatalf("Repo = %q, want %q", got, want)
			}
			repo, err := remote.NewRepository(r.Repo("ns/app"))
			if err != nil {
				t.Fatal(err)
			}
			repo.PlainHTTP = true

			cfg := pushBlob(ctx, t, repo, ocispec.MediaTypeEmptyJSON, []byte("{}"))
			layer := pushBlob(ctx, t, repo, ocispec.MediaTypeImageLayer, []byte("layer"))
			img := pushManifest(ctx, t, repo, ocispec.Manifest{
				Versioned: specs.Versioned{SchemaVersion: 2},
				MediaType: ocispec.MediaTypeImageManifest,
				Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfg.Digest, Size: cfg.Size},
				Layers:    []ocispec.Descriptor{layer},
			})
			if err := repo.Tag(ctx, img, "v1"); err != nil {
				t.Fatalf("tag: %v", err)
			}
			got, err := repo.Resolve(ctx, "v1")
			if err != nil || got.Digest != img.Digest {
				t.Fatalf("resolve v1 = %v, %v; want %s", got.Digest, err, img.Digest)
			}
			// A referrer of the image (manifest with subject).
			ref := pushManifest(ctx, t, repo, ocispec.Manifest{
				Versioned:    specs.Versioned{SchemaVersion: 2},
				MediaType:    ocispec.MediaTypeImageManifest,
				ArtifactType: "application/vnd.example.test",
				Config:       cfg,
				Layers:       []ocispec.Descriptor{ocispec.DescriptorEmptyJSON},
				Subject:      &img,
			})

			resp, err := http.Get(r.URL + "/v2/ns/app/referrers/" + img.Digest.String())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.referrersCode {
				t.Fatalf("referrers API status = %d, want %d", resp.StatusCode, tt.referrersCode)
			}
			if tt.referrersCode == http.StatusOK {
				var idx ocispec.Index
				if err := json.NewDecoder(resp.Body).Decode(&idx); err != nil {
					t.Fatal(err)
				}
				if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != ref.Digest {
					t.Fatalf("referrers = %+v, want only %s", idx.Manifests, ref.Digest)
				}
			}
		})
	}
}

func TestDistributionHtpasswd(t *testing.T) {
	// REGISTRY_* variables must not reach the registry (it would read
	// REGISTRY_AUTH_FILE as configuration and refuse to start).
	t.Setenv("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
	r := StartDistribution(t, WithHtpasswd("alice", "s3cret"))
	tests := []struct {
		user, pass string
		want       int
	}{
		{"", "", http.StatusUnauthorized},
		{"alice", "wrong", http.StatusUnauthorized},
		{"alice", "s3cret", http.StatusOK},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodGet, r.URL+"/v2/", nil)
		if tt.user != "" {
			req.SetBasicAuth(tt.user, tt.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET /v2/ as %q/%q = %d, want %d", tt.user, tt.pass, resp.StatusCode, tt.want)
		}
	}
}

func TestRegistryBinaryEnvMissing(t *testing.T) {
	t.Setenv(EnvBinary, "/nonexistent/registry")
	_, err := RegistryBinary()
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/registry") {
		t.Fatalf("err = %v, want one naming the missing path", err)
	}
}
