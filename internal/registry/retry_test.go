package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	dockererrcode "github.com/docker/distribution/registry/api/errcode"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/mcbuild/mcbuild/internal/faultproxy"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

func orasErr(code int, codes ...string) error {
	u, _ := url.Parse("http://r.example/v2/a/manifests/v1?_state=secret-token")
	e := &errcode.ErrorResponse{Method: http.MethodPut, URL: u, StatusCode: code}
	for _, c := range codes {
		e.Errors = append(e.Errors, errcode.Error{Code: c, Message: strings.ToLower(c)})
	}
	return e
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestRetryable(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		want   bool
		status int
	}{
		{"oras 503", orasErr(503), true, 503},
		{"oras 500", orasErr(500), true, 500},
		{"oras 502 wrapped", fmt.Errorf("pushing: %w", orasErr(502)), true, 502},
		{"oras 429", orasErr(429, "TOOMANYREQUESTS"), true, 429},
		{"oras 408", orasErr(408), true, 408},
		{"oras 501", orasErr(501), false, 501},
		{"oras 401", orasErr(401, "UNAUTHORIZED"), false, 401},
		{"oras 403", orasErr(403, "DENIED"), false, 403},
		{"oras 400", orasErr(400, "MANIFEST_INVALID"), false, 400},
		{"oras 404", orasErr(404, "MANIFEST_UNKNOWN"), false, 404},
		{"c/image 503", fmt.Errorf("writing blob: %w", docker.UnexpectedHTTPStatusError{StatusCode: 503}), true, 503},
		{"c/image 429", fmt.Errorf("x: %w", docker.ErrTooManyRequests), true, 429},
		{"c/image TOOMANYREQUESTS", fmt.Errorf("x: %w", dockererrcode.ErrorCodeTooManyRequests.WithMessage("slow down")), true, 429},
		{"c/image DENIED", fmt.Errorf("x: %w", dockererrcode.ErrorCodeDenied.WithMessage("no")), false, 403},
		{"c/image UNAUTHORIZED", fmt.Errorf("x: %w", dockererrcode.ErrorCodeUnauthorized.WithMessage("no")), false, 401},
		{"c/image unknown 4xx code", fmt.Errorf("x: %w", dockererrcode.ErrorCodeUnknown.WithMessage("?")), false, 400},
		{"c/image unparsable 4xx body", errors.New(`uploading: StatusCode: 404, "<html>"`), false, 404},
		{"c/image 401 for credentials", docker.ErrUnauthorizedForCredentials{Err: errors.New("bad")}, false, 401},
		// containers/image keeps a 4xx answer's registry error code, not its
		// status: UNAVAILABLE is retried whichever 4xx carried it.
		{"c/image UNAVAILABLE (a 4xx)", fmt.Errorf("x: %w", dockererrcode.ErrorCodeUnavailable.WithMessage("request timeout")), true, 400},
		{"c/image UNAVAILABLE in a list", dockererrcode.Errors{dockererrcode.ErrorCodeUnavailable.WithMessage("busy")}, true, 400},
		{"c/image 401 for credentials, UNAVAILABLE body", docker.ErrUnauthorizedForCredentials{Err: dockererrcode.ErrorCodeUnavailable.WithMessage("x")}, false, 401},
		{"oras 408 UNAVAILABLE", orasErr(408, "UNAVAILABLE"), true, 408},
		{"oras 408 UNKNOWN", orasErr(408, "UNKNOWN"), true, 408},
		{"oras 401 UNKNOWN", orasErr(401, "UNKNOWN"), false, 401},
		{"oras 403 UNAVAILABLE", orasErr(403, "UNAVAILABLE"), false, 403},
		{"connection reset", fmt.Errorf("Patch x: %w", &net.OpError{Op: "write", Err: syscall.ECONNRESET}), true, 0},
		{"broken pipe", &url.Error{Op: "Put", URL: "x", Err: &net.OpError{Op: "write", Err: syscall.EPIPE}}, true, 0},
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true, 0},
		{"unexpected EOF", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), true, 0},
		{"local: the layer being pushed ended early", fmt.Errorf("pushing: %w", &LocalError{Err: fmt.Errorf("happened during read: %w", io.ErrUnexpectedEOF)}), false, 0},
		{"closed conn", fmt.Errorf("x: %w", net.ErrClosed), true, 0},
		{"timeout", &url.Error{Op: "Get", URL: "x", Err: timeoutErr{}}, true, 0},
		{"stall", &StallError{After: time.Second}, true, 0},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), false, 0},
		{"other", errors.New("manifest is not valid JSON"), false, 0},
		{"nil", nil, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Retryable(tt.err); got != tt.want {
				t.Errorf("Retryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
			code, ok := Status(tt.err)
			if (tt.status != 0) != ok || code != tt.status {
				t.Errorf("Status(%v) = %d, %v; want %d", tt.err, code, ok, tt.status)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	o := Options{RetryDelay: time.Second}
	for attempt, base := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, MaxRetryDelay, MaxRetryDelay} {
		got := o.Backoff(attempt)
		if got < base || got > base+base/10+1 {
			t.Errorf("Backoff(%d) = %s, want %s plus up to 10%%", attempt, got, base)
		}
	}
	if got := (Options{RetryDelay: time.Minute}).Backoff(3); got < time.Minute || got > time.Minute+6*time.Second+1 {
		t.Errorf("a delay above the cap is used as is: got %s", got)
	}
	if got := (Options{}).Backoff(2); got != 0 {
		t.Errorf("zero delay: Backoff = %s", got)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"3", 3 * time.Second, true},
		{"0", 0, true},
		{"-1", 0, false},
		{"", 0, false},
		{"soon", 0, false},
		{now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
	}
	for _, tt := range tests {
		got, ok := RetryAfter(tt.v, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("RetryAfter(%q) = %s, %v; want %s, %v", tt.v, got, ok, tt.want, tt.ok)
		}
	}
}

func TestPolicy(t *testing.T) {
	p := policy{Options{Retry: 2, RetryDelay: 10 * time.Millisecond}}
	resp := func(code int, retryAfter string) *http.Response {
		r := &http.Response{StatusCode: code, Header: http.Header{}}
		if retryAfter != "" {
			r.Header.Set("Retry-After", retryAfter)
		}
		return r
	}
	tests := []struct {
		name     string
		attempt  int
		resp     *http.Response
		err      error
		min, max time.Duration // max < 0: no retry
	}{
		{"503", 0, resp(503, ""), nil, 10 * time.Millisecond, 12 * time.Millisecond},
		{"503 second retry doubles", 1, resp(503, ""), nil, 20 * time.Millisecond, 23 * time.Millisecond},
		{"attempts spent", 2, resp(503, ""), nil, 0, -1},
		{"429 Retry-After honored", 0, resp(429, "2"), nil, 2 * time.Second, 2 * time.Second},
		{"503 Retry-After honored", 0, resp(503, "1"), nil, time.Second, time.Second},
		{"Retry-After capped", 0, resp(429, "3600"), nil, MaxRetryAfter, MaxRetryAfter},
		{"401 never", 0, resp(401, ""), nil, 0, -1},
		{"403 never", 0, resp(403, ""), nil, 0, -1},
		{"400 never", 0, resp(400, ""), nil, 0, -1},
		{"reset", 0, nil, syscall.ECONNRESET, 10 * time.Millisecond, 12 * time.Millisecond},
		{"other error", 0, nil, errors.New("x"), 0, -1},
	}
	for _, tt := range tests {
		d, err := p.Retry(tt.attempt, tt.resp, tt.err)
		if err != nil {
			t.Errorf("%s: error %v", tt.name, err)
		}
		if tt.max < 0 {
			if d >= 0 {
				t.Errorf("%s: retry in %s, want none", tt.name, d)
			}
			continue
		}
		if d < tt.min || d > tt.max {
			t.Errorf("%s: retry in %s, want %s..%s", tt.name, d, tt.min, tt.max)
		}
	}
}

func TestDo(t *testing.T) {
	ctx := context.Background()
	o := Options{Retry: 3, RetryDelay: time.Millisecond}
	calls := 0
	err := Do(ctx, o, nil, func(context.Context) error {
		calls++
		if calls < 3 {
			return orasErr(503)
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("transient twice: err %v after %d calls, want success on the 3rd", err, calls)
	}
	calls = 0
	var retries []int
	err = Do(ctx, o, func(n int, _ time.Duration, _ error) { retries = append(retries, n) }, func(context.Context) error {
		calls++
		return orasErr(502)
	})
	var re *RetryError
	if !errors.As(err, &re) || re.Attempts != 4 || calls != 4 || len(retries) != 3 {
		t.Fatalf("persistent: err %v, %d calls, retries %v; want a RetryError after 4 attempts", err, calls, retries)
	}
	msg := o.Explain("pushing the index to r.example/a", err).Error()
	for _, w := range []string{"pushing the index to r.example/a", "HTTP 502 Bad Gateway", "still failing after 4 attempts", "?…"} {
		if !strings.Contains(msg, w) {
			t.Errorf("Explain = %q, want it to contain %q", msg, w)
		}
	}
	if strings.Contains(msg, "secret-token") {
		t.Errorf("Explain shows a URL query: %q", msg)
	}
	calls = 0
	err = Do(ctx, o, nil, func(context.Context) error { calls++; return orasErr(401, "UNAUTHORIZED") })
	if calls != 1 {
		t.Fatalf("401 tried %d times, want once", calls)
	}
	if msg := o.Explain("tagging", err).Error(); !strings.Contains(msg, "HTTP 401 Unauthorized, not retried") {
		t.Errorf("Explain(401) = %q", msg)
	}
	calls = 0
	local := &LocalError{Err: fmt.Errorf("reading a layer: writing blob: happened during read: %w", io.ErrUnexpectedEOF)}
	err = Do(ctx, o, nil, func(context.Context) error { calls++; return local })
	if calls != 1 {
		t.Fatalf("a local failure tried %d times, want once", calls)
	}
	if msg := o.Explain("pushing", err).Error(); msg != "pushing: "+local.Error() {
		t.Errorf("Explain(local) = %q, want the error alone, blaming no connection", msg)
	}
	cctx, cancel := context.WithCancel(ctx)
	calls = 0
	err = Do(cctx, Options{Retry: 5, RetryDelay: time.Hour}, func(int, time.Duration, error) { cancel() }, func(context.Context) error {
		calls++
		return orasErr(503)
	})
	if err == nil || calls != 1 {
		t.Fatalf("cancelled during the wait: err %v after %d calls", err, calls)
	}
}

// TestRepositoryRetriesThroughFaults: the oras client built by Repository
// retries what the proxy injects (status, Retry-After, reset, stall) and
// gives up on 403 at once.
func TestRepositoryRetriesThroughFaults(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	reg := testregistry.StartOlareg(t)
	p := faultproxy.Start(t, reg.URL)
	o := Options{TLSVerify: false, Retry: 2, RetryDelay: 5 * time.Millisecond, RequestTimeout: 500 * time.Millisecond}
	tag := func() error {
		return pushTag(ctx, t, p.Host+"/retry/x", o)
	}
	tests := []struct {
		name    string
		rule    *faultproxy.Rule
		wantErr string
		fired   int
		minTime time.Duration
	}{
		{"503 twice", &faultproxy.Rule{Method: http.MethodPut, Path: `/manifests/`, Count: 2, Action: faultproxy.Status(503)}, "", 2, 0},
		{"429 Retry-After 1", &faultproxy.Rule{Method: http.MethodPut, Path: `/manifests/t$`, Count: 1, Action: faultproxy.StatusRetryAfter(429, "1")}, "", 1, time.Second},
		{"reset mid-body", &faultproxy.Rule{Method: http.MethodPut, Path: `/manifests/`, Count: 1, Action: faultproxy.ResetRequest(10)}, "", 1, 0},
		{"stall once", &faultproxy.Rule{Method: http.MethodPut, Path: `/manifests/`, Count: 1, Action: faultproxy.Stall(0)}, "", 1, 500 * time.Millisecond},
		{"503 always", &faultproxy.Rule{Method: http.MethodPut, Path: `/manifests/`, Action: faultproxy.Status(503)}, "503", 3, 0},
		{"403 always", &faultproxy.Rule{Method: http.MethodPut, Path: `/manifests/`, Action: faultproxy.Status(403)}, "403", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.Reset()
			r := p.Add(tt.rule)
			start := time.Now()
			err := tag()
			took := time.Since(start)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("push: %v, want error %q", err, tt.wantErr)
			}
			if r.Fired() != tt.fired {
				t.Errorf("fired %d, want %d", r.Fired(), tt.fired)
			}
			if took < tt.minTime || took > 10*time.Second {
				t.Errorf("took %s, want at least %s and bounded", took, tt.minTime)
			}
		})
	}
}

// TestContainersImageStatus: what containers/image's registry client (both
// publishers push through it) reports for an error answer, through the fault
// proxy: the status of a 4xx with a JSON error body is lost (only its code
// is kept), so mcbuild says so instead of naming a status, and retries
// UNAVAILABLE; any other answer keeps its status.
func TestContainersImageStatus(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	p := faultproxy.Start(t, testregistry.StartOlareg(t).URL)
	named, err := reference.ParseNormalizedNamed(p.Host + "/cimage/x")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := docker.NewReferenceUnknownDigest(named)
	if err != nil {
		t.Fatal(err)
	}
	blob := []byte("blob")
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
	push := map[string]func(types.ImageDestination) error{
		"blob POST": func(d types.ImageDestination) error {
			_, err := d.PutBlob(ctx, bytes.NewReader(blob), types.BlobInfo{Digest: digest.FromBytes(blob), Size: int64(len(blob))}, none.NoCache, false)
			return err
		},
		"manifest PUT": func(d types.ImageDestination) error { return d.PutManifest(ctx, manifest, nil) },
	}
	tests := []struct {
		action    faultproxy.Action
		retryable bool
		reason    string
	}{
		{faultproxy.StatusCode(408, "UNAVAILABLE"), true, "HTTP 4xx with registry error UNAVAILABLE (containers/image does not report which status)"},
		{faultproxy.StatusCode(408, "UNKNOWN"), false, "HTTP 4xx with registry error UNKNOWN (containers/image does not report which status)"},
		{faultproxy.StatusCode(401, "UNKNOWN"), false, "HTTP 4xx with registry error UNKNOWN"},
		{faultproxy.StatusCode(403, "FORBIDDEN"), false, "HTTP 4xx with registry error UNKNOWN"},
		{faultproxy.StatusCode(403, "DENIED"), false, "HTTP 403 Forbidden"},
		{faultproxy.StatusPlain(408), true, "HTTP 408 Request Timeout"},
		{faultproxy.StatusCode(503, "UNAVAILABLE"), true, "HTTP 503 Service Unavailable"},
	}
	for what, op := range push {
		method, path := http.MethodPost, `/blobs/uploads/$`
		if what == "manifest PUT" {
			method, path = http.MethodPut, `/manifests/`
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s %d %s", what, tt.action.Status, tt.action.Code), func(t *testing.T) {
				p.Reset()
				r := p.Add(&faultproxy.Rule{Method: method, Path: path, Action: tt.action})
				dest, err := ref.NewImageDestination(ctx, &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue})
				if err != nil {
					t.Fatal(err)
				}
				defer dest.Close()
				err = op(dest)
				if r.Fired() != 1 || err == nil {
					t.Fatalf("fired %d, err %v: want the injected answer as an error", r.Fired(), err)
				}
				if got := Retryable(err); got != tt.retryable {
					t.Errorf("Retryable(%v) = %v, want %v", err, got, tt.retryable)
				}
				if got := Reason(err); !strings.HasPrefix(got, tt.reason) {
					t.Errorf("Reason(%v) = %q, want %q", err, got, tt.reason)
				}
				if _, lost := statusLost(err); lost && !tt.retryable {
					if msg := (Options{Retry: 2}).Explain("pushing", err).Error(); !strings.Contains(msg, "not retried (not a transient error code)") {
						t.Errorf("Explain = %q, want it to say the code is not a transient one", msg)
					}
				}
			})
		}
	}
}
