package registry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"github.com/mcbuild/mcbuild/internal/faultproxy"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

func TestSessionSystemContext(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	authFile := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(authFile, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REGISTRY_AUTH_FILE", authFile)
	s := session(t, Options{TLSVerify: true, CertDir: dir, UserAgent: "mcbuild"})
	sys := s.SystemContext("/cache")
	want := types.SystemContext{AuthFilePath: authFile, DockerCertPath: dir, DockerRegistryUserAgent: "mcbuild", BlobInfoCacheDir: "/cache"}
	if !reflect.DeepEqual(*sys, want) {
		t.Errorf("verified: %+v, want %+v", *sys, want)
	}
	sys.BlobInfoCacheDir = "changed"
	if s.SystemContext("").BlobInfoCacheDir != "" {
		t.Error("a caller's change leaked into the session")
	}
	sys = session(t, Options{TLSVerify: false}).SystemContext("")
	if sys.DockerInsecureSkipTLSVerify != types.OptionalBoolTrue || !sys.OCIInsecureSkipTLSVerify || sys.AuthFilePath != authFile {
		t.Errorf("TLS verification off: %+v", *sys)
	}
}

// manifestServer is a registry stand-in that counts the requests for one
// manifest and answers them with serve.
func manifestServer(t *testing.T, serve func(n int, w http.ResponseWriter, r *http.Request)) (host string, desc ocispec.Descriptor, raw []byte, count *atomic.Int32) {
	t.Helper()
	raw = []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
	desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	count = new(atomic.Int32)
	path := "/v2/a/manifests/" + desc.Digest.String()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			w.WriteHeader(http.StatusOK) // GET /v2/
			return
		}
		serve(int(count.Add(1)), w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), desc, raw, count
}

func writeManifest(w http.ResponseWriter, raw []byte) {
	w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
	_, _ = w.Write(raw)
}

// TestRetryOneLayer: a manifest GET the registry answers 503 every time is
// sent exactly Retry+1 times (one retry layer, nothing nested), and the
// error says that many attempts.
func TestRetryOneLayer(t *testing.T) {
	isolate(t)
	host, desc, _, count := manifestServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	o := Options{Retry: 2, RetryDelay: time.Millisecond, RequestTimeout: 5 * time.Second}
	repo, err := session(t, o).Repository(context.Background(), host+"/a")
	if err != nil {
		t.Fatal(err)
	}
	_, err = content.FetchAll(context.Background(), repo, desc)
	if n := count.Load(); n != 3 {
		t.Errorf("%d requests for the manifest, want 3 (--retry 2)", n)
	}
	msg := o.Explain("reading the manifest", err)
	if msg == nil || !strings.Contains(msg.Error(), "HTTP 503 Service Unavailable, still failing after 3 attempts") {
		t.Errorf("Explain = %v, want it to say 3 attempts", msg)
	}
}

// TestSendOnce: a request under SendOnce (an upload its caller retries as a
// whole) is sent once by the transport, whatever the answer.
func TestSendOnce(t *testing.T) {
	isolate(t)
	host, desc, _, count := manifestServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	repo, err := session(t, Options{Retry: 2, RetryDelay: time.Millisecond, RequestTimeout: 5 * time.Second}).Repository(context.Background(), host+"/a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := content.FetchAll(SendOnce(context.Background()), repo, desc); err == nil {
		t.Fatal("a 503 read succeeded")
	}
	if n := count.Load(); n != 1 {
		t.Errorf("%d requests under SendOnce, want 1", n)
	}
}

// TestRetryCutBody: a manifest whose body is cut short after the headers,
// or stops coming, is read again by the retrying transport: the caller
// gets the whole manifest. Cut every time, the error says how many
// requests were sent.
func TestRetryCutBody(t *testing.T) {
	isolate(t)
	const stall = 300 * time.Millisecond
	o := Options{Retry: 2, RetryDelay: time.Millisecond, RequestTimeout: stall}
	half := func(w http.ResponseWriter, raw []byte) {
		w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
		w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
		_, _ = w.Write(raw[:len(raw)/2])
		w.(http.Flusher).Flush()
	}
	cut := func(w http.ResponseWriter, raw []byte) {
		half(w, raw)
		hj, _, _ := w.(http.Hijacker).Hijack()
		hj.Close()
	}
	tests := []struct {
		name     string
		bad      int // how many answers are bad
		fault    func(w http.ResponseWriter, r *http.Request, raw []byte)
		requests int32
		wantErr  string
		minTime  time.Duration
	}{
		{"cut once", 1, func(w http.ResponseWriter, _ *http.Request, raw []byte) { cut(w, raw) }, 2, "", 0},
		{"stalled once", 1, func(w http.ResponseWriter, r *http.Request, raw []byte) {
			half(w, raw)
			<-r.Context().Done()
		}, 2, "", stall},
		{"cut every time", 100, func(w http.ResponseWriter, _ *http.Request, raw []byte) { cut(w, raw) }, 3,
			"connection reset or closed mid-request, still failing after 3 attempts", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw []byte
			host, desc, raw, count := manifestServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n <= tt.bad {
					tt.fault(w, r, raw)
					return
				}
				writeManifest(w, raw)
			})
			repo, err := session(t, o).Repository(context.Background(), host+"/a")
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got, err := content.FetchAll(context.Background(), repo, desc)
			took := time.Since(start)
			if n := count.Load(); n != tt.requests {
				t.Errorf("%d requests, want %d", n, tt.requests)
			}
			if took < tt.minTime || took > tt.minTime+5*time.Second {
				t.Errorf("took %s, want at least %s and bounded", took, tt.minTime)
			}
			if tt.wantErr == "" {
				if err != nil || string(got) != string(raw) {
					t.Fatalf("FetchAll = %q, %v; want the manifest", got, err)
				}
				return
			}
			var re *RetryError
			if !errors.As(err, &re) || re.Attempts != 3 {
				t.Errorf("FetchAll = %v, want a RetryError of 3 attempts", err)
			}
			if msg := o.Explain("reading", err); !strings.Contains(msg.Error(), tt.wantErr) {
				t.Errorf("Explain = %v, want %q", msg, tt.wantErr)
			}
		})
	}
}

// TestRetryCutBodyThroughProxy: the same against a real registry, the
// connection reset mid-answer by the fault proxy.
func TestRetryCutBodyThroughProxy(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	p := faultproxy.Start(t, testregistry.StartOlareg(t).URL)
	repo, err := session(t, Options{Retry: 2, RetryDelay: time.Millisecond, RequestTimeout: 5 * time.Second}).Repository(ctx, p.Host+"/cut/x")
	if err != nil {
		t.Fatal(err)
	}
	desc, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "application/vnd.mcbuild.test",
		oras.PackManifestOptions{ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: "2000-01-01T00:00:00Z"}})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Add(&faultproxy.Rule{Method: http.MethodGet, Path: `/manifests/sha256:`, Count: 1, Action: faultproxy.ResetResponse(20)})
	raw, err := content.FetchAll(ctx, repo, desc)
	if err != nil || digest.FromBytes(raw) != desc.Digest {
		t.Fatalf("FetchAll = %v, want the manifest", err)
	}
	if r.Fired() != 1 || r.Matched() != 2 {
		t.Errorf("rule fired %d of %d requests, want 1 of 2", r.Fired(), r.Matched())
	}
}
