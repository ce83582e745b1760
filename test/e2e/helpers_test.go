// Package e2e runs the mcbuild binary against real registries on 127.0.0.1
// and reads back what it published.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/imagecheck"
	"github.com/mcbuild/mcbuild/internal/oci"
	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/pkg/subjects"
)

var mcbuildBin string

func TestMain(m *testing.M) {
	if out := os.Getenv(measureEnv); out != "" {
		os.Exit(measure(out, os.Args[1:]))
	}
	mcbuildBin = os.Getenv("MCBUILD_BIN")
	if mcbuildBin == "" {
		dir, err := os.MkdirTemp("", "mcbuild-e2e-")
		if err != nil {
			panic(err)
		}
		mcbuildBin = filepath.Join(dir, "mcbuild")
		build := exec.Command("go", "build", "-tags", "containers_image_openpgp exclude_graphdriver_btrfs", "-o", mcbuildBin, "../../cmd/mcbuild")
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building mcbuild: %v\n%s", err, out)
			os.Exit(1)
		}
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

type result struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration // wall time
	maxRSS         int64         // peak resident set size, KiB (getrusage)
}

// run executes mcbuild with args (storage flags are the caller's business).
func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runWithin(t, 0, env, args...)
}

// measureEnv, set, makes the test binary a wrapper (measure) that runs its
// arguments and writes the command's peak RSS to the file it names.
const measureEnv = "MCBUILD_E2E_MEASURE_RSS"

// measure runs args[0] with args[1:] and writes its peak RSS (KiB, from
// wait4's rusage) to out; it exits as the command did. The command is a
// child of this small process, not of the test: a process the test
// started directly would inherit the test's own peak RSS (Go starts it
// with vfork, and the kernel carries the parent's high-water mark across
// exec). It dies with this wrapper (SIGKILL).
func measure(out string, args []string) int {
	runtime.LockOSThread() // Pdeathsig follows the thread that started the child
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 127
	}
	_ = cmd.Wait()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		_ = os.WriteFile(out, []byte(strconv.FormatInt(ru.Maxrss, 10)), 0o600)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

// runWithin is run, but fails the test if mcbuild still runs after limit
// (0: no limit), and then SIGKILLs it: a bound a test proves. It measures
// mcbuild's wall time and peak RSS.
func runWithin(t *testing.T, limit time.Duration, env []string, args ...string) result {
	t.Helper()
	rss := filepath.Join(t.TempDir(), "maxrss")
	cmd := exec.Command(os.Args[0], append([]string{mcbuildBin}, args...)...)
	cmd.Env = append(append(os.Environ(), env...), measureEnv+"="+rss)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("running mcbuild: %v", err)
	}
	if limit > 0 {
		// The wrapper this test started, by PID; mcbuild dies with it.
		timer := time.AfterFunc(limit, func() { _ = cmd.Process.Kill() })
		defer timer.Stop()
	}
	err := cmd.Wait()
	r := result{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	if b, rerr := os.ReadFile(rss); rerr == nil {
		r.maxRSS, _ = strconv.ParseInt(string(b), 10, 64)
	}
	if limit > 0 && r.elapsed >= limit {
		t.Fatalf("mcbuild %s still running after %v: killed\nstderr:\n%.4000s", strings.Join(args, " "), limit, r.stderr)
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running mcbuild: %v", err)
	}
	return r
}

// storageFlags gives a run its own vfs store in a temporary directory.
func storageFlags(t *testing.T) []string {
	dir := t.TempDir()
	return []string{"--storage-driver", "vfs", "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run")}
}

func mustRun(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := run(t, env, args...)
	if r.code != 0 {
		t.Fatalf("mcbuild %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// tags lists a repository's tags; a repository nothing was tagged in has none.
func tags(t *testing.T, repo *remote.Repository) []string {
	t.Helper()
	var out []string
	err := repo.Tags(context.Background(), "", func(ts []string) error { out = append(out, ts...); return nil })
	var resp *errcode.ErrorResponse
	if err != nil && !(errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound) {
		t.Fatalf("listing tags of %s: %v", repo.Reference, err)
	}
	return out
}

func readResults(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(string(b), "\n") {
			t.Errorf("result %s ends with a newline", e.Name())
		}
		out[e.Name()] = string(b)
	}
	return out
}

func fetchJSON(t *testing.T, repo *remote.Repository, desc ocispec.Descriptor, v any) {
	t.Helper()
	raw, err := content.FetchAll(context.Background(), repo, desc)
	if err != nil {
		t.Fatalf("fetching %s: %v", desc.Digest, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

func platformString(p *ocispec.Platform) string {
	if p == nil {
		return "<none>"
	}
	return oci.PlatformString(*p)
}

// checkedEntry is one manifest of a published index, as read back.
type checkedEntry struct {
	desc   ocispec.Descriptor
	format formats.Format
}

// checkIndex reads the index at ref and asserts what every mcbuild index must
// satisfy: platforms in wantPlatforms order, per platform the formats in
// wantFormats order with gzip first, zstd annotations exactly on zstd entries,
// every variant valid (imagecheck), and one config per platform.
func checkIndex(t *testing.T, repo *remote.Repository, ref string, wantPlatforms []string, wantFormats []formats.Format) (ocispec.Descriptor, []checkedEntry) {
	t.Helper()
	ctx := context.Background()
	desc, err := repo.Resolve(ctx, ref)
	if err != nil {
		t.Fatalf("resolving %s: %v", ref, err)
	}
	if desc.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("%s is %s, want an OCI index", ref, desc.MediaType)
	}
	var idx ocispec.Index
	fetchJSON(t, repo, desc, &idx)
	if want := len(wantPlatforms) * len(wantFormats); len(idx.Manifests) != want {
		t.Fatalf("index lists %d manifests, want %d", len(idx.Manifests), want)
	}
	var got []checkedEntry
	configs := map[string]string{}
	for i, m := range idx.Manifests {
		wantPlatform := wantPlatforms[i/len(wantFormats)]
		wantFormat := wantFormats[i%len(wantFormats)]
		if platformString(m.Platform) != wantPlatform {
			t.Errorf("entry %d platform %s, want %s", i, platformString(m.Platform), wantPlatform)
		}
		if ann := m.Annotations[oci.AnnotationZstd]; (ann == "true") != wantFormat.IsZstd() {
			t.Errorf("entry %d (%s): %s annotation %q", i, wantFormat, oci.AnnotationZstd, ann)
		}
		v, err := imagecheck.Check(ctx, repo, m, wantFormat)
		if err != nil {
			t.Errorf("entry %d (%s %s): %v", i, wantPlatform, wantFormat, err)
			continue
		}
		if v.Config.Architecture != m.Platform.Architecture || v.Config.OS != m.Platform.OS {
			t.Errorf("entry %d: config says %s/%s, index says %s", i, v.Config.OS, v.Config.Architecture, platformString(m.Platform))
		}
		if prev, ok := configs[wantPlatform]; ok && prev != v.ConfigDigest.String() {
			t.Errorf("%s: variants have different configs %s and %s", wantPlatform, prev, v.ConfigDigest)
		}
		configs[wantPlatform] = v.ConfigDigest.String()
		got = append(got, checkedEntry{desc: m, format: wantFormat})
	}
	return desc, got
}

// checkSubjects asserts the subjects artifact lists exactly the index and its
// manifests, in order, as in-toto resource descriptors.
func checkSubjects(t *testing.T, repo *remote.Repository, repoName, subjectsRef string, idx ocispec.Descriptor, entries []checkedEntry) {
	t.Helper()
	ctx := context.Background()
	desc, err := repo.Resolve(ctx, subjectsRef)
	if err != nil {
		t.Fatalf("resolving SUBJECTS_REF %s: %v", subjectsRef, err)
	}
	doc, m, err := subjects.Fetch(ctx, repo, desc)
	if err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != subjects.ArtifactType || m.Subject == nil || m.Subject.Digest != idx.Digest {
		t.Errorf("artifact: artifactType %q subject %v, want %q about %s", m.ArtifactType, m.Subject, subjects.ArtifactType, idx.Digest)
	}
	want := []subjects.Subject{{Name: repoName, Digest: map[string]string{"sha256": idx.Digest.Encoded()}, MediaType: ocispec.MediaTypeImageIndex}}
	for _, e := range entries {
		want = append(want, subjects.Subject{
			Name: repoName, Digest: map[string]string{"sha256": e.desc.Digest.Encoded()}, MediaType: e.desc.MediaType,
			Annotations: map[string]string{"platform": platformString(e.desc.Platform), "compression": string(e.format)},
		})
	}
	gotJSON, _ := json.Marshal(doc.Subjects)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("subjects document:\n got %s\nwant %s", gotJSON, wantJSON)
	}
}

// contextFiles builds a context with busybox for the given arches.
func contextFiles(t *testing.T, containerfile string, arches ...string) string {
	return testfixture.Context(t, map[string]string{"Containerfile": containerfile, "hello.txt": "hello\n"}, arches...)
}
