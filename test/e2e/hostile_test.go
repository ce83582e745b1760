package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/hostileregistry"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/pkg/subjects"
)

// Bounds the hostile cases prove, well above what they measure (see
// docs/reliability.md): no run may take longer or grow larger.
const (
	hostileKill = 60 * time.Second // SIGKILLed after this: the bound is broken
	hostileTime = 15 * time.Second // each run ends within this
	// hostileGrowthMiB bounds each run's peak RSS above the binary's own
	// (baselineRSS: `mcbuild --version`, mostly the binary's pages, which
	// grew from about 28 to 88 MiB when syft was linked in, issue 16): 100
	// MiB is what the bound of 128 MiB left a 28 MiB binary.
	hostileGrowthMiB = 100
)

var (
	baselineOnce   sync.Once
	baselineRSSMiB int64
)

// baselineRSS is the peak RSS (MiB) of `mcbuild --version`: what the binary
// takes before reading anything.
func baselineRSS(t *testing.T) int64 {
	baselineOnce.Do(func() {
		r := runWithin(t, hostileKill, nil, "--version")
		baselineRSSMiB = r.maxRSS >> 10
		t.Logf("baseline: mcbuild --version peaks at %d MiB", baselineRSSMiB)
	})
	return baselineRSSMiB
}

const hostileName = "hostile/app"

// hostileRun runs mcbuild against the hostile registry and checks what
// every hostile case must hold: the exit code, each of want in its output,
// the time and memory bounds. It returns the run.
func hostileRun(t *testing.T, exit int, want []string, args ...string) result {
	t.Helper()
	r := runWithin(t, hostileKill, nil, append(args[:len(args):len(args)], "--tls-verify=false")...)
	t.Logf("mcbuild %s: exit %d in %v, peak RSS %d MiB\n%.2000s", strings.Join(args, " "), r.code, r.elapsed.Round(time.Millisecond), r.maxRSS>>10, r.stderr)
	if r.code != exit {
		t.Errorf("exit %d, want %d\nstdout:\n%.4000s\nstderr:\n%.4000s", r.code, exit, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stdout+r.stderr, w) {
			t.Errorf("output does not mention %q:\nstdout:\n%.4000s\nstderr:\n%.4000s", w, r.stdout, r.stderr)
		}
	}
	if r.elapsed > hostileTime {
		t.Errorf("took %v, want at most %v", r.elapsed, hostileTime)
	}
	if base := baselineRSS(t); r.maxRSS>>10 > base+hostileGrowthMiB {
		t.Errorf("peak RSS %d MiB, want at most %d MiB (the binary's %d + %d)", r.maxRSS>>10, base+hostileGrowthMiB, base, hostileGrowthMiB)
	}
	if len(r.stderr) > 64<<10 {
		t.Errorf("%d bytes of error output: untrusted content must not be echoed at length", len(r.stderr))
	}
	return r
}

// startHostile starts a hostile registry; at is "HOST/hostile/app" + suffix.
func startHostile(t *testing.T) (reg *hostileregistry.Registry, at func(suffix string) string) {
	reg = hostileregistry.Start(t)
	return reg, func(suffix string) string { return reg.Repo(hostileName) + suffix }
}

func tag(t *testing.T, reg *hostileregistry.Registry, d ocispec.Descriptor, name string) {
	t.Helper()
	if err := reg.Tag(context.Background(), d, name); err != nil {
		t.Fatal(err)
	}
}

// TestHostileIndexWalks: `inspect` and `index --from` on indexes built to
// make a walk amplify (item 2 of issue 13) or hold much memory (item 9).
func TestHostileIndexWalks(t *testing.T) {
	t.Run("nested 4 deep, each level listing the next 1000 times", func(t *testing.T) {
		reg, at := startHostile(t)
		leaf := reg.Image("linux/amd64", "leaf", 0)
		root := reg.Nested(leaf, oci.MaxIndexDepth, 1000) // 5 documents, 10^12 paths
		tag(t, reg, root, "nested")
		r := hostileRun(t, 0, []string{leaf.Digest.String(), "linux/amd64"}, "inspect", at(":nested"))
		if n := reg.Count("GET", "manifests"); n != 5 {
			t.Errorf("inspect: %d manifest GETs, want 5 (each document once)", n)
		}
		if rows := strings.Count(r.stdout, "sha256:"); rows != 2 {
			t.Errorf("inspect printed %d digests, want the index and its one image:\n%s", rows, r.stdout)
		}
		hostileRun(t, 0, nil, "index", "--image", at(":merged"), "--from", at(":nested"))
		if n := reg.Gets(root.Digest); n != 2 {
			t.Errorf("root index read %d times by the two runs, want 2", n)
		}
	})
	t.Run("11 indexes of 1000 entries: more descriptors than a walk visits", func(t *testing.T) {
		reg, at := startHostile(t)
		tag(t, reg, reg.Wide(reg.Image("linux/amd64", "many", 0), 11, 1000), "wide")
		want := []string{"more than 10000 descriptors", "limit MaxWalkDescriptors", "index sha256:"}
		hostileRun(t, 1, want, "inspect", at(":wide"))
		hostileRun(t, 1, want, "index", "--image", at(":merged"), "--from", at(":wide"))
		if n := reg.Count("PUT", "manifests"); n != 0 {
			t.Errorf("%d manifests pushed by a refused merge", n)
		}
	})
	t.Run("24 distinct manifests of 4 MiB: more bytes than a walk holds", func(t *testing.T) {
		reg, at := startHostile(t)
		tag(t, reg, reg.Index(reg.Images(24, oci.MaxDocumentBytes-1000)...), "heavy")
		want := []string{"more than 64 MiB of documents in one walk", "limit MaxWalkBytes", "manifest sha256:"}
		hostileRun(t, 1, want, "inspect", at(":heavy"))
		if n, most := reg.Count("GET", "manifests"), 1+oci.MaxWalkBytes/(oci.MaxDocumentBytes-1000); n > most {
			t.Errorf("%d manifest GETs, want at most %d", n, most)
		}
		hostileRun(t, 1, want, "index", "--image", at(":merged"), "--from", at(":heavy"))
	})
}

// TestHostileDocuments: documents served with other sizes than declared,
// or stalled, end `inspect` and `index --from` within their bounds,
// --timeout and SIGTERM included.
func TestHostileDocuments(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer hostileregistry.Answer
		flags  []string
		want   []string
		within [2]time.Duration // elapsed in [min, max]
	}{
		{"served longer than declared", hostileregistry.Answer{Body: make([]byte, 8<<20)}, nil, []string{"mismatch Content-Length"}, [2]time.Duration{0, hostileTime}},
		{"served endlessly", hostileregistry.Answer{Endless: true}, nil, []string{"trailing data"}, [2]time.Duration{0, hostileTime}},
		{"stalled, --request-timeout 1s", hostileregistry.Answer{Stall: true}, []string{"--request-timeout", "1s", "--retry", "0"},
			[]string{"no progress for 1s", "--request-timeout sets it"}, [2]time.Duration{time.Second, 5 * time.Second}},
		{"stalled, --timeout 2s", hostileregistry.Answer{Stall: true}, []string{"--request-timeout", "0", "--timeout", "2s"},
			[]string{"--timeout 2s reached"}, [2]time.Duration{2 * time.Second, 6 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, at := startHostile(t)
			img := reg.Image("linux/amd64", "lying", 0)
			tag(t, reg, reg.Index(img), "lying")
			reg.Answer(img.Digest, tc.answer)
			for _, cmd := range [][]string{{"inspect", at(":lying")}, {"index", "--image", at(":merged"), "--from", at(":lying")}} {
				sent := reg.Sent()
				r := hostileRun(t, 1, append(tc.want, img.Digest.String()), append(cmd, tc.flags...)...)
				if r.elapsed < tc.within[0] || r.elapsed > tc.within[1] {
					t.Errorf("%s took %v, want %v to %v", cmd[0], r.elapsed, tc.within[0], tc.within[1])
				}
				if sent = reg.Sent() - sent; sent > 16<<20 {
					t.Errorf("%s: the registry sent %d bytes", cmd[0], sent)
				}
			}
			if n := reg.Count("PUT", "manifests"); n != 0 {
				t.Errorf("%d manifests pushed by a refused merge", n)
			}
		})
	}
	t.Run("stalled, SIGTERM", func(t *testing.T) {
		reg, at := startHostile(t)
		img := reg.Image("linux/amd64", "stall", 0)
		tag(t, reg, reg.Index(img), "stall")
		reg.Answer(img.Digest, hostileregistry.Answer{Stall: true})
		p := start(t, nil, "inspect", "--tls-verify=false", "--request-timeout", "0", at(":stall"))
		for deadline := time.Now().Add(hostileTime); reg.Gets(img.Digest) == 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("inspect never reached the stalled manifest")
			}
		}
		code, took := p.signalAndWait(t, syscall.SIGTERM, hostileTime)
		if _, stderr := p.output(); code != 143 || !strings.Contains(stderr, "interrupted by SIGTERM") || took > 2*time.Second {
			t.Errorf("exit %d %v after SIGTERM, want 143 within 2s:\n%s", code, took, stderr)
		}
	})
}

// pushSubjects attaches a subjects artifact for index naming repo to reg.
func pushSubjects(t *testing.T, reg *hostileregistry.Registry, repo string, index ocispec.Descriptor, images []ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	var ms []subjects.Manifest
	for _, d := range images {
		ms = append(ms, subjects.Manifest{Descriptor: d, Compression: string(formats.Gzip)})
	}
	art, err := subjects.Push(context.Background(), reg, subjects.New(repo, index, ms), index)
	if err != nil {
		t.Fatal(err)
	}
	return art
}

// TestHostileReferrers: a referrers API that never stops paging (item 4)
// ends `subjects verify` and `show` within bounds, naming the limit.
func TestHostileReferrers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pages    hostileregistry.ReferrersFunc
		flags    []string
		want     []string
		maxPages int
	}{
		{"2000 subjects artifacts a page, always a next page", hostileregistry.EndlessReferrers(2000, subjects.ArtifactType), nil,
			[]string{"more than 10000 referrers", "limit MaxReferrers"}, oci.MaxReferrers/2000 + 1},
		{"2000 other artifacts a page, always a next page", hostileregistry.EndlessReferrers(2000, "application/vnd.example.sbom"), nil,
			[]string{"more than 100 pages of referrers", "limit MaxReferrersPages"}, oci.MaxReferrersPages},
		{"slow pages, --timeout 2s", hostileregistry.Slow(hostileregistry.EndlessReferrers(2000, "application/vnd.example.sbom"), 100*time.Millisecond), []string{"--timeout", "2s"},
			[]string{"--timeout 2s reached"}, 25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, at := startHostile(t)
			idx := reg.Index(reg.Image("linux/amd64", "refs", 0))
			tag(t, reg, idx, "v1")
			reg.SetReferrers(tc.pages)
			for _, cmd := range []string{"verify", "show"} {
				before := reg.Count("GET", "referrers")
				args := append(append([]string{"subjects", cmd}, tc.flags...), at(":v1"))
				hostileRun(t, 1, append(tc.want, "referrers of "+idx.Digest.String()), args...)
				if pages := reg.Count("GET", "referrers") - before; pages > tc.maxPages {
					t.Errorf("%s: %d pages read, want at most %d", cmd, pages, tc.maxPages)
				}
			}
		})
	}
}

// TestHostileSubjects: `subjects verify` of an index listing a large child
// index 200 times (item 3), and subjects artifacts whose entries name
// another repository (item 8).
func TestHostileSubjects(t *testing.T) {
	t.Run("a 3.5 MB child index listed 200 times", func(t *testing.T) {
		reg, at := startHostile(t)
		img := reg.Image("linux/amd64", "one", 0)
		child := reg.Index(hostileregistry.Repeat(img, 15000)...)
		root := reg.Index(hostileregistry.Repeat(child, 200)...)
		tag(t, reg, root, "v1")
		art := pushSubjects(t, reg, at(""), root, []ocispec.Descriptor{child})
		t.Logf("root %d bytes, child %d bytes", root.Size, child.Size)
		want := []string{"index " + child.Digest.String(), "more than 10000 descriptors", "limit MaxWalkDescriptors"}
		hostileRun(t, 1, want, "subjects", "verify", at("@"+art.Digest.String()))
		if n := reg.Gets(child.Digest); n != 1 {
			t.Errorf("child index read %d times, want once", n)
		}
	})
	t.Run("every entry names another repository", func(t *testing.T) {
		reg, at := startHostile(t)
		imgs := reg.Images(2, 0)
		idx := reg.Index(imgs...)
		tag(t, reg, idx, "v1")
		pushSubjects(t, reg, "quay.io/victim/app", idx, imgs)
		r := hostileRun(t, 1, []string{`names another repository: ` + idx.Digest.String() + `: the entry names "quay.io/victim/app", verified in "` + at("") + `"`},
			"subjects", "verify", at(":v1"))
		if n := strings.Count(r.stderr, "names another repository"); n != 3 || strings.Contains(r.stdout, "matches") {
			t.Errorf("verify: %d repository mismatches, want 3 (one per entry), and no match:\n%s%s", n, r.stdout, r.stderr)
		}
		r = hostileRun(t, 1, []string{"(other repository!) quay.io/victim/app", "3 of its 3 entries name another repository than " + at("")}, "subjects", "show", at(":v1"))
		r = hostileRun(t, 1, []string{"name another repository"}, "subjects", "show", "--json", at(":v1"))
		if r.stdout != "" {
			t.Errorf("show --json printed a forged document:\n%s", r.stdout)
		}
	})
	t.Run("a forged artifact beside the genuine one", func(t *testing.T) {
		reg, at := startHostile(t)
		imgs := reg.Images(2, 0)
		idx := reg.Index(imgs...)
		tag(t, reg, idx, "v1")
		genuine := pushSubjects(t, reg, at(""), idx, imgs)
		forged := pushSubjects(t, reg, "quay.io/victim/app", idx, imgs)
		want := []string{"2 subjects artifacts refer to", genuine.Digest.String() + " matches",
			forged.Digest.String() + ": mismatch: names another repository", "subjects artifact " + at("@"+forged.Digest.String()) + ": 3 mismatch(es)"}
		hostileRun(t, 1, want, "subjects", "verify", at(":v1"))
		hostileRun(t, 0, nil, "subjects", "verify", at("@"+genuine.Digest.String()))
		hostileRun(t, 1, []string{fmt.Sprintf("%d subjects artifacts refer to it", 2)}, "subjects", "show", "--json", at(":v1"))
	})
}
