package faultproxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/faultproxy"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// client never retries and never reuses connections, so every request is
// seen by the proxy exactly once.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func do(t *testing.T, method, url, contentType string, body []byte) (*http.Response, []byte, error) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func start(t *testing.T) (*faultproxy.Proxy, *testregistry.Registry) {
	t.Helper()
	reg := testregistry.StartOlareg(t)
	return faultproxy.Start(t, reg.URL), reg
}

func TestForwardAndStatusCount(t *testing.T) {
	p, _ := start(t)
	r := p.Add(&faultproxy.Rule{Name: "ping 503", Method: http.MethodGet, Path: `^/v2/$`, Count: 2, Action: faultproxy.Status(503)})
	for i, want := range []int{503, 503, 200, 200} {
		resp, body, err := do(t, http.MethodGet, p.URL+"/v2/", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != want {
			t.Fatalf("request %d: %d %s, want %d", i, resp.StatusCode, body, want)
		}
		if want == 503 && !strings.Contains(string(body), "faultproxy") {
			t.Errorf("503 body %q does not say it was injected", body)
		}
	}
	if r.Fired() != 2 || r.Matched() != 4 || p.Fired("ping 503") != 2 {
		t.Errorf("fired %d matched %d (Fired by name %d), want 2, 4, 2", r.Fired(), r.Matched(), p.Fired("ping 503"))
	}
	if len(p.Log()) != 4 {
		t.Errorf("log has %d lines, want 4: %q", len(p.Log()), p.Log())
	}
}

func TestStatusAlwaysRetryAfterAndErrorBody(t *testing.T) {
	p, _ := start(t)
	p.Add(&faultproxy.Rule{Method: http.MethodGet, Path: `/tags/list$`, Action: faultproxy.StatusRetryAfter(429, "7")})
	p.Add(&faultproxy.Rule{Method: http.MethodGet, Path: `/manifests/`, Action: faultproxy.Status(403)})
	for i := 0; i < 3; i++ {
		resp, body, err := do(t, http.MethodGet, p.URL+"/v2/a/tags/list", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" || !strings.Contains(string(body), `"TOOMANYREQUESTS"`) {
			t.Fatalf("%d %v %s, want 429 with Retry-After 7 and TOOMANYREQUESTS", resp.StatusCode, resp.Header, body)
		}
	}
	resp, body, err := do(t, http.MethodGet, p.URL+"/v2/a/manifests/latest", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if resp.StatusCode != 403 || json.Unmarshal(body, &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != "DENIED" {
		t.Fatalf("%d %s, want 403 with a DENIED registry error", resp.StatusCode, body)
	}
}

func TestMatchMediaTypeAndBody(t *testing.T) {
	p, reg := start(t)
	ctx := context.Background()
	repo := openRepo(t, reg.Repo("m/x"))
	cfg := pushBlob(t, repo, []byte("{}"), ocispec.MediaTypeEmptyJSON)
	plain := manifest(t, cfg, nil)
	withSubject := manifest(t, cfg, &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("s"), Size: 1})
	byBody := p.Add(&faultproxy.Rule{Name: "subject", Method: http.MethodPut, Path: `/manifests/`, Body: `"subject"`,
		Action: faultproxy.StatusCode(400, "MANIFEST_INVALID")})
	byType := p.Add(&faultproxy.Rule{Name: "index type", Method: http.MethodPut, MediaType: ocispec.MediaTypeImageIndex, Action: faultproxy.Status(415)})

	url := p.URL + "/v2/m/x/manifests/"
	resp, body, err := do(t, http.MethodPut, url+digest.FromBytes(plain).String(), ocispec.MediaTypeImageManifest+"; charset=utf-8", plain)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("plain manifest: %v %v %s, want 201 (forwarded, body intact)", resp, err, body)
	}
	resp, body, err = do(t, http.MethodPut, url+digest.FromBytes(withSubject).String(), ocispec.MediaTypeImageManifest, withSubject)
	if err != nil || resp.StatusCode != 400 || !strings.Contains(string(body), "MANIFEST_INVALID") {
		t.Fatalf("manifest with subject: %v %v %s, want 400 MANIFEST_INVALID", resp, err, body)
	}
	idx := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	resp, _, err = do(t, http.MethodPut, url+digest.FromBytes(idx).String(), ocispec.MediaTypeImageIndex, idx)
	if err != nil || resp.StatusCode != 415 {
		t.Fatalf("index: %v %v, want 415", resp, err)
	}
	if byBody.Fired() != 1 || byType.Fired() != 1 {
		t.Errorf("fired: body rule %d, type rule %d; want 1 and 1", byBody.Fired(), byType.Fired())
	}
	if _, err := repo.Resolve(ctx, digest.FromBytes(withSubject).String()); err == nil {
		t.Error("the refused manifest reached the registry")
	}
}

func TestResetRequest(t *testing.T) {
	p, _ := start(t)
	r := p.Add(&faultproxy.Rule{Method: http.MethodPut, Path: `/manifests/`, Count: 1, Action: faultproxy.ResetRequest(100)})
	body := bytes.Repeat([]byte("x"), 4<<20)
	_, _, err := do(t, http.MethodPut, p.URL+"/v2/r/x/manifests/v1", ocispec.MediaTypeImageManifest, body)
	if err == nil {
		t.Fatal("request succeeded through a reset")
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		t.Errorf("error %v: want a connection reset", err)
	}
	if r.Fired() != 1 {
		t.Errorf("fired %d, want 1", r.Fired())
	}
	// The count is spent: the next request reaches the registry (and is
	// refused there as an invalid manifest, not reset).
	resp, _, err := do(t, http.MethodPut, p.URL+"/v2/r/x/manifests/v1", ocispec.MediaTypeImageManifest, []byte("{}"))
	if err != nil || resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Fatalf("second request: %v %v, want the registry's 4xx", resp, err)
	}
}

func TestResetResponse(t *testing.T) {
	p, reg := start(t)
	repo := openRepo(t, reg.Repo("r/y"))
	data := bytes.Repeat([]byte("0123456789"), 100000)
	desc := pushBlob(t, repo, data, "application/octet-stream")
	p.Add(&faultproxy.Rule{Method: http.MethodGet, Path: `/blobs/`, Count: 1, Action: faultproxy.ResetResponse(1000)})
	resp, got, err := do(t, http.MethodGet, p.URL+"/v2/r/y/blobs/"+desc.Digest.String(), "", nil)
	if err == nil {
		t.Fatalf("read %d of %d bytes without error", len(got), len(data))
	}
	if resp == nil || resp.StatusCode != 200 || len(got) < 1000 || len(got) >= len(data) {
		t.Fatalf("got status %v and %d bytes (%v), want 200 then a cut after 1000 bytes", resp, len(got), err)
	}
	if _, got, err := do(t, http.MethodGet, p.URL+"/v2/r/y/blobs/"+desc.Digest.String(), "", nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("second read: %d bytes, %v; want the whole blob", len(got), err)
	}
}

func TestStall(t *testing.T) {
	p, _ := start(t)
	p.Add(&faultproxy.Rule{Name: "short", Method: http.MethodGet, Path: `^/v2/$`, Count: 1, Action: faultproxy.Stall(300 * time.Millisecond)})
	p.Add(&faultproxy.Rule{Name: "forever", Method: http.MethodGet, Path: `/tags/list$`, Action: faultproxy.Stall(0)})
	start := time.Now()
	resp, _, err := do(t, http.MethodGet, p.URL+"/v2/", "", nil)
	if err != nil || resp.StatusCode != 200 || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("short stall: %v %v after %s, want 200 after >= 300ms", resp, err, time.Since(start))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/v2/a/tags/list", nil)
	start = time.Now()
	if _, err := client.Do(req); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("endless stall: %v after %s, want the client's own timeout", err, time.Since(start))
	}
	if p.Fired("forever") != 1 {
		t.Errorf("forever fired %d, want 1", p.Fired("forever"))
	}
}

func TestDropAndReset(t *testing.T) {
	p, reg := start(t)
	ctx := context.Background()
	viaProxy := openRepo(t, p.Host+"/d/x")
	direct := openRepo(t, reg.Repo("d/x"))
	r := p.Add(&faultproxy.Rule{Method: http.MethodPut, Path: `/blobs/uploads/`, Count: 1, Action: faultproxy.Drop()})
	first := pushBlob(t, viaProxy, []byte("first"), "application/octet-stream")
	second := pushBlob(t, viaProxy, []byte("second"), "application/octet-stream")
	if r.Fired() != 1 {
		t.Fatalf("drop fired %d, want 1", r.Fired())
	}
	if ok, err := viaProxy.Exists(ctx, first); err != nil || ok {
		t.Errorf("dropped blob: Exists = %v, %v; want false", ok, err)
	}
	if _, err := content.FetchAll(ctx, viaProxy, first); err == nil {
		t.Error("dropped blob could still be fetched")
	}
	if ok, err := viaProxy.Exists(ctx, second); err != nil || !ok {
		t.Errorf("second blob: Exists = %v, %v; want true (count 1)", ok, err)
	}
	if ok, err := direct.Exists(ctx, first); err != nil || !ok {
		t.Errorf("backend: Exists(first) = %v, %v; want true (the proxy hides it)", ok, err)
	}
	p.Reset()
	if ok, err := viaProxy.Exists(ctx, first); err != nil || !ok {
		t.Errorf("after Reset: Exists = %v, %v; want true", ok, err)
	}
}

func TestSetBackend(t *testing.T) {
	p, _ := start(t)
	other := testregistry.StartOlareg(t)
	ctx := context.Background()
	blob := pushBlob(t, openRepo(t, other.Repo("b/x")), []byte("only in the other"), "application/octet-stream")
	viaProxy := openRepo(t, p.Host+"/b/x")
	if ok, _ := viaProxy.Exists(ctx, blob); ok {
		t.Fatal("blob visible before switching backends")
	}
	if err := p.SetBackend(other.URL); err != nil {
		t.Fatal(err)
	}
	if ok, err := viaProxy.Exists(ctx, blob); err != nil || !ok {
		t.Fatalf("after SetBackend: Exists = %v, %v", ok, err)
	}
	if err := p.SetBackend("ftp://x"); err == nil {
		t.Error("SetBackend accepted a non-http URL")
	}
}

func openRepo(t *testing.T, name string) *remote.Repository {
	t.Helper()
	r, err := remote.NewRepository(name)
	if err != nil {
		t.Fatal(err)
	}
	r.PlainHTTP = true
	r.Client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	return r
}

func pushBlob(t *testing.T, repo *remote.Repository, data []byte, mediaType string) ocispec.Descriptor {
	t.Helper()
	desc := content.NewDescriptorFromBytes(mediaType, data)
	if err := repo.Blobs().Push(context.Background(), desc, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return desc
}

func manifest(t *testing.T, cfg ocispec.Descriptor, subject *ocispec.Descriptor) []byte {
	t.Helper()
	m := map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest, "config": cfg, "layers": []any{}}
	if subject != nil {
		m["subject"] = subject
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStallResponse(t *testing.T) {
	p, reg := start(t)
	repo := openRepo(t, reg.Repo("s/r"))
	data := bytes.Repeat([]byte("0123456789"), 1000)
	desc := pushBlob(t, repo, data, "application/octet-stream")
	r := p.Add(&faultproxy.Rule{Method: http.MethodGet, Path: `/blobs/`, Count: 1, Action: faultproxy.StallResponse(100)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/v2/s/r/blobs/"+desc.Digest.String(), nil)
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) {
		t.Fatalf("%v %v, want the registry's 200 and its headers", resp, err)
	}
	got := make([]byte, 100)
	if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, data[:100]) {
		t.Fatalf("first 100 bytes: %q %v", got, err)
	}
	more := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 1))
		more <- err
	}()
	select {
	case err := <-more:
		t.Fatalf("read past the stall point: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	if err := <-more; err == nil {
		t.Error("the stalled read ended without an error once the client gave up")
	}
	if _, got, err := do(t, http.MethodGet, p.URL+"/v2/s/r/blobs/"+desc.Digest.String(), "", nil); err != nil || !bytes.Equal(got, data) || r.Fired() != 1 {
		t.Fatalf("second read: %d bytes, %v, fired %d; want the whole blob, fired once", len(got), err, r.Fired())
	}
}

func TestStatusBodies(t *testing.T) {
	p, _ := start(t)
	for _, tt := range []struct {
		status int
		code   string
	}{{408, "UNAVAILABLE"}, {401, "UNKNOWN"}, {503, "UNAVAILABLE"}} {
		p.Reset()
		p.Add(&faultproxy.Rule{Method: http.MethodGet, Path: `/tags/list$`, Action: faultproxy.StatusCode(tt.status, tt.code)})
		resp, body, err := do(t, http.MethodGet, p.URL+"/v2/a/tags/list", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Errors []struct{ Code string } `json:"errors"`
		}
		if resp.StatusCode != tt.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
			json.Unmarshal(body, &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != tt.code {
			t.Errorf("%d %q %s, want %d with a JSON %s registry error", resp.StatusCode, resp.Header.Get("Content-Type"), body, tt.status, tt.code)
		}
	}
	p.Reset()
	p.Add(&faultproxy.Rule{Method: http.MethodGet, Path: `/tags/list$`, Action: faultproxy.StatusPlain(408)})
	resp, body, err := do(t, http.MethodGet, p.URL+"/v2/a/tags/list", "", nil)
	if err != nil || resp.StatusCode != 408 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || !strings.Contains(string(body), "faultproxy") {
		t.Errorf("StatusPlain(408): %v %v %s, want 408 with a plain text body", resp, err, body)
	}
}
