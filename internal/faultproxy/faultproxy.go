// Package faultproxy is a fault-injecting reverse proxy for tests: it
// listens on 127.0.0.1 in front of a real (test) registry and, by rule,
// answers errors, resets connections mid-body, stalls, or drops blobs, so
// tests can show what mcbuild does when a registry misbehaves.
//
// A [Rule] matches requests by method, path regexp, request media type
// (Content-Type) and request body regexp, and fires for its first Count
// matches (0: every match). The first rule that matches and has firings
// left acts; requests no rule takes are forwarded unchanged (the Host
// header is kept, so the registry's Location URLs point at the proxy).
//
// Actions:
//   - [Status]: answer a status (JSON registry error body for 4xx, plain
//     text for 5xx), optionally with Retry-After or other headers, without
//     forwarding; [StatusCode] answers any status with a JSON error body of
//     the given registry error code, [StatusPlain] any status with plain
//     text;
//   - [ResetRequest]: read part of the request body, then reset the
//     connection (TCP RST) without answering;
//   - [ResetResponse]: forward, then reset the connection after part of the
//     response body;
//   - [Stall]: hold the request for a duration (0: until the client gives
//     up), then forward it;
//   - [StallResponse]: forward, pass the registry's headers and part of its
//     body on, then send nothing more until the client gives up;
//   - [Drop]: forward a blob upload, and once the registry confirmed it
//     (201), answer 404 BLOB_UNKNOWN to every later HEAD or GET of that blob
//     in that repository: a registry that lost a blob it accepted.
package faultproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Kind is what a rule does.
type Kind int

const (
	// KindStatus answers Action.Status without forwarding.
	KindStatus Kind = iota + 1
	// KindResetRequest resets the connection after reading Action.After
	// bytes of the request body.
	KindResetRequest
	// KindResetResponse forwards, then resets the connection after
	// writing Action.After bytes of the response body.
	KindResetResponse
	// KindStall holds the request for Action.Duration (0: until the
	// client gives up), then forwards it.
	KindStall
	// KindDrop forwards a blob upload and hides the blob once uploaded.
	KindDrop
	// KindStallResponse forwards, passes the response's headers and
	// Action.After bytes of its body on, then stalls until the client gives
	// up.
	KindStallResponse
)

func (k Kind) String() string {
	switch k {
	case KindStatus:
		return "status"
	case KindResetRequest:
		return "reset-request"
	case KindResetResponse:
		return "reset-response"
	case KindStall:
		return "stall"
	case KindDrop:
		return "drop"
	case KindStallResponse:
		return "stall-response"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Action is what a rule does when it fires.
type Action struct {
	Kind Kind
	// Status, for KindStatus.
	Status int
	// Code is the registry error code of the JSON body ("" picks one from
	// the status for a 4xx: UNAUTHORIZED, DENIED, TOOMANYREQUESTS,
	// MANIFEST_INVALID, UNSUPPORTED, ...; a 5xx without a Code gets a
	// plain text body).
	Code string
	// Plain gives a KindStatus answer a plain text body whatever its
	// status, as a proxy or load balancer in front of a registry answers.
	Plain bool
	// Header is added to a KindStatus answer (e.g. Retry-After).
	Header http.Header
	// After is the number of body bytes read (KindResetRequest) or written
	// (KindResetResponse, KindStallResponse) before the reset or stall.
	After int64
	// Duration of a KindStall; 0 stalls until the client gives up.
	Duration time.Duration
}

// Status answers code.
func Status(code int) Action { return Action{Kind: KindStatus, Status: code} }

// StatusPlain answers code with a plain text body (no registry error
// code), whatever the status.
func StatusPlain(code int) Action { return Action{Kind: KindStatus, Status: code, Plain: true} }

// StatusRetryAfter answers code with a Retry-After header.
func StatusRetryAfter(code int, retryAfter string) Action {
	return Action{Kind: KindStatus, Status: code, Header: http.Header{"Retry-After": {retryAfter}}}
}

// StatusCode answers code with a JSON body carrying the registry error code
// ec, whatever the status (a 408 or a 503 as well as a 4xx).
func StatusCode(code int, ec string) Action { return Action{Kind: KindStatus, Status: code, Code: ec} }

// ResetRequest resets the connection after reading after bytes of the
// request body (all of it, if shorter).
func ResetRequest(after int64) Action { return Action{Kind: KindResetRequest, After: after} }

// ResetResponse resets the connection after writing after bytes of the
// registry's response body.
func ResetResponse(after int64) Action { return Action{Kind: KindResetResponse, After: after} }

// Stall holds a request for d (0: until the client gives up).
func Stall(d time.Duration) Action { return Action{Kind: KindStall, Duration: d} }

// StallResponse forwards a request and passes the registry's answer on up
// to after bytes of its body, then sends nothing more until the client
// gives up (a body that stops coming after the headers). A body of at most
// after bytes passes whole.
func StallResponse(after int64) Action { return Action{Kind: KindStallResponse, After: after} }

// Drop hides an uploaded blob from later reads.
func Drop() Action { return Action{Kind: KindDrop} }

// Rule selects requests and says what to do with them.
type Rule struct {
	// Name identifies the rule in logs and for [Proxy.Fired].
	Name string
	// Method matches the request method ("" any).
	Method string
	// Path matches the request path ("" any), e.g. `/manifests/`.
	Path string
	// Query matches the raw query ("" any), e.g. `mount=` for a
	// cross-repository mount.
	Query string
	// MediaType matches the request's Content-Type, parameters ignored
	// ("" any).
	MediaType string
	// Body matches the request body ("" any); bodies up to 16 MiB are
	// buffered to match.
	Body string
	// Count is how many matches fire (0: every match).
	Count int
	// Action is what happens.
	Action Action

	path, query, body *regexp.Regexp
	fired             atomic.Int64
	matched           atomic.Int64
}

// Fired is how many times the rule acted.
func (r *Rule) Fired() int { return int(r.fired.Load()) }

// Matched is how many requests matched, fired or not.
func (r *Rule) Matched() int { return int(r.matched.Load()) }

const maxBodyMatch = 16 << 20

// Proxy is a running fault proxy.
type Proxy struct {
	// Host is "127.0.0.1:<port>": use it as the registry of references.
	Host string
	// URL is "http://127.0.0.1:<port>".
	URL string

	srv     *httptest.Server
	backend atomic.Pointer[url.URL]
	rp      *httputil.ReverseProxy

	closed    chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	rules  []*Rule
	hidden map[string]bool // "<repo>@<digest>" of dropped blobs
	log    []string
}

// Start starts a proxy on 127.0.0.1 in front of backend (an http:// URL)
// and stops it when the test ends.
func Start(t testing.TB, backend string) *Proxy {
	t.Helper()
	p, err := New(backend)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// New starts a proxy on 127.0.0.1 in front of backend; Close stops it.
func New(backend string) (*Proxy, error) {
	p := &Proxy{hidden: map[string]bool{}, closed: make(chan struct{})}
	if err := p.SetBackend(backend); err != nil {
		return nil, err
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.backend.Load())
			pr.Out.Host = pr.In.Host // registries build Location URLs from Host
		},
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Listener.Close()
	p.srv.Listener = l
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.srv.Start()
	p.URL = p.srv.URL
	p.Host = strings.TrimPrefix(p.srv.URL, "http://")
	return p, nil
}

// Close stops the proxy, ending stalled requests.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() { close(p.closed) })
	p.srv.CloseClientConnections()
	p.srv.Close()
}

// SetBackend points the proxy at another registry (an http:// URL).
func (p *Proxy) SetBackend(backend string) error {
	u, err := url.Parse(backend)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("faultproxy: backend %q: want http://host:port", backend)
	}
	p.backend.Store(u)
	return nil
}

// Add installs a rule (after the ones already there) and returns it, for
// its counters. It panics on a bad regexp: rules are test code.
func (p *Proxy) Add(r *Rule) *Rule {
	if r.Path != "" {
		r.path = regexp.MustCompile(r.Path)
	}
	if r.Query != "" {
		r.query = regexp.MustCompile(r.Query)
	}
	if r.Body != "" {
		r.body = regexp.MustCompile(r.Body)
	}
	if r.Name == "" {
		r.Name = fmt.Sprintf("%s %s %s", r.Method, r.Path, r.Action.Kind)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, r)
	return r
}

// Reset removes every rule and forgets dropped blobs: the proxy forwards
// everything again.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = nil
	p.hidden = map[string]bool{}
}

// Fired is how many times the rule named name acted (0 if there is none).
func (p *Proxy) Fired(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.rules {
		if r.Name == name {
			n += r.Fired()
		}
	}
	return n
}

// Log returns one line per request: method, path, and what happened.
func (p *Proxy) Log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

func (p *Proxy) logf(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, fmt.Sprintf(format, a...))
}

var blobPath = regexp.MustCompile(`^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$`)

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	// A dropped blob is gone for every later read.
	if r.Method == http.MethodHead || r.Method == http.MethodGet {
		if m := blobPath.FindStringSubmatch(r.URL.Path); m != nil {
			p.mu.Lock()
			gone := p.hidden[m[1]+"@"+m[2]]
			p.mu.Unlock()
			if gone {
				p.logf("%s %s: 404 (dropped)", r.Method, r.URL.Path)
				writeError(w, r, StatusCode(http.StatusNotFound, "BLOB_UNKNOWN"))
				return
			}
		}
	}
	rule, err := p.match(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if rule == nil {
		p.logf("%s %s", r.Method, r.URL.Path)
		p.rp.ServeHTTP(w, r)
		return
	}
	a := rule.Action
	p.logf("%s %s: rule %q fires (%s)", r.Method, r.URL.Path, rule.Name, a.Kind)
	switch a.Kind {
	case KindStatus:
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 256<<20))
		writeError(w, r, a)
	case KindResetRequest:
		_, _ = io.CopyN(io.Discard, r.Body, a.After)
		reset(w)
	case KindResetResponse:
		rw := &cutWriter{ResponseWriter: w, left: a.After}
		p.rp.ServeHTTP(rw, r)
		if !rw.cut {
			reset(w) // shorter than After: cut at the end
		}
	case KindStall:
		// The body is read first (and kept, to forward it): Go's server
		// notices a client that hangs up only once the body is consumed.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var elapsed <-chan time.Time
		if a.Duration > 0 {
			t := time.NewTimer(a.Duration)
			defer t.Stop()
			elapsed = t.C
		}
		select {
		case <-elapsed:
		case <-r.Context().Done():
			return
		case <-p.closed:
			return
		}
		p.rp.ServeHTTP(w, r)
	case KindStallResponse:
		p.rp.ServeHTTP(&stallWriter{ResponseWriter: w, left: a.After, done: r.Context().Done(), closed: p.closed}, r)
	case KindDrop:
		repo, dgst := uploadTarget(r)
		// Hidden before the client sees the 201, so no later read races it.
		sw := &statusWriter{ResponseWriter: w, onHeader: func(code int) {
			if code == http.StatusCreated && dgst != "" {
				p.mu.Lock()
				p.hidden[repo+"@"+dgst] = true
				p.log = append(p.log, fmt.Sprintf("dropped blob %s in %s", dgst, repo))
				p.mu.Unlock()
			}
		}}
		p.rp.ServeHTTP(sw, r)
	default:
		p.rp.ServeHTTP(w, r)
	}
}

var uploadPath = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/`)

// uploadTarget returns the repository and digest of a blob upload's
// completing request (PUT …/blobs/uploads/…?digest=…).
func uploadTarget(r *http.Request) (repo, dgst string) {
	m := uploadPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		return "", ""
	}
	return m[1], r.URL.Query().Get("digest")
}

// match returns the rule that fires for r, if any, buffering r's body when
// a rule looks at it (r.Body is then replaced by the buffer).
func (p *Proxy) match(r *http.Request) (*Rule, error) {
	p.mu.Lock()
	rules := append([]*Rule(nil), p.rules...)
	p.mu.Unlock()
	var body []byte
	bodyRead := false
	mediaType, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	mediaType = strings.TrimSpace(mediaType)
	for _, rule := range rules {
		if rule.Method != "" && rule.Method != r.Method ||
			rule.path != nil && !rule.path.MatchString(r.URL.Path) ||
			rule.query != nil && !rule.query.MatchString(r.URL.RawQuery) ||
			rule.MediaType != "" && rule.MediaType != mediaType {
			continue
		}
		if rule.body != nil {
			if !bodyRead {
				var err error
				body, err = io.ReadAll(io.LimitReader(r.Body, maxBodyMatch))
				if err != nil {
					return nil, fmt.Errorf("faultproxy: reading the request body: %w", err)
				}
				bodyRead = true
				r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
			}
			if !rule.body.Match(body) {
				continue
			}
		}
		rule.matched.Add(1)
		for {
			n := rule.fired.Load()
			if rule.Count > 0 && n >= int64(rule.Count) {
				break
			}
			if rule.fired.CompareAndSwap(n, n+1) {
				return rule, nil
			}
		}
	}
	return nil, nil
}

// writeError answers a.Status the way registries do: a JSON error body for
// 4xx (registry error codes) and for any status given a code, plain text
// for 5xx otherwise and when a.Plain (as proxies and load balancers in
// front of registries answer).
func writeError(w http.ResponseWriter, r *http.Request, a Action) {
	for k, vs := range a.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	status, code := a.Status, a.Code
	if status >= 500 && code == "" || a.Plain || r.Method == http.MethodHead {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			fmt.Fprintf(w, "%d %s (injected by faultproxy)\n", status, http.StatusText(status))
		}
		return
	}
	if code == "" {
		code = defaultCode(status)
	}
	body, _ := json.Marshal(map[string]any{"errors": []map[string]string{{
		"code": code, "message": strings.ToLower(http.StatusText(status)) + " (injected by faultproxy)",
	}}})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func defaultCode(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "UNAUTHORIZED"
	case http.StatusForbidden:
		return "DENIED"
	case http.StatusTooManyRequests:
		return "TOOMANYREQUESTS"
	case http.StatusNotFound:
		return "NAME_UNKNOWN"
	case http.StatusUnsupportedMediaType:
		return "UNSUPPORTED"
	case http.StatusMethodNotAllowed:
		return "UNSUPPORTED"
	}
	return "MANIFEST_INVALID"
}

// reset closes the client connection with a TCP RST.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("faultproxy: response writer cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// cutWriter passes a response through until left body bytes are written,
// then resets the connection.
type cutWriter struct {
	http.ResponseWriter
	left int64
	cut  bool
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.cut {
		return 0, net.ErrClosed
	}
	if int64(len(p)) <= c.left {
		c.left -= int64(len(p))
		return c.ResponseWriter.Write(p)
	}
	n, _ := c.ResponseWriter.Write(p[:c.left])
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	c.cut = true
	reset(c.ResponseWriter)
	return n, net.ErrClosed
}

func (c *cutWriter) Flush() {
	if !c.cut {
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// stallWriter passes a response through until left body bytes are
// written, flushes them, then blocks until the client is gone (done) or the
// proxy closes.
type stallWriter struct {
	http.ResponseWriter
	left         int64
	done, closed <-chan struct{}
}

func (s *stallWriter) Write(p []byte) (int, error) {
	if int64(len(p)) <= s.left {
		s.left -= int64(len(p))
		return s.ResponseWriter.Write(p)
	}
	n, _ := s.ResponseWriter.Write(p[:s.left])
	s.left = 0
	s.Flush()
	select {
	case <-s.done:
	case <-s.closed:
	}
	return n, net.ErrClosed
}

func (s *stallWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// statusWriter tells onHeader the status before the response goes out.
type statusWriter struct {
	http.ResponseWriter
	onHeader func(code int)
	written  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.written && code >= 200 {
		s.written = true
		s.onHeader(code)
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if !s.written {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
