// Package hostileregistry is a malicious registry for tests: an
// http.Handler on 127.0.0.1 speaking enough of the distribution API for
// mcbuild's reads and pushes (ping; GET, HEAD and PUT of manifests; GET and
// HEAD of blobs and blob uploads; tag lists; the referrers API with paging
// and Link headers), serving whatever a test stores, however hostile:
// indexes nested and listing each other many times, endless referrers
// pages, documents larger than any real one, documents whose served bytes
// are not what their descriptor declares, and answers that stall.
//
// Content lives in the Registry, which is an oras.Target: tests build it
// with internal/testimage or Put, in one namespace shared by every
// repository name. It counts the requests it serves (Count) and the body
// bytes it sends (Sent), so tests can bound what a client asked for.
package hostileregistry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
)

// Registry is the hostile registry's content and behavior.
type Registry struct {
	URL  string // "http://127.0.0.1:PORT"
	Host string // "127.0.0.1:PORT"

	mu        sync.Mutex
	content   map[digest.Digest]stored
	tags      map[string]digest.Digest
	answers   map[digest.Digest]Answer
	referrers ReferrersFunc
	uploads   map[string][]byte
	counts    map[string]int
	gets      map[digest.Digest]int
	sent      atomic.Int64
	done      chan struct{} // closed when the server stops: stalls end
	srv       *httptest.Server
}

type stored struct {
	mediaType string
	data      []byte
}

// Answer replaces what a GET of one digest (manifest or blob) is answered
// with. The headers still describe the stored content (Content-Type,
// Docker-Content-Digest); Content-Length is Body's length unless Endless or
// Stall (then none: chunked).
type Answer struct {
	Body    []byte // sent instead of the content
	Endless bool   // after Body, send bytes until the client goes away
	Stall   bool   // after the headers and Body, send nothing until the client goes away
}

// ReferrersFunc answers page 0, 1, ... of the referrers of subject: the
// entries of that page and whether a Link to a next page follows.
type ReferrersFunc func(subject digest.Digest, page int) (entries []ocispec.Descriptor, next bool)

// Start serves a new, empty hostile registry on 127.0.0.1 until the test
// ends.
func Start(t testing.TB) *Registry {
	r := &Registry{
		content: map[digest.Digest]stored{},
		tags:    map[string]digest.Digest{},
		answers: map[digest.Digest]Answer{},
		uploads: map[string][]byte{},
		counts:  map[string]int{},
		gets:    map[digest.Digest]int{},
		done:    make(chan struct{}),
	}
	r.srv = httptest.NewServer(r)
	r.URL = r.srv.URL
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	t.Cleanup(r.Close)
	return r
}

// Close ends every stalled answer and stops the server.
func (r *Registry) Close() {
	select {
	case <-r.done:
		return
	default:
	}
	close(r.done)
	r.srv.CloseClientConnections()
	r.srv.Close()
}

// Repo is "HOST/name".
func (r *Registry) Repo(name string) string { return r.Host + "/" + name }

// Answer makes every later GET of d answer with a.
func (r *Registry) Answer(d digest.Digest, a Answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answers[d] = a
}

// SetReferrers makes the referrers API answer with f (nil: the stored
// manifests whose subject is the digest, in one page, filtered by
// artifactType).
func (r *Registry) SetReferrers(f ReferrersFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.referrers = f
}

// EndlessReferrers answers every page with perPage distinct referrers of
// artifactType and a Link to the next page, forever.
func EndlessReferrers(perPage int, artifactType string) ReferrersFunc {
	return func(subject digest.Digest, page int) ([]ocispec.Descriptor, bool) {
		out := make([]ocispec.Descriptor, perPage)
		for i := range out {
			out[i] = ocispec.Descriptor{
				MediaType:    ocispec.MediaTypeImageManifest,
				ArtifactType: artifactType,
				Digest:       digest.FromString(fmt.Sprintf("%s %d %d", subject, page, i)),
				Size:         1000,
			}
		}
		return out, true
	}
}

// Slow is f, each page answered after delay.
func Slow(f ReferrersFunc, delay time.Duration) ReferrersFunc {
	return func(subject digest.Digest, page int) ([]ocispec.Descriptor, bool) {
		time.Sleep(delay)
		return f(subject, page)
	}
}

// Count is how many requests of method ("GET", "HEAD", "PUT", ...) for kind
// ("ping", "manifests", "blobs", "uploads", "tags", "referrers") were served.
func (r *Registry) Count(method, kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[method+" "+kind]
}

// Counts is every count, keyed "METHOD kind".
func (r *Registry) Counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.counts))
	for k, v := range r.counts {
		out[k] = v
	}
	return out
}

// Gets is how many GETs of d (manifest by digest or blob) were served.
func (r *Registry) Gets(d digest.Digest) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gets[d]
}

// Sent is the number of body bytes written to clients so far.
func (r *Registry) Sent() int64 { return r.sent.Load() }

// ---------------------------------------------------------------- oras.Target

// Put stores data (manifest or blob) and returns its descriptor.
func (r *Registry) Put(mediaType string, data []byte) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.content[d.Digest] = stored{mediaType: mediaType, data: data}
	return d
}

// Push stores what expected describes; the bytes must match it.
func (r *Registry) Push(_ context.Context, expected ocispec.Descriptor, rd io.Reader) error {
	data, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	if int64(len(data)) != expected.Size || digest.FromBytes(data) != expected.Digest {
		return fmt.Errorf("push %s: content does not match its descriptor", expected.Digest)
	}
	r.Put(expected.MediaType, data)
	return nil
}

// Fetch reads stored content (as stored, whatever Answer says).
func (r *Registry) Fetch(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	s, ok := r.get(d.Digest)
	if !ok {
		return nil, fmt.Errorf("%s: %w", d.Digest, errdef.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(s.data)), nil
}

// Exists reports whether d is stored.
func (r *Registry) Exists(_ context.Context, d ocispec.Descriptor) (bool, error) {
	_, ok := r.get(d.Digest)
	return ok, nil
}

// Resolve resolves a tag or a digest.
func (r *Registry) Resolve(_ context.Context, ref string) (ocispec.Descriptor, error) {
	d, s, ok := r.resolve(ref)
	if !ok {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", ref, errdef.ErrNotFound)
	}
	return ocispec.Descriptor{MediaType: s.mediaType, Digest: d, Size: int64(len(s.data))}, nil
}

// Tag points ref at d, which must be stored.
func (r *Registry) Tag(_ context.Context, d ocispec.Descriptor, ref string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.content[d.Digest]; !ok {
		return fmt.Errorf("tag %s: %s: %w", ref, d.Digest, errdef.ErrNotFound)
	}
	r.tags[ref] = d.Digest
	return nil
}

// Tags lists the tags, sorted.
func (r *Registry) Tags() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.tags))
	for t := range r.tags {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

func (r *Registry) get(d digest.Digest) (stored, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.content[d]
	return s, ok
}

func (r *Registry) resolve(ref string) (digest.Digest, stored, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.tags[ref]
	if !ok {
		d = digest.Digest(ref)
	}
	s, ok := r.content[d]
	return d, s, ok
}

// ---------------------------------------------------------------- HTTP

var (
	uploadPath = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/([^/]*)$`)
	objectPath = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs|referrers)/([^/]+)$`)
	tagsPath   = regexp.MustCompile(`^/v2/(.+)/tags/list$`)
)

// ServeHTTP answers the distribution API.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	p := req.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		r.count(req.Method, "ping")
		w.Header().Set("Content-Type", "application/json")
		r.write(w, []byte("{}"))
	case uploadPath.MatchString(p):
		m := uploadPath.FindStringSubmatch(p)
		r.count(req.Method, "uploads")
		r.upload(w, req, m[1], m[2])
	case objectPath.MatchString(p):
		m := objectPath.FindStringSubmatch(p)
		r.count(req.Method, m[2])
		switch {
		case m[2] == "referrers" && req.Method == http.MethodGet:
			r.serveReferrers(w, req, m[1], digest.Digest(m[3]))
		case m[2] == "manifests" && req.Method == http.MethodPut:
			r.putManifest(w, req, m[1], m[3])
		case req.Method == http.MethodGet || req.Method == http.MethodHead:
			r.serveObject(w, req, m[2], m[3])
		default:
			fail(w, http.StatusMethodNotAllowed, "UNSUPPORTED", req.Method)
		}
	case tagsPath.MatchString(p) && req.Method == http.MethodGet:
		r.count(req.Method, "tags")
		name := tagsPath.FindStringSubmatch(p)[1]
		b, _ := json.Marshal(struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}{name, r.Tags()})
		w.Header().Set("Content-Type", "application/json")
		r.write(w, b)
	default:
		r.count(req.Method, "other")
		fail(w, http.StatusNotFound, "NAME_UNKNOWN", p)
	}
}

func (r *Registry) count(method, kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[method+" "+kind]++
}

func (r *Registry) write(w http.ResponseWriter, b []byte) {
	n, _ := w.Write(b)
	r.sent.Add(int64(n))
}

func fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
	_, _ = w.Write(b)
}

// serveObject answers GET or HEAD of a manifest (by tag or digest) or a
// blob, or the hostile Answer set for its digest.
func (r *Registry) serveObject(w http.ResponseWriter, req *http.Request, kind, ref string) {
	var (
		d  digest.Digest
		s  stored
		ok bool
	)
	if kind == "manifests" {
		d, s, ok = r.resolve(ref)
	} else {
		d = digest.Digest(ref)
		s, ok = r.get(d)
	}
	if !ok {
		code := "MANIFEST_UNKNOWN"
		if kind == "blobs" {
			code = "BLOB_UNKNOWN"
		}
		fail(w, http.StatusNotFound, code, ref)
		return
	}
	h := w.Header()
	h.Set("Content-Type", s.mediaType)
	h.Set("Docker-Content-Digest", d.String())
	r.mu.Lock()
	a, hostile := r.answers[d]
	if req.Method == http.MethodGet {
		r.gets[d]++
	}
	r.mu.Unlock()
	if !hostile || req.Method == http.MethodHead {
		h.Set("Content-Length", fmt.Sprint(len(s.data)))
		if req.Method == http.MethodGet {
			r.write(w, s.data)
		}
		return
	}
	r.answer(w, req, a)
}

// answer sends a hostile Answer.
func (r *Registry) answer(w http.ResponseWriter, req *http.Request, a Answer) {
	if !a.Endless && !a.Stall {
		w.Header().Set("Content-Length", fmt.Sprint(len(a.Body)))
		r.write(w, a.Body)
		return
	}
	w.WriteHeader(http.StatusOK)
	r.write(w, a.Body)
	flush(w)
	if a.Stall {
		select {
		case <-req.Context().Done():
		case <-r.done:
		}
		return
	}
	chunk := bytes.Repeat([]byte(" "), 32<<10)
	for {
		select {
		case <-req.Context().Done():
			return
		case <-r.done:
			return
		default:
		}
		n, err := w.Write(chunk)
		r.sent.Add(int64(n))
		if err != nil {
			return
		}
		flush(w)
	}
}

func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// serveReferrers answers one page of the referrers API, with a Link to the
// next page when there is one.
func (r *Registry) serveReferrers(w http.ResponseWriter, req *http.Request, name string, subject digest.Digest) {
	page := 0
	fmt.Sscan(req.URL.Query().Get("page"), &page)
	r.mu.Lock()
	f := r.referrers
	r.mu.Unlock()
	var entries []ocispec.Descriptor
	next := false
	if f != nil {
		entries, next = f(subject, page)
	} else {
		entries = r.storedReferrers(subject, req.URL.Query().Get("artifactType"))
		if req.URL.Query().Get("artifactType") != "" {
			w.Header().Set("OCI-Filters-Applied", "artifactType")
		}
	}
	if entries == nil {
		entries = []ocispec.Descriptor{}
	}
	b, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: entries})
	if err != nil {
		fail(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	if next {
		q := req.URL.Query()
		q.Set("page", fmt.Sprint(page+1))
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/referrers/%s?%s>; rel="next"`, name, subject, q.Encode()))
	}
	w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
	r.write(w, b)
}

// storedReferrers lists the stored manifests whose subject is subject.
func (r *Registry) storedReferrers(subject digest.Digest, artifactType string) []ocispec.Descriptor {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ocispec.Descriptor
	for d, s := range r.content {
		if s.mediaType != ocispec.MediaTypeImageManifest {
			continue
		}
		var m ocispec.Manifest
		if json.Unmarshal(s.data, &m) != nil || m.Subject == nil || m.Subject.Digest != subject {
			continue
		}
		at := m.ArtifactType
		if at == "" {
			at = m.Config.MediaType
		}
		if artifactType != "" && at != artifactType {
			continue
		}
		out = append(out, ocispec.Descriptor{MediaType: s.mediaType, ArtifactType: at, Digest: d, Size: int64(len(s.data)), Annotations: m.Annotations})
	}
	slices.SortFunc(out, func(a, b ocispec.Descriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	return out
}

// maxPut bounds what a PUT or PATCH may send.
const maxPut = 64 << 20

// putManifest stores a pushed manifest, tags it when ref is a tag, and
// answers OCI-Subject for one with a subject (the referrers API is
// supported).
func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request, name, ref string) {
	data, err := io.ReadAll(io.LimitReader(req.Body, maxPut))
	if err != nil {
		fail(w, http.StatusBadRequest, "MANIFEST_INVALID", err.Error())
		return
	}
	d := r.Put(req.Header.Get("Content-Type"), data)
	if dd, err := digest.Parse(ref); err == nil && dd != d.Digest {
		fail(w, http.StatusBadRequest, "DIGEST_INVALID", ref)
		return
	} else if err != nil {
		_ = r.Tag(req.Context(), d, ref)
	}
	var m struct {
		Subject *ocispec.Descriptor `json:"subject"`
	}
	if json.Unmarshal(data, &m) == nil && m.Subject != nil {
		w.Header().Set("OCI-Subject", m.Subject.Digest.String())
	}
	w.Header().Set("Location", fmt.Sprintf("/v2/%s/manifests/%s", name, d.Digest))
	w.Header().Set("Docker-Content-Digest", d.Digest.String())
	w.WriteHeader(http.StatusCreated)
}

// upload handles blob uploads: POST starts one (or, with ?digest=, is the
// whole upload), PATCH appends, PUT ?digest= completes it.
func (r *Registry) upload(w http.ResponseWriter, req *http.Request, name, id string) {
	data, err := io.ReadAll(io.LimitReader(req.Body, maxPut))
	if err != nil {
		fail(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", err.Error())
		return
	}
	r.mu.Lock()
	if req.Method == http.MethodPost {
		id = fmt.Sprintf("u%d", len(r.uploads)+1)
		r.uploads[id] = nil
	}
	prev, ok := r.uploads[id]
	if ok {
		r.uploads[id] = append(prev, data...)
		data = r.uploads[id]
	}
	r.mu.Unlock()
	if !ok {
		fail(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", id)
		return
	}
	want := req.URL.Query().Get("digest")
	if want == "" || req.Method == http.MethodPatch {
		w.Header().Set("Location", fmt.Sprintf("/v2/%s/blobs/uploads/%s", name, id))
		w.Header().Set("Range", fmt.Sprintf("0-%d", max(len(data)-1, 0)))
		w.WriteHeader(http.StatusAccepted)
		return
	}
	d := digest.FromBytes(data)
	if d.String() != want {
		fail(w, http.StatusBadRequest, "DIGEST_INVALID", want)
		return
	}
	if _, ok := r.get(d); !ok {
		r.Put("application/octet-stream", data)
	}
	w.Header().Set("Location", fmt.Sprintf("/v2/%s/blobs/%s", name, d))
	w.Header().Set("Docker-Content-Digest", d.String())
	w.WriteHeader(http.StatusCreated)
}
