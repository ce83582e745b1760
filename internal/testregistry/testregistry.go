// Package testregistry starts real OCI registries on 127.0.0.1 for tests.
//
// Two registries are offered, because they differ in the one way that matters
// to mcbuild's subjects artifact:
//
//   - [StartDistribution] runs the CNCF distribution v3 `registry` binary as a
//     child process (filesystem storage in a test temp dir, deletion enabled).
//     It has NO referrers API: GET /v2/<name>/referrers/<digest> answers 404,
//     so clients must use the `sha256-<hex>` fallback tag. It can require basic
//     auth (see [WithHtpasswd]). The binary is looked up in
//     $MCBUILD_REGISTRY_BIN, then PATH, then $(go env GOPATH)/bin/registry;
//     `make test` installs it. A missing binary fails the test, it never skips.
//   - [StartOlareg] runs olareg in-process under an httptest server (in-memory
//     storage, deletion enabled). It HAS the OCI 1.1 referrers API.
//
// Both speak plain HTTP, so clients must use them with TLS verification off
// (oras-go: remote.Repository.PlainHTTP = true), unless a distribution
// registry is started [WithTLS] (see [NewTLS] for a CA and a certificate made
// for the test). Both are stopped by t.Cleanup.
package testregistry

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/olareg/olareg"
	"github.com/olareg/olareg/config"
	"golang.org/x/crypto/bcrypt"
	"oras.land/oras-go/v2/registry/remote"
)

// Registry is a running test registry.
type Registry struct {
	// Host is "127.0.0.1:<port>", the registry part of a reference.
	Host string
	// URL is "http://127.0.0.1:<port>" ("https://" when started WithTLS).
	URL string
	// PID is the process id of a distribution registry (0 for olareg).
	PID int
}

// Repo returns a repository reference on this registry: Host + "/" + name.
func (r *Registry) Repo(name string) string { return r.Host + "/" + name }

// OpenRepo returns an oras client for ref ("host:port/name") speaking plain
// HTTP, as these registries do unless started [WithTLS].
func OpenRepo(t testing.TB, ref string) *remote.Repository {
	t.Helper()
	repo, err := remote.NewRepository(ref)
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	return repo
}

// Option changes how [StartDistribution] configures the registry.
type Option func(*distOptions)

type distOptions struct {
	htpasswd        map[string]string
	tlsCert, tlsKey string
	rootDir         string
}

// WithRootDirectory makes the distribution registry serve the filesystem
// storage in dir (storage.filesystem.rootdirectory), e.g. the images an
// earlier run pushed, instead of an empty temporary one.
func WithRootDirectory(dir string) Option {
	return func(o *distOptions) { o.rootDir = dir }
}

// WithTLS makes the distribution registry serve HTTPS only, with this PEM
// certificate (chain) and key (http.tls.certificate and http.tls.key).
func WithTLS(certFile, keyFile string) Option {
	return func(o *distOptions) { o.tlsCert, o.tlsKey = certFile, keyFile }
}

// WithHtpasswd makes the distribution registry require basic auth with this
// user and password (more than one pair may be given by repeating the option).
func WithHtpasswd(user, password string) Option {
	return func(o *distOptions) {
		if o.htpasswd == nil {
			o.htpasswd = map[string]string{}
		}
		o.htpasswd[user] = password
	}
}

// EnvBinary names the environment variable that overrides the path of the
// distribution registry binary.
const EnvBinary = "MCBUILD_REGISTRY_BIN"

// RegistryBinary returns the path of the distribution `registry` binary, or an
// error explaining how to install it.
func RegistryBinary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBinary, p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("registry"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "registry")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("distribution registry binary not found (looked at $" + EnvBinary +
		", PATH and $(go env GOPATH)/bin/registry); `make test` installs it, or run: " +
		"go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2")
}

// StartDistribution starts a distribution v3 registry on 127.0.0.1 and stops
// it when the test ends. It has no referrers API.
func StartDistribution(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	var o distOptions
	for _, opt := range opts {
		opt(&o)
	}
	bin, err := RegistryBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	auth := ""
	if len(o.htpasswd) > 0 {
		var b strings.Builder
		for user, pass := range o.htpasswd {
			h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s:%s\n", user, h)
		}
		pw := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(pw, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: mcbuild-test\n    path: %s\n", pw)
	}
	// A free port is picked, then released and given to the registry; another
	// process may grab it in between, so a failed start is retried.
	var lastErr error
	tlsConf := ""
	if o.tlsCert != "" {
		tlsConf = fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", o.tlsCert, o.tlsKey)
	}
	for attempt := 0; attempt < 3; attempt++ {
		storage := filepath.Join(dir, fmt.Sprintf("storage-%d", attempt))
		if o.rootDir != "" {
			storage = o.rootDir
		}
		r, err := startDistribution(t, bin, dir, storage, attempt, tlsConf, auth)
		if err == nil {
			return r
		}
		lastErr = err
	}
	t.Fatalf("starting distribution registry: %v", lastErr)
	return nil
}

func startDistribution(t testing.TB, bin, dir, storage string, attempt int, tlsConf, auth string) (*Registry, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
%s%s`, storage, host, tlsConf, auth)
	cfgPath := filepath.Join(dir, fmt.Sprintf("config-%d.yml", attempt))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	var logs syncBuffer
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout = &logs
	cmd.Stderr = &logs
	cmd.Env = childEnv()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("running %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill() // by PID: the process this helper started
		<-exited
	}
	url := "http://" + host
	client := &http.Client{Timeout: time.Second}
	if tlsConf != "" {
		url = "https://" + host
		// Readiness only: the test's own clients decide what to trust.
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err // let stop() return
			return nil, fmt.Errorf("registry exited early (%v): %s", err, logs.String())
		default:
		}
		resp, err := client.Get(url + "/v2/")
		if err == nil {
			resp.Body.Close()
			// 200 without auth, 401 with htpasswd: both mean it serves.
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("registry on %s did not answer /v2/ within 20s: %s", host, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() && logs.Len() > 0 {
			t.Logf("distribution registry %s log:\n%s", host, logs.String())
		}
	})
	return &Registry{Host: host, URL: url, PID: cmd.Process.Pid}, nil
}

// StartOlareg starts an in-memory olareg registry under an httptest server on
// 127.0.0.1 and stops it when the test ends. It has the referrers API.
func StartOlareg(t testing.TB) *Registry {
	t.Helper()
	yes := true
	h := olareg.New(config.Config{
		Storage: config.ConfigStorage{StoreType: config.StoreMem},
		API: config.ConfigAPI{
			DeleteEnabled: &yes,
			Blob:          config.ConfigAPIBlob{DeleteEnabled: &yes},
		},
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		_ = h.Close()
	})
	return &Registry{Host: l.Addr().String(), URL: srv.URL}
}

// childEnv is the registry's environment: distribution reads REGISTRY_*
// variables as configuration overrides (REGISTRY_AUTH_FILE, which podman and
// mcbuild use for the auth file, would turn on an unknown "file" auth), so
// they are dropped; tracing is off so it does not try to reach a collector.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") && !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return append(env, "OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}
