package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/testimage"
	"github.com/mcbuild/mcbuild/internal/testregistry"
	"github.com/mcbuild/mcbuild/pkg/subjects"
)

// runConcurrently starts every command at once and waits for all of them.
// (run() may not be used off the test goroutine: it calls t.Fatal.)
func runConcurrently(t *testing.T, envs [][]string, argss [][]string) []result {
	t.Helper()
	out := make([]result, len(argss))
	errs := make([]error, len(argss))
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range argss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(mcbuildBin, argss[i]...)
			cmd.Env = append(os.Environ(), envs[i]...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			<-gate
			err := cmd.Run()
			out[i] = result{stdout: stdout.String(), stderr: stderr.String()}
			var exit *exec.ExitError
			switch {
			case errors.As(err, &exit):
				out[i].code = exit.ExitCode()
			case err != nil:
				errs[i] = err
			}
		}()
	}
	close(gate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	return out
}

// checkOwnRelease asserts that the results of one run describe exactly its
// own index (wantManifests, in index order) and nothing of any other run:
// IMAGE_DIGEST is what the tag resolves to, the index lists wantManifests
// gzip-first with zstd annotations exactly on zstd entries, IMAGES and the
// subjects artifact list the index plus those manifests and nothing else,
// and the artifact's subject is the index.
func checkOwnRelease(t *testing.T, repoName, tag string, res map[string]string, wantManifests []ocispec.Descriptor, wantFormats []formats.Format) {
	t.Helper()
	ctx := context.Background()
	repo := testregistry.OpenRepo(t, repoName)
	idxDesc, err := repo.Resolve(ctx, tag)
	if err != nil {
		t.Fatalf("resolving %s: %v", tag, err)
	}
	if res["IMAGE_DIGEST"] != idxDesc.Digest.String() || res["IMAGE_REF"] != repoName+":"+tag+"@"+idxDesc.Digest.String() {
		t.Errorf("%s: IMAGE_DIGEST %s / IMAGE_REF %s, but the tag resolves to %s", tag, res["IMAGE_DIGEST"], res["IMAGE_REF"], idxDesc.Digest)
	}
	var idx ocispec.Index
	fetchJSON(t, repo, idxDesc, &idx)
	var got, want []string
	for i, m := range idx.Manifests {
		got = append(got, m.Digest.String())
		if zstd := m.Annotations[oci.AnnotationZstd] == "true"; zstd != wantFormats[i%len(wantFormats)].IsZstd() {
			t.Errorf("%s: entry %d zstd annotation %v, want %s", tag, i, zstd, wantFormats[i%len(wantFormats)])
		}
	}
	for _, m := range wantManifests {
		want = append(want, m.Digest.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: index lists\n%v\nwant (its own inputs, gzip first)\n%v", tag, got, want)
	}
	images := []string{repoName + "@" + idxDesc.Digest.String()}
	for _, d := range want {
		images = append(images, repoName+"@"+d)
	}
	if res["IMAGES"] != strings.Join(images, ",") {
		t.Errorf("%s: IMAGES = %s\nwant %s", tag, res["IMAGES"], strings.Join(images, ","))
	}
	sref := res["SUBJECTS_REF"]
	if !strings.HasPrefix(sref, repoName+"@sha256:") {
		t.Fatalf("%s: SUBJECTS_REF %q", tag, sref)
	}
	sdesc, err := repo.Resolve(ctx, strings.TrimPrefix(sref, repoName+"@"))
	if err != nil {
		t.Fatal(err)
	}
	doc, m, err := subjects.Fetch(ctx, repo, sdesc)
	if err != nil {
		t.Fatalf("%s: %v", tag, err)
	}
	if m.Subject == nil || m.Subject.Digest != idxDesc.Digest {
		t.Errorf("%s: subjects artifact is about %v, want its own index %s", tag, m.Subject, idxDesc.Digest)
	}
	var listed []string
	for _, s := range doc.Subjects {
		listed = append(listed, s.DigestOf().String())
	}
	if !slices.Equal(listed, append([]string{idxDesc.Digest.String()}, want...)) {
		t.Errorf("%s: subjects artifact lists\n%v\nwant its index and manifests\n%v", tag, listed, append([]string{idxDesc.Digest.String()}, want...))
	}
	// The artifact the index leads to (fallback tag) is this one.
	found, err := subjects.Find(ctx, repo, idxDesc)
	if err != nil || found.Digest != sdesc.Digest {
		t.Errorf("%s: subjects.Find from the index = %v (%v), want %s", tag, found.Digest, err, sdesc.Digest)
	}
}

// TestLoadConcurrentIndex: 8 `mcbuild index` runs at once, each merging its
// own two per-platform inputs into its own tag of ONE repository, all
// succeed with results, index and subjects artifact that describe exactly
// their own inputs; on distribution (no referrers API: eight fallback tags
// written side by side) and on olareg (referrers API).
func TestLoadConcurrentIndex(t *testing.T) {
	t.Run("distribution", func(t *testing.T) { loadIndex(t, testregistry.StartDistribution(t), true) })
	t.Run("olareg", func(t *testing.T) { loadIndex(t, testregistry.StartOlareg(t), false) })
}

func loadIndex(t *testing.T, reg *testregistry.Registry, fallbackTags bool) {
	const runs = 8
	repoName := reg.Repo("e2e/load-index")
	repo := testregistry.OpenRepo(t, repoName)
	b := testimage.New(t, repo)
	platforms := []string{"linux/amd64", "linux/arm64"}
	want := make([][]ocispec.Descriptor, runs)
	var envs, argss [][]string
	resultsDirs := make([]string, runs)
	for i := range runs {
		var from []string
		for _, p := range platforms {
			// As a per-platform build leaves it: zstd:chunked listed first,
			// to check the merge still puts gzip first.
			z, g := b.Image(p, formats.ZstdChunked), b.Image(p, formats.Gzip)
			tag := fmt.Sprintf("in%d-%s", i, strings.ReplaceAll(p, "/", "-"))
			b.Tag(b.Index(z, g), tag)
			from = append(from, "--from", repoName+":"+tag)
			want[i] = append(want[i], g, z)
		}
		resultsDirs[i] = t.TempDir()
		envs = append(envs, nil)
		argss = append(argss, append([]string{"index", "--tls-verify=false", "--image", fmt.Sprintf("%s:out%d", repoName, i),
			"--results-dir", resultsDirs[i]}, from...))
	}
	started := time.Now()
	results := runConcurrently(t, envs, argss)
	t.Logf("%d concurrent index runs took %s", runs, time.Since(started).Round(time.Millisecond))
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("run %d: exit %d\n%s", i, r.code, r.stderr)
			continue
		}
		checkOwnRelease(t, repoName, fmt.Sprintf("out%d", i), readResults(t, resultsDirs[i]), want[i], gzipFirst)
	}
	// Exactly the inputs, the outputs and (without the referrers API) one
	// fallback tag per output.
	wantTags := runs*len(platforms) + runs
	if fallbackTags {
		wantTags += runs
	}
	if got := len(tags(t, repo)); got != wantTags {
		t.Errorf("%d tags, want %d: %v", got, wantTags, tags(t, repo))
	}
}

// TestLoadConcurrentBuilds: 4 `mcbuild build` runs at once, each with its
// own store, into one repository, sharing one layer (pushed concurrently)
// and differing in another: each publishes a valid gzip-first index of its
// own content, with results and a subjects artifact of its own.
func TestLoadConcurrentBuilds(t *testing.T) {
	const runs = 4
	reg := testregistry.StartDistribution(t)
	repoName := reg.Repo("e2e/load-build")
	platforms := []string{"linux/amd64", "linux/arm64"}
	var envs, argss [][]string
	resultsDirs := make([]string, runs)
	for i := range runs {
		dir := t.TempDir()
		ctxDir := filepath.Join(dir, "context")
		files := map[string]string{
			"Containerfile": "FROM scratch\nCOPY common.txt /common.txt\nCOPY own.txt /own.txt\n",
			"common.txt":    strings.Repeat("shared by every build\n", 1000),
			"own.txt":       fmt.Sprintf("build %d\n", i),
		}
		for name, body := range files {
			if err := os.MkdirAll(ctxDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(ctxDir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		resultsDirs[i] = filepath.Join(dir, "results")
		if err := os.Mkdir(resultsDirs[i], 0o755); err != nil {
			t.Fatal(err)
		}
		envs = append(envs, []string{"TMPDIR=" + dir, "SOURCE_DATE_EPOCH=1700000000"})
		argss = append(argss, []string{"build", "--tls-verify=false", "--image", fmt.Sprintf("%s:b%d", repoName, i), "--context", ctxDir,
			"--platform", strings.Join(platforms, ","), "--results-dir", resultsDirs[i],
			"--storage-driver", "vfs", "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run")})
	}
	started := time.Now()
	results := runConcurrently(t, envs, argss)
	t.Logf("%d concurrent builds took %s", runs, time.Since(started).Round(time.Millisecond))
	repo := testregistry.OpenRepo(t, repoName)
	seen := map[string]int{}
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("build %d: exit %d\n%s", i, r.code, r.stderr)
			continue
		}
		tag := fmt.Sprintf("b%d", i)
		idx, entries := checkIndex(t, repo, tag, platforms, gzipFirst)
		res := readResults(t, resultsDirs[i])
		checkSubjects(t, repo, repoName, res["SUBJECTS_REF"], idx, entries)
		var manifests []ocispec.Descriptor
		for _, e := range entries {
			manifests = append(manifests, e.desc)
			if prev, ok := seen[e.desc.Digest.String()]; ok {
				t.Errorf("build %d and build %d published the same manifest %s", prev, i, e.desc.Digest)
			}
			seen[e.desc.Digest.String()] = i
		}
		checkOwnRelease(t, repoName, tag, res, manifests, gzipFirst)
		// Every variant holds this build's own file, not another's.
		p := download(t, repo, tag, "")
		for d, raw := range p.manifests {
			var m ocispec.Manifest
			fetchOK := json.Unmarshal(raw, &m) == nil
			own := ""
			for _, l := range m.Layers {
				if b, ok := p.layers[l.Digest]["own.txt"]; ok {
					own = string(b)
				}
			}
			if !fetchOK || own != fmt.Sprintf("build %d\n", i) {
				t.Errorf("build %d: manifest %s holds own.txt %q", i, d, own)
			}
		}
	}
}
