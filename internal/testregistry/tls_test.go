package testregistry

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/mcbuild/mcbuild/internal/oci"
)

// TestDistributionTLS: WithTLS serves HTTPS with the NewTLS certificate:
// trusted through the CA pool, refused without it, and plain HTTP is gone.
func TestDistributionTLS(t *testing.T) {
	ca := NewTLS(t)
	r := StartDistribution(t, WithTLS(ca.CertFile, ca.KeyFile))
	if !strings.HasPrefix(r.URL, "https://127.0.0.1:") {
		t.Fatalf("URL = %q, want https://127.0.0.1:<port>", r.URL)
	}
	trusted := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig()}}
	resp, err := trusted.Get(r.URL + "/v2/")
	if err != nil {
		t.Fatalf("GET /v2/ trusting the test CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/: %s", resp.Status)
	}
	if _, err := http.Get(r.URL + "/v2/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("GET without the CA = %v, want a certificate error", err)
	}
	if resp, err := http.Get("http://" + r.Host + "/v2/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered 200 on a TLS registry")
		}
	}
	// An oras client pushes and resolves through it.
	repo, err := remote.NewRepository(r.Repo("ns/tls"))
	if err != nil {
		t.Fatal(err)
	}
	repo.Client = &auth.Client{Client: trusted}
	ctx := context.Background()
	d := pushBlob(ctx, t, repo, oci.MediaTypeEmptyJSON, []byte("{}"))
	if ok, err := repo.Exists(ctx, d); err != nil || !ok {
		t.Fatalf("Exists after push = %v, %v", ok, err)
	}
}
