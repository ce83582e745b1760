package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcbuild/mcbuild/internal/faultproxy"
	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/testimage"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// TestReadStalls: a manifest GET whose body stops coming after the headers
// (the registry's headers and 20 bytes, then nothing), or the subjects
// layer's blob GET, is read again within the same request's retries by
// `index`, `inspect` and `subjects verify` (and `show`):
// stalled once, each command succeeds; stalled every time, each fails
// saying the request timeout expired, the flag that sets it and how many
// requests were sent, never with a raw "read tcp …: i/o timeout".
func TestReadStalls(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	proxy := faultproxy.Start(t, reg.URL)
	const repoPath = "e2e/reads"
	direct := testregistry.OpenRepo(t, reg.Repo(repoPath))
	b := testimage.New(t, direct)
	var from []string
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		tag := "in-" + strings.ReplaceAll(p, "/", "-")
		b.Tag(b.Index(b.Image(p, formats.Gzip), b.Image(p, formats.ZstdChunked)), tag)
		from = append(from, "--from", proxy.Host+"/"+repoPath+":"+tag)
	}
	ref := proxy.Host + "/" + repoPath + ":v1"
	flags := []string{"--tls-verify=false", "--retry", "1", "--retry-delay", "50ms", "--request-timeout", "1s"}
	const manifests, blobs = `^/v2/e2e/reads/manifests/`, `^/v2/e2e/reads/blobs/`
	// index goes first: the others read the index it publishes.
	commands := []struct {
		name, path string
		args       []string
	}{
		{"index", manifests, append(append([]string{"index", "--image", ref}, from...), flags...)},
		{"inspect", manifests, append([]string{"inspect", ref}, flags...)},
		{"subjects verify", manifests, append([]string{"subjects", "verify", ref}, flags...)},
		// The one blob these commands read: the subjects layer (a document).
		{"subjects verify, subjects layer", blobs, append([]string{"subjects", "verify", ref}, flags...)},
		{"subjects show, subjects layer", blobs, append([]string{"subjects", "show", ref}, flags...)},
	}
	for _, c := range commands {
		// runStalled runs the command with the first count reads (0: all)
		// stalled.
		runStalled := func(t *testing.T, count int) (*faultproxy.Rule, result, time.Duration) {
			proxy.Reset()
			r := proxy.Add(&faultproxy.Rule{Method: http.MethodGet, Path: c.path, Count: count, Action: faultproxy.StallResponse(20)})
			start := time.Now()
			res := run(t, nil, c.args...)
			return r, res, time.Since(start)
		}
		t.Run(c.name+"/stalled once", func(t *testing.T) {
			r, res, took := runStalled(t, 1)
			if res.code != 0 {
				t.Fatalf("exit %d after %s\n%s\nproxy log:\n%s", res.code, took, res.stderr, strings.Join(proxy.Log(), "\n"))
			}
			if r.Fired() != 1 || took < time.Second {
				t.Errorf("stall fired %d times, run took %s; want once, at least the 1s request timeout", r.Fired(), took)
			}
		})
		t.Run(c.name+"/stalled always", func(t *testing.T) {
			r, res, took := runStalled(t, 0)
			t.Logf("exit %d after %s: %s", res.code, took.Round(time.Millisecond), strings.TrimSpace(res.stderr))
			if res.code == 0 {
				t.Fatal("exit 0 with every manifest read stalled")
			}
			for _, want := range []string{proxy.Host, "no progress for 1s (request timeout)", "still failing after 2 attempts", "--request-timeout sets it"} {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("stderr lacks %q", want)
				}
			}
			if strings.Contains(res.stderr, "read tcp") || strings.Contains(res.stderr, "i/o timeout") {
				t.Errorf("stderr shows a raw read error")
			}
			if r.Fired() != 2 || took > 20*time.Second {
				t.Errorf("stall fired %d times in %s, want 2 (--retry 1), bounded", r.Fired(), took)
			}
		})
	}
}
