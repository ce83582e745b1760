package registry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/olareg/olareg"
	"github.com/olareg/olareg/config"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// isolate keeps the user's own auth files and per-host cert dirs out of a
// test.
func isolate(t *testing.T) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_RUNTIME_DIR", home)
	t.Setenv("DOCKER_CONFIG", home)
	t.Setenv("REGISTRY_AUTH_FILE", "")
}

func writeAuthFile(t *testing.T, entries map[string][2]string) string {
	t.Helper()
	auths := map[string]map[string]string{}
	for k, up := range entries {
		auths[k] = map[string]string{"auth": b64(up[0], up[1])}
	}
	data, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// session is NewSession(o), which must succeed.
func session(t testing.TB, o Options) *Session {
	t.Helper()
	s, err := NewSession(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pushTag pushes a small artifact to repo and tags it, then resolves the tag.
func pushTag(ctx context.Context, t *testing.T, repo string, o Options) error {
	t.Helper()
	r, err := session(t, o).Repository(ctx, repo)
	if err != nil {
		return err
	}
	desc, err := oras.PackManifest(ctx, r, oras.PackManifestVersion1_1, "application/vnd.mcbuild.test",
		oras.PackManifestOptions{ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: "2000-01-01T00:00:00Z"}})
	if err != nil {
		return err
	}
	if err := r.Tag(ctx, desc, "t"); err != nil {
		return err
	}
	got, err := r.Resolve(ctx, "t")
	if err != nil {
		return err
	}
	if got.Digest != desc.Digest {
		t.Fatalf("resolved %s, pushed %s", got.Digest, desc.Digest)
	}
	return nil
}

func TestTestRegistries(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		start func(testing.TB) *testregistry.Registry
	}{
		{"distribution", func(t testing.TB) *testregistry.Registry { return testregistry.StartDistribution(t) }},
		{"olareg", testregistry.StartOlareg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := tt.start(t)
			insecure := Options{TLSVerify: false}
			if err := session(t, insecure).Ping(ctx, reg.Host); err != nil {
				t.Fatalf("Ping insecure: %v", err)
			}
			r, err := session(t, insecure).Repository(ctx, reg.Repo("ns/app"))
			if err != nil {
				t.Fatal(err)
			}
			if !r.PlainHTTP {
				t.Fatal("PlainHTTP = false for a plain HTTP registry with TLSVerify=false")
			}
			if !r.SkipReferrersGC {
				t.Fatal("SkipReferrersGC = false")
			}
			if err := pushTag(ctx, t, reg.Repo("ns/app"), insecure); err != nil {
				t.Fatalf("push: %v", err)
			}
			err = session(t, Options{TLSVerify: true}).Ping(ctx, reg.Host)
			var te *TLSError
			if !errors.As(err, &te) || te.Problem != PlainHTTPOnly || !strings.Contains(err.Error(), reg.Host) || !strings.Contains(err.Error(), "plain HTTP") {
				t.Fatalf("Ping with TLS verify on a plain HTTP registry = %v, want a TLSError (PlainHTTPOnly) naming it", err)
			}
		})
	}
}

func TestRepositoryRejectsReference(t *testing.T) {
	isolate(t)
	for _, ref := range []string{"127.0.0.1:1/a:tag", "127.0.0.1:1/a@sha256:" + strings.Repeat("0", 64), "not a ref"} {
		if _, err := session(t, Options{TLSVerify: true}).Repository(context.Background(), ref); err == nil {
			t.Errorf("Repository(%q) = nil error, want one", ref)
		}
	}
}

func TestPingUnreachable(t *testing.T) {
	isolate(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	for _, verify := range []bool{true, false} {
		err := session(t, Options{TLSVerify: verify}).Ping(context.Background(), host)
		if err == nil || !strings.Contains(err.Error(), "registry "+host+" unreachable") {
			t.Errorf("TLSVerify=%v: Ping = %v, want 'registry %s unreachable'", verify, err, host)
		}
	}
}

// tlsRegistry serves olareg over HTTPS on 127.0.0.1 with httptest's
// self-signed certificate; clientCAs, when set, are required of clients.
func tlsRegistry(t *testing.T, clientCAs *x509.CertPool) (host string, caPEM []byte) {
	t.Helper()
	h := olareg.New(config.Config{Storage: config.ConfigStorage{StoreType: config.StoreMem}})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	if clientCAs != nil {
		srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	}
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); h.Close() })
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return strings.TrimPrefix(srv.URL, "https://"), caPEM
}

func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTLS(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	host, caPEM := tlsRegistry(t, nil)
	caDir := t.TempDir()
	writeFile(t, caDir, "ca.crt", caPEM)
	otherDir := t.TempDir()
	writeFile(t, otherDir, "README", []byte("no certificates here"))

	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"default refuses self-signed", Options{TLSVerify: true}, "TLS certificate not trusted"},
		{"cert dir without the CA", Options{TLSVerify: true, CertDir: otherDir}, "TLS certificate not trusted"},
		{"cert dir with the CA", Options{TLSVerify: true, CertDir: caDir}, ""},
		{"tls verify off", Options{TLSVerify: false}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := session(t, tt.opts).Ping(ctx, host)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Ping = %v", err)
				}
				if err := pushTag(ctx, t, host+"/ns/app", tt.opts); err != nil {
					t.Fatalf("push: %v", err)
				}
				r, err := session(t, tt.opts).Repository(ctx, host+"/ns/app")
				if err != nil {
					t.Fatal(err)
				}
				if r.PlainHTTP {
					t.Fatal("PlainHTTP = true for an HTTPS registry")
				}
				return
			}
			var te *TLSError
			if !errors.As(err, &te) || te.Problem != UntrustedCertificate || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), host) {
				t.Fatalf("Ping = %v, want a TLSError (UntrustedCertificate) naming %s and containing %q", err, host, tt.wantErr)
			}
			t.Logf("Ping: %v", err)
			if err := pushTag(ctx, t, host+"/ns/app", tt.opts); err == nil {
				t.Fatal("push succeeded without trusting the certificate")
			}
		})
	}
}

func TestPerHostCertDir(t *testing.T) {
	isolate(t)
	host, caPEM := tlsRegistry(t, nil)
	dir := filepath.Join(os.Getenv("HOME"), ".config", "containers", "certs.d", host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "ca.crt", caPEM)
	if err := session(t, Options{TLSVerify: true}).Ping(context.Background(), host); err != nil {
		t.Fatalf("Ping with CA in per-host certs.d: %v", err)
	}
}

func TestClientCertificate(t *testing.T) {
	isolate(t)
	// A client CA and a client certificate it signed.
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	cliKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cliTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "mcbuild"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	cliDER, err := x509.CreateCertificate(rand.Reader, cliTmpl, caCert, &cliKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(cliKey)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	host, serverCA := tlsRegistry(t, pool)

	withCert := t.TempDir()
	writeFile(t, withCert, "ca.crt", serverCA)
	writeFile(t, withCert, "client.cert", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cliDER}))
	writeFile(t, withCert, "client.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	withoutCert := t.TempDir()
	writeFile(t, withoutCert, "ca.crt", serverCA)

	tests := []struct {
		name    string
		dir     string
		wantErr string
	}{
		{"client pair offered", withCert, ""},
		{"no client pair", withoutCert, "refused our TLS client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := session(t, Options{TLSVerify: true, CertDir: tt.dir}).Ping(context.Background(), host)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Ping = %v, want error containing %q", err, tt.wantErr)
			}
			if te := (*TLSError)(nil); tt.wantErr != "" && (!errors.As(err, &te) || te.Problem != ClientCertificateRefused) {
				t.Fatalf("Ping = %v, want a TLSError (ClientCertificateRefused)", err)
			}
		})
	}
}

func TestBasicAuth(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	const user, pass = "alice", "Pa55-w0rd-do-not-print"
	reg := testregistry.StartDistribution(t, testregistry.WithHtpasswd(user, pass))
	good := writeAuthFile(t, map[string][2]string{reg.Host: {user, pass}})
	bad := writeAuthFile(t, map[string][2]string{reg.Host: {user, "wrong-" + pass}})
	// The repository-scoped entry wins over the registry-wide one.
	scoped := writeAuthFile(t, map[string][2]string{
		reg.Host:                {user, "wrong-" + pass},
		reg.Host + "/ns/scoped": {user, pass},
	})
	empty := writeAuthFile(t, map[string][2]string{"elsewhere.example": {user, pass}})

	tests := []struct {
		name     string
		authFile string
		repo     string
		pingErr  string // "" = Ping succeeds
		pushOK   bool
	}{
		{"right credentials", good, "ns/app", "", true},
		{"wrong credentials", bad, "ns/app", "credentials refused (401)", false},
		{"no credentials for the host", empty, "ns/app", "requires authentication (401)", false},
		// Ping uses the repository's credentials, as the push will.
		{"repository-scoped entry", scoped, "ns/scoped", "", true},
		{"repository-scoped entry, other repo", scoped, "ns/app", "credentials refused (401)", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{AuthFile: tt.authFile}
			err := session(t, o).Ping(ctx, reg.Repo(tt.repo))
			if tt.pingErr == "" && err != nil {
				t.Fatalf("Ping = %v", err)
			}
			if tt.pingErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.pingErr) || !strings.Contains(err.Error(), reg.Host) {
					t.Fatalf("Ping = %v, want error naming %s and containing %q", err, reg.Host, tt.pingErr)
				}
				t.Logf("Ping: %v", err)
				var ce *CredentialsError
				if !errors.As(err, &ce) || ce.AuthFile != tt.authFile {
					t.Fatalf("Ping = %v, want a CredentialsError naming the auth file", err)
				}
				for _, secret := range []string{pass, b64(user, pass), b64(user, "wrong-"+pass)} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("error text contains a secret: %v", err)
					}
				}
			}
			err = pushTag(ctx, t, reg.Repo(tt.repo), o)
			if tt.pushOK != (err == nil) {
				t.Fatalf("push = %v, want ok=%v", err, tt.pushOK)
			}
			if err != nil && strings.Contains(err.Error(), pass) {
				t.Fatalf("push error contains the password: %v", err)
			}
		})
	}
}

func TestPlainHTTPCachedPerHost(t *testing.T) {
	isolate(t)
	reg := testregistry.StartOlareg(t)
	o := Options{TLSVerify: false}
	if _, err := session(t, o).Repository(context.Background(), reg.Repo("a")); err != nil {
		t.Fatal(err)
	}
	v, ok := plainHTTP.Load(transportKey{reg.Host, false, ""})
	if !ok || v != true {
		t.Fatalf("plain HTTP cache for %s = %v, %v; want true", reg.Host, v, ok)
	}
	// Verified TLS never probes nor caches.
	if _, err := session(t, Options{TLSVerify: true}).Repository(context.Background(), reg.Repo("a")); err != nil {
		t.Fatal(err)
	}
	if _, ok := plainHTTP.Load(transportKey{reg.Host, true, ""}); ok {
		t.Fatal("a TLS-verified repository was probed for plain HTTP")
	}
}
