package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mcbuild/mcbuild/internal/faultproxy"
	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/testimage"
	"github.com/mcbuild/mcbuild/internal/testregistry"
	"github.com/mcbuild/mcbuild/pkg/subjects"
)

// Paths of the one repository the fault tests push to, as the proxy sees
// them.
const (
	faultRepo     = "e2e/faults"
	pBlobUpload   = `^/v2/e2e/faults/blobs/uploads/$`      // POST: start an upload
	pBlobChunk    = `^/v2/e2e/faults/blobs/uploads/[^/]+$` // PATCH / PUT: upload data
	pByDigest     = `^/v2/e2e/faults/manifests/sha256:`    // manifests and the index, by digest
	pTag          = `^/v2/e2e/faults/manifests/v1$`        // moving the user's tag
	pManifestRead = `^/v2/e2e/faults/manifests/sha256:[0-9a-f]+$`
)

// faultCase is one injected fault and what it must lead to.
type faultCase struct {
	name    string
	olareg  bool // backend with the referrers API (default: distribution, without)
	rules   []*faultproxy.Rule
	args    []string // extra flags (they win over the defaults)
	authed  bool     // the backend requires credentials (to show none leak)
	wantOK  bool     // transient: the publish succeeds
	want    []string // substrings of stderr (the registry is always required)
	absent  []string // substrings stderr must not have
	fired   map[string][2]int
	maxTime time.Duration
	minTime time.Duration
	check   func(t *testing.T, r result, res map[string]string)
}

// TestFaults runs the mcbuild binary through a fault-injecting proxy in
// front of a real registry. Transient faults are retried and give the
// digests of a clean run; persistent ones fail within a bounded time naming
// the registry, the operation and the status, leave the tag and write no
// result, and a rerun without the fault converges to the clean digests.
//
// One proxy (one host:port, so one repository name and identical subjects
// artifacts) serves every case; each case gets a fresh registry behind it.
func TestFaults(t *testing.T) {
	const user, pass = "fault-user", "Fault-Pa55-never-printed"
	proxy := faultproxy.Start(t, testregistry.StartDistribution(t).URL)
	repoName := proxy.Host + "/" + faultRepo
	dir := contextFiles(t, copyContainerfile)
	env := []string{"SOURCE_DATE_EPOCH=1700000000"}
	authFile := filepath.Join(t.TempDir(), "auth.json")
	authJSON, _ := json.Marshal(map[string]any{"auths": map[string]any{proxy.Host: map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))}}})
	if err := os.WriteFile(authFile, authJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	build := func(t *testing.T, resultsDir string, extra ...string) (result, time.Duration) {
		args := []string{"build", "--tls-verify=false", "--authfile", authFile, "--image", repoName + ":v1", "--context", dir,
			"--platform", "linux/amd64", "--results-dir", resultsDir, "--retry", "2", "--retry-delay", "50ms", "--request-timeout", "2s"}
		args = append(append(args, storageFlags(t)...), extra...)
		start := time.Now()
		r := run(t, env, args...)
		return r, time.Since(start)
	}

	// The clean run every case is compared with.
	cleanDir := t.TempDir()
	if r, _ := build(t, cleanDir); r.code != 0 {
		t.Fatalf("clean run: exit %d\n%s", r.code, r.stderr)
	}
	clean := readResults(t, cleanDir)
	if clean["IMAGE_DIGEST"] == "" || clean["SUBJECTS_REF"] == "" || clean["IMAGES"] == "" {
		t.Fatalf("clean run results %v", clean)
	}

	idxType, mfType := ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest

	cases := []faultCase{
		// Transient: retried, then the same digests as the clean run.
		{name: "503 twice when a layer upload starts", wantOK: true,
			rules: []*faultproxy.Rule{rule("f", http.MethodPost, pBlobUpload, 2, faultproxy.Status(503))},
			fired: map[string][2]int{"f": {2, 2}}, want: []string{"retrying", "HTTP 503"}},
		{name: "502 twice on the index push", wantOK: true,
			rules: []*faultproxy.Rule{typed(rule("f", http.MethodPut, pByDigest, 2, faultproxy.Status(502)), idxType)},
			fired: map[string][2]int{"f": {2, 2}}},
		{name: "429 with Retry-After 1 on the tag", wantOK: true, minTime: time.Second,
			rules: []*faultproxy.Rule{rule("f", http.MethodPut, pTag, 1, faultproxy.StatusRetryAfter(429, "1"))},
			fired: map[string][2]int{"f": {1, 1}}},
		{name: "429 without Retry-After on an image manifest push", wantOK: true,
			rules: []*faultproxy.Rule{typed(rule("f", http.MethodPut, pByDigest, 1, faultproxy.Status(429)), mfType)},
			fired: map[string][2]int{"f": {1, 1}}, want: []string{"retrying", "HTTP 429"}},
		{name: "500 on the subjects artifact push", wantOK: true,
			rules: []*faultproxy.Rule{bodied(typed(rule("f", http.MethodPut, pByDigest, 1, faultproxy.Status(500)), mfType), `"subject"`)},
			fired: map[string][2]int{"f": {1, 1}}},
		{name: "connection reset mid-body on a blob upload", wantOK: true,
			rules: []*faultproxy.Rule{rule("f", http.MethodPut, pBlobChunk, 1, faultproxy.ResetRequest(64))},
			fired: map[string][2]int{"f": {1, 1}}, want: []string{"retrying"}},
		{name: "connection reset mid-body on the index push", wantOK: true,
			rules: []*faultproxy.Rule{typed(rule("f", http.MethodPut, pByDigest, 1, faultproxy.ResetRequest(64)), idxType)},
			fired: map[string][2]int{"f": {1, 1}}},
		{name: "connection reset mid-answer while verifying a manifest", wantOK: true,
			rules: []*faultproxy.Rule{rule("f", http.MethodGet, pManifestRead, 1, faultproxy.ResetResponse(40))},
			fired: map[string][2]int{"f": {1, 1}}},
		{name: "one stalled blob upload", wantOK: true, minTime: 2 * time.Second,
			rules: []*faultproxy.Rule{rule("f", http.MethodPut, pBlobChunk, 1, faultproxy.Stall(0))},
			fired: map[string][2]int{"f": {1, 1}}, want: []string{"no progress for 2s"}},
		{name: "one stalled index push", wantOK: true, minTime: 2 * time.Second,
			rules: []*faultproxy.Rule{typed(rule("f", http.MethodPut, pByDigest, 1, faultproxy.Stall(0)), idxType)},
			fired: map[string][2]int{"f": {1, 1}}},

		// Persistent: bounded failure, tag left, no results, rerun converges.
		{name: "503 on every index push",
			rules: []*faultproxy.Rule{typed(rule("f", http.MethodPut, pByDigest, 0, faultproxy.Status(503)), idxType)},
			fired: map[string][2]int{"f": {3, 3}}, want: []string{"pushing the index", "HTTP 503", "still failing after 3 attempts"}},
		{name: "503 on every layer upload start",
			rules: []*faultproxy.Rule{rule("f", http.MethodPost, pBlobUpload, 0, faultproxy.Status(503))},
			fired: map[string][2]int{"f": {3, 6}}, want: []string{"pushing linux/amd64", "variant", "HTTP 503", "still failing after 3 attempts"}},
		{name: "401 on layer upload: not retried", authed: true,
			rules: []*faultproxy.Rule{rule("f", http.MethodPost, pBlobUpload, 0, faultproxy.Status(401))},
			fired: map[string][2]int{"f": {1, 2}}, want: []string{"pushing linux/amd64", "HTTP 401", "not retried"}},
		{name: "403 on the tag: not retried", authed: true,
			rules: []*faultproxy.Rule{rule("f", http.MethodPut, pTag, 0, faultproxy.Status(403))},
			fired: map[string][2]int{"f": {1, 1}}, want: []string{"tagging", "HTTP 403", "not retried"}},
		{name: "every index push stalls", args: []string{"--request-timeout", "1s", "--retry", "1"}, maxTime: 30 * time.Second,
			rules: []*faultproxy.Rule{typed(rule("f", http.MethodPut, pByDigest, 0, faultproxy.Stall(0)), idxType)},
			fired: map[string][2]int{"f": {2, 2}}, want: []string{"pushing the index", "request timeout"}},
		{name: "every blob upload stalls", args: []string{"--request-timeout", "1s", "--retry", "1"}, maxTime: 30 * time.Second,
			rules: []*faultproxy.Rule{rule("f", http.MethodPut, pBlobChunk, 0, faultproxy.Stall(0))},
			fired: map[string][2]int{"f": {2, 4}}, want: []string{"pushing linux/amd64", "no progress for 1s"}},
		{name: "a blob dropped after its upload is caught before the tag moves",
			rules: []*faultproxy.Rule{rule("f", http.MethodPut, pBlobChunk, 1, faultproxy.Drop())},
			fired: map[string][2]int{"f": {1, 1}}, want: []string{"before tagging", "missing from the registry", "the tag was not moved"}},

		// A registry that refuses the OCI 1.1 form of the subjects artifact
		// and the SBOMs (one per manifest, one for the index: 4 referrers).
		{name: "subject refused: OCI 1.0 fallback form", wantOK: true,
			rules: []*faultproxy.Rule{bodied(rule("f", http.MethodPut, pByDigest, 0, faultproxy.StatusCode(400, "MANIFEST_INVALID")), `"subject"`)},
			fired: map[string][2]int{"f": {4, 4}}, want: []string{"OCI 1.0 fallback form", "HTTP 400", "the index SBOM as an OCI 1.1 artifact"},
			check: checkFallback(repoName)},
		{name: "artifactType refused on a registry with the referrers API: fallback", olareg: true, wantOK: true,
			rules: []*faultproxy.Rule{bodied(rule("f", http.MethodPut, `^/v2/e2e/faults/manifests/`, 0, faultproxy.Status(415)), `"artifactType"`)},
			fired: map[string][2]int{"f": {4, 4}}, want: []string{"OCI 1.0 fallback form", "HTTP 415"},
			check: checkFallback(repoName)},

		// A failed SBOM push fails the run like any publish failure.
		{name: "503 on every SBOM referrer push",
			rules: []*faultproxy.Rule{bodied(typed(rule("f", http.MethodPut, pByDigest, 0, faultproxy.Status(503)), mfType), `"artifactType":"application/spdx\+json"`)},
			fired: map[string][2]int{"f": {3, 6}}, want: []string{"attaching the linux/amd64 SBOM", "HTTP 503", "still failing after 3 attempts"}},
		{name: "403 on the SBOM blob upload: not retried",
			rules: []*faultproxy.Rule{bodied(rule("f", http.MethodPut, pBlobChunk, 0, faultproxy.Status(403)), `"spdxVersion"`)},
			fired: map[string][2]int{"f": {1, 2}}, want: []string{"SBOM", "HTTP 403", "not retried"}},
		{name: "both SBOM forms refused: clear error",
			rules: []*faultproxy.Rule{bodied(rule("f", http.MethodPut, pByDigest, 0, faultproxy.StatusCode(400, "MANIFEST_INVALID")), `application/spdx\+json`)},
			fired: map[string][2]int{"f": {2, 4}}, want: []string{"SBOM as an OCI 1.1 artifact", "in the OCI 1.0 fallback form", "HTTP 400"}},
		{name: "both subjects forms refused: clear error",
			rules: []*faultproxy.Rule{bodied(rule("f", http.MethodPut, pByDigest, 0, faultproxy.StatusCode(400, "MANIFEST_INVALID")), `application/vnd\.mcbuild\.subjects\.v1\+json`)},
			fired: map[string][2]int{"f": {2, 2}}, want: []string{"pushing the subjects artifact", "as an OCI 1.1 artifact", "in the OCI 1.0 fallback form", "HTTP 400"}},
	}

	cases = append(cases, errorBodyCases()...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var backend *testregistry.Registry
			var opts []testregistry.Option
			if tc.authed {
				opts = append(opts, testregistry.WithHtpasswd(user, pass))
			}
			if tc.olareg {
				backend = testregistry.StartOlareg(t)
			} else {
				backend = testregistry.StartDistribution(t, opts...)
			}
			proxy.Reset()
			if err := proxy.SetBackend(backend.URL); err != nil {
				t.Fatal(err)
			}
			// The tag already points at an older image: it must stay there
			// on failure.
			direct := testregistry.OpenRepo(t, backend.Repo(faultRepo))
			if tc.authed {
				direct.Client = basicAuthClient(user, pass)
			}
			old := testimage.New(t, direct).Image("linux/amd64", formats.Gzip)
			if err := direct.Tag(context.Background(), old, "v1"); err != nil {
				t.Fatal(err)
			}
			for _, r := range tc.rules {
				proxy.Add(r)
			}
			resultsDir := t.TempDir()
			r, took := build(t, resultsDir, tc.args...)
			t.Logf("exit %d after %s", r.code, took.Round(time.Millisecond))
			for _, l := range strings.Split(r.stderr, "\n") {
				if strings.HasPrefix(l, "Error:") || strings.HasPrefix(l, "Warning: the registry") || strings.HasPrefix(l, "retrying") {
					t.Log(l)
				}
			}
			defer func() {
				if t.Failed() {
					t.Logf("exit %d after %s\nstderr:\n%s\nproxy log:\n%s", r.code, took, r.stderr, strings.Join(proxy.Log(), "\n"))
				}
			}()
			for _, secret := range []string{pass, base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))} {
				if strings.Contains(r.stderr+r.stdout, secret) {
					t.Fatalf("output contains a credential")
				}
			}
			for name, want := range tc.fired {
				if got := proxy.Fired(name); got < want[0] || got > want[1] {
					t.Errorf("rule %s fired %d times, want %d..%d", name, got, want[0], want[1])
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q", w)
				}
			}
			for _, w := range tc.absent {
				if strings.Contains(r.stderr, w) {
					t.Errorf("stderr has %q", w)
				}
			}
			if tc.minTime > 0 && took < tc.minTime {
				t.Errorf("took %s, want at least %s", took, tc.minTime)
			}
			maxTime := tc.maxTime
			if maxTime == 0 {
				maxTime = 45 * time.Second
			}
			if took > maxTime {
				t.Errorf("took %s, want at most %s", took, maxTime)
			}
			tagged, err := direct.Resolve(context.Background(), "v1")
			if err != nil {
				t.Fatalf("resolving v1: %v", err)
			}
			res := readResults(t, resultsDir)

			if tc.wantOK {
				if r.code != 0 {
					t.Fatalf("exit %d, want success after retries", r.code)
				}
				if res["IMAGE_DIGEST"] != clean["IMAGE_DIGEST"] || res["IMAGES"] != clean["IMAGES"] {
					t.Errorf("digests differ from the clean run:\n got %s %s\nwant %s %s", res["IMAGE_DIGEST"], res["IMAGES"], clean["IMAGE_DIGEST"], clean["IMAGES"])
				}
				if tc.check == nil && res["SUBJECTS_REF"] != clean["SUBJECTS_REF"] {
					t.Errorf("SUBJECTS_REF %s, clean run %s", res["SUBJECTS_REF"], clean["SUBJECTS_REF"])
				}
				if tagged.Digest.String() != clean["IMAGE_DIGEST"] {
					t.Errorf("tag v1 -> %s, want the index %s", tagged.Digest, clean["IMAGE_DIGEST"])
				}
				if tc.check != nil {
					tc.check(t, r, res)
				}
				return
			}

			if r.code == 0 {
				t.Fatalf("exit 0, want failure")
			}
			if !strings.Contains(r.stderr, proxy.Host) {
				t.Errorf("stderr does not name the registry %s", proxy.Host)
			}
			if tagged.Digest != old.Digest {
				t.Errorf("tag v1 moved to %s (was %s)", tagged.Digest, old.Digest)
			}
			if len(res) != 0 {
				t.Errorf("results written on failure: %v", res)
			}
			// Without the fault, a rerun converges to the clean digests.
			proxy.Reset()
			rerunDir := t.TempDir()
			again, _ := build(t, rerunDir)
			if again.code != 0 {
				t.Fatalf("rerun: exit %d\n%s", again.code, again.stderr)
			}
			rerun := readResults(t, rerunDir)
			for _, k := range []string{"IMAGE_DIGEST", "IMAGES", "SUBJECTS_REF"} {
				if rerun[k] != clean[k] {
					t.Errorf("rerun %s = %s, clean run %s", k, rerun[k], clean[k])
				}
			}
		})
	}
}

// rule fires a for the first count requests (0: every one) of method on
// path; name is how a case counts its firings.
func rule(name, method, path string, count int, a faultproxy.Action) *faultproxy.Rule {
	return &faultproxy.Rule{Name: name, Method: method, Path: path, Count: count, Action: a}
}

// typed narrows r to requests of mediaType.
func typed(r *faultproxy.Rule, mediaType string) *faultproxy.Rule { r.MediaType = mediaType; return r }

// bodied narrows r to requests whose body matches body.
func bodied(r *faultproxy.Rule, body string) *faultproxy.Rule { r.Body = body; return r }

// errorBodyCases: a registry error body (JSON, registry error code) on an
// answer other than the code's own status. Every oras request (the stream
// publisher's blobs and manifests, the index, subjects artifact and tag)
// keeps the real status: 408 retried, 401/403 not, the status named.
// containers/image (the copy publisher) keeps the code and drops the
// status: UNAVAILABLE is retried, UNKNOWN is not, and the message says
// which code came, not a status.
func errorBodyCases() []faultCase {
	idxType, mfType := ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest
	unavailable408 := faultproxy.StatusCode(http.StatusRequestTimeout, "UNAVAILABLE")
	copyPublisher := []string{"--publisher", "copy"}
	return []faultCase{
		{name: "408 UNAVAILABLE twice when a blob upload starts", wantOK: true,
			rules: []*faultproxy.Rule{rule("f", http.MethodPost, pBlobUpload, 2, unavailable408)},
			fired: map[string][2]int{"f": {2, 2}}, want: []string{"retrying", "HTTP 408 Request Timeout"}, absent: []string{"HTTP 400"}},
		{name: "408 UNAVAILABLE once on a blob upload's PUT", wantOK: true,
			rules: []*faultproxy.Rule{rule("f", http.MethodPut, pBlobChunk, 1, unavailable408)},
			fired: map[string][2]int{"f": {1, 1}}, want: []string{"retrying", "HTTP 408 Request Timeout"}},
		{name: "408 UNAVAILABLE once on an image manifest push", wantOK: true,
			rules: []*faultproxy.Rule{typed(rule("f", http.MethodPut, pByDigest, 1, unavailable408), mfType)},
			fired: map[string][2]int{"f": {1, 1}}, want: []string{"retrying", "HTTP 408 Request Timeout"}},
		{name: "copy: 408 UNAVAILABLE twice when a blob upload starts", wantOK: true, args: copyPublisher,
			rules: []*faultproxy.Rule{rule("f", http.MethodPost, pBlobUpload, 2, unavailable408)},
			fired: map[string][2]int{"f": {2, 2}}, want: []string{"retrying linux/amd64", "registry error UNAVAILABLE"}},
		{name: "copy: 408 UNAVAILABLE once on a layer PATCH", wantOK: true, args: copyPublisher,
			rules: []*faultproxy.Rule{rule("f", http.MethodPatch, pBlobChunk, 1, unavailable408)},
			fired: map[string][2]int{"f": {1, 1}}, want: []string{"retrying linux/amd64", "registry error UNAVAILABLE"}},
		{name: "copy: 408 UNAVAILABLE once on a blob upload's closing PUT", wantOK: true, args: copyPublisher,
			rules: []*faultproxy.Rule{rule("f", http.MethodPut, pBlobChunk, 1, unavailable408)},
			fired: map[string][2]int{"f": {1, 1}}, want: []string{"retrying linux/amd64", "registry error UNAVAILABLE"}},
		{name: "copy: 408 UNAVAILABLE once on an image manifest push", wantOK: true, args: copyPublisher,
			rules: []*faultproxy.Rule{typed(rule("f", http.MethodPut, pByDigest, 1, unavailable408), mfType)},
			fired: map[string][2]int{"f": {1, 1}}, want: []string{"retrying linux/amd64", "registry error UNAVAILABLE"}},
		{name: "408 UNAVAILABLE twice on the index push", wantOK: true,
			rules: []*faultproxy.Rule{typed(rule("f", http.MethodPut, pByDigest, 2, unavailable408), idxType)},
			fired: map[string][2]int{"f": {2, 2}}},
		{name: "408 UNAVAILABLE on every blob upload start",
			rules: []*faultproxy.Rule{rule("f", http.MethodPost, pBlobUpload, 0, unavailable408)},
			fired: map[string][2]int{"f": {3, 6}}, absent: []string{"HTTP 400"},
			want: []string{"pushing linux/amd64", "HTTP 408 Request Timeout, still failing after 3 attempts"}},
		{name: "copy: 408 UNAVAILABLE on every blob upload start", args: copyPublisher,
			rules: []*faultproxy.Rule{rule("f", http.MethodPost, pBlobUpload, 0, unavailable408)},
			fired: map[string][2]int{"f": {3, 6}}, absent: []string{"HTTP 400"},
			want: []string{"variant", "HTTP 4xx with registry error UNAVAILABLE (containers/image does not report which status), still failing after 3 attempts"}},
		{name: "408 with a plain text body (as a proxy answers) on every blob upload's PUT",
			rules: []*faultproxy.Rule{rule("f", http.MethodPut, pBlobChunk, 0, faultproxy.StatusPlain(http.StatusRequestTimeout))},
			fired: map[string][2]int{"f": {3, 6}}, want: []string{"pushing linux/amd64", "HTTP 408 Request Timeout, still failing after 3 attempts"}},
		{name: "408 UNKNOWN on every image manifest push: retried by its status",
			rules: []*faultproxy.Rule{typed(rule("f", http.MethodPut, pByDigest, 0, faultproxy.StatusCode(408, "UNKNOWN")), mfType)},
			fired: map[string][2]int{"f": {3, 6}}, absent: []string{"HTTP 400"},
			want: []string{"pushing linux/amd64", "HTTP 408 Request Timeout, still failing after 3 attempts"}},
		{name: "401 UNKNOWN on layer upload start: not retried", authed: true,
			rules: []*faultproxy.Rule{rule("f", http.MethodPost, pBlobUpload, 0, faultproxy.StatusCode(401, "UNKNOWN"))},
			fired: map[string][2]int{"f": {1, 2}}, absent: []string{"HTTP 400"},
			want: []string{"pushing linux/amd64", "HTTP 401 Unauthorized", "not retried"}},
		{name: "403 UNAVAILABLE on every blob upload start: named 403, not retried", authed: true,
			rules: []*faultproxy.Rule{rule("f", http.MethodPost, pBlobUpload, 0, faultproxy.StatusCode(403, "UNAVAILABLE"))},
			fired: map[string][2]int{"f": {1, 2}}, absent: []string{"HTTP 400"},
			want: []string{"pushing linux/amd64", "HTTP 403 Forbidden, not retried"}},
		{name: "copy: 403 FORBIDDEN (unregistered code) on every manifest push: not retried", authed: true, args: copyPublisher,
			rules: []*faultproxy.Rule{typed(rule("f", http.MethodPut, pByDigest, 0, faultproxy.StatusCode(403, "FORBIDDEN")), mfType)},
			fired: map[string][2]int{"f": {1, 2}}, absent: []string{"HTTP 400"},
			want: []string{"variant", "registry error UNKNOWN", "not retried"}},
		{name: "408 UNKNOWN on every subjects artifact push",
			rules: []*faultproxy.Rule{bodied(typed(rule("f", http.MethodPut, pByDigest, 0, faultproxy.StatusCode(408, "UNKNOWN")), mfType), `"subject"`)},
			fired: map[string][2]int{"f": {3, 3}}, want: []string{"pushing the subjects artifact", "HTTP 408 Request Timeout, still failing after 3 attempts"}},
		{name: "401 UNKNOWN on the index push: not retried", authed: true,
			rules: []*faultproxy.Rule{typed(rule("f", http.MethodPut, pByDigest, 0, faultproxy.StatusCode(401, "UNKNOWN")), idxType)},
			fired: map[string][2]int{"f": {1, 1}}, want: []string{"pushing the index", "HTTP 401 Unauthorized, not retried"}},
		{name: "403 UNAVAILABLE on the subjects artifact push: not retried", authed: true,
			rules: []*faultproxy.Rule{bodied(typed(rule("f", http.MethodPut, pByDigest, 0, faultproxy.StatusCode(403, "UNAVAILABLE")), mfType), `"subject"`)},
			fired: map[string][2]int{"f": {1, 1}}, want: []string{"pushing the subjects artifact", "HTTP 403 Forbidden, not retried"}},
	}
}

// checkFallback: the subjects artifact is in the OCI 1.0 form under the
// documented tag, found from the index, and verifies.
func checkFallback(repoName string) func(t *testing.T, r result, res map[string]string) {
	return func(t *testing.T, r result, res map[string]string) {
		t.Helper()
		ctx := context.Background()
		repo := testregistry.OpenRepo(t, repoName)
		idx := digest.Digest(res["IMAGE_DIGEST"])
		tagged, err := repo.Resolve(ctx, subjects.FallbackTag(idx))
		if err != nil {
			t.Fatalf("fallback tag %s: %v", subjects.FallbackTag(idx), err)
		}
		if repoName+"@"+tagged.Digest.String() != res["SUBJECTS_REF"] {
			t.Errorf("SUBJECTS_REF %s, fallback tag points at %s", res["SUBJECTS_REF"], tagged.Digest)
		}
		_, m, err := subjects.Fetch(ctx, repo, tagged)
		if err != nil || !subjects.IsFallbackForm(m) {
			t.Fatalf("fallback artifact: %v (fallback form %v)", err, subjects.IsFallbackForm(m))
		}
		v := run(t, nil, "subjects", "verify", "--tls-verify=false", "--require-sbom", repoName+":v1")
		if v.code != 0 || !strings.Contains(v.stdout, "matches") || !strings.Contains(v.stdout, "has an SBOM") {
			t.Errorf("subjects verify --require-sbom from the index: exit %d\n%s%s", v.code, v.stdout, v.stderr)
		}
		v = run(t, nil, "subjects", "verify", "--tls-verify=false", res["SUBJECTS_REF"])
		if v.code != 0 {
			t.Errorf("subjects verify of SUBJECTS_REF: exit %d\n%s", v.code, v.stderr)
		}
	}
}

// basicAuthClient sends basic credentials with every request.
func basicAuthClient(user, pass string) *http.Client {
	return &http.Client{Transport: basicAuth{user, pass}}
}

type basicAuth struct{ user, pass string }

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.pass)
	return http.DefaultTransport.RoundTrip(r)
}
