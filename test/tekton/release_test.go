package tekton

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// placeholderImage is the step image of the checked-in Tasks until
// hack/release.sh pins a released one: digest-shaped like a release, and
// served by no registry, so an unreleased Task fails to pull instead of
// running whatever a tag points at.
const placeholderImage = "quay.io/mcbuild/mcbuild@sha256:" + "0000000000000000000000000000000000000000000000000000000000000000"

// pinnedImage is REGISTRY/REPO@sha256:HEX, nothing else.
var pinnedImage = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+@sha256:[0-9a-f]{64}$`)

// TestStepImagesPinned: every step of every Task runs one image, by digest:
// the placeholder, or a release. Run by hack/release.sh on the Tasks it
// rewrote, with MCBUILD_RELEASE_IMAGE: then that image, exactly.
func TestStepImagesPinned(t *testing.T) {
	want := os.Getenv("MCBUILD_RELEASE_IMAGE")
	seen := map[string][]string{}
	for _, rel := range manifestFiles(t) {
		if _, kind := kindOf(t, readRepoFile(t, rel)); kind != "Task" {
			continue
		}
		for _, s := range loadTask(t, rel).Spec.Steps {
			seen[s.Image] = append(seen[s.Image], rel+" step "+s.Name)
			switch {
			case !pinnedImage.MatchString(s.Image):
				t.Errorf("%s step %s: image %q is not REGISTRY/REPO@sha256:HEX", rel, s.Name, s.Image)
			case want != "" && s.Image != want:
				t.Errorf("%s step %s: image %q, want the release %s", rel, s.Name, s.Image, want)
			case strings.HasSuffix(s.Image, strings.Repeat("0", 64)) && s.Image != placeholderImage:
				t.Errorf("%s step %s: image %q: an all-zero digest is the placeholder %s only", rel, s.Name, s.Image, placeholderImage)
			}
		}
	}
	if len(seen) > 1 {
		t.Errorf("the Tasks run %d step images, want one: %v", len(seen), seen)
	}
}

// TestRelease runs hack/release.sh --prebuilt against a loopback registry on
// a copy of tasks/ and pipelines/: an image built and pushed by mcbuild
// stands in for the step image (building the real one takes minutes: make
// release does it). The script checks the index, pins every Task's image
// to REPO@sha256 and has Tekton's code validate the copy (a nested go test);
// only image lines change. A reference without a digest, or to nothing,
// is refused with the Tasks untouched.
func TestRelease(t *testing.T) {
	bin, err := mcbuildBinDir()
	if err != nil {
		t.Fatal(err)
	}
	reg := testregistry.StartDistribution(t)
	repo := reg.Repo("mcbuild/mcbuild")
	results := t.TempDir()
	build := exec.Command(filepath.Join(bin, "mcbuild"), "build", "--tls-verify=false", "--image", repo+":v0.1.0", "--results-dir", results,
		"--context", testfixture.Context(t, copyOnly), "--platform", "linux/amd64,linux/arm64", "--storage-driver", "vfs",
		"--root", filepath.Join(t.TempDir(), "root"), "--runroot", filepath.Join(t.TempDir(), "run"))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the stand-in step image: %v\n%s", err, out)
	}
	ref, err := os.ReadFile(filepath.Join(results, "IMAGE_REF"))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if out, err := exec.Command("cp", "-a", filepath.Join(repoRoot, "tasks"), filepath.Join(repoRoot, "pipelines"), root).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	release := func(args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(repoRoot, "hack", "release.sh"), args...)
		cmd.Env = append(os.Environ(), "TASKS_ROOT="+root, "MCBUILD="+filepath.Join(bin, "mcbuild"), "MCBUILD_FLAGS=--tls-verify=false")
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-done:
			case <-time.After(10 * time.Minute):
				_ = cmd.Process.Kill()
			}
		}()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, bad := range []struct{ ref, want string }{
		{repo + ":v0.1.0", "no digest"},
		{repo + "@sha256:" + strings.Repeat("e", 64), "cannot read the index"},
	} {
		if out, err := release("--prebuilt", bad.ref); err == nil || !strings.Contains(out, bad.want) {
			t.Errorf("release --prebuilt %s: %v, want a refusal mentioning %q:\n%s", bad.ref, err, bad.want, out)
		}
		checkOnlyImagesChanged(t, root, placeholderImage)
	}
	out, err := release("--prebuilt", string(ref))
	if err != nil {
		t.Fatalf("release: %v\n%s", err, out)
	}
	digest := string(ref[strings.LastIndex(string(ref), "@"):])
	pinned := repo + digest
	if !strings.Contains(out, "release: done: "+pinned) || !strings.Contains(out, "ok ") {
		t.Errorf("release output:\n%s", out)
	}
	checkOnlyImagesChanged(t, root, pinned)
}

// checkOnlyImagesChanged compares the Tasks under root with the repository's:
// every image line must read image, every other line be unchanged.
func checkOnlyImagesChanged(t *testing.T, root, image string) {
	t.Helper()
	for _, rel := range manifestFiles(t) {
		if !strings.HasPrefix(rel, "tasks/") {
			continue
		}
		got, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		orig := strings.Split(string(readRepoFile(t, rel)), "\n")
		lines := strings.Split(string(got), "\n")
		if len(lines) != len(orig) {
			t.Fatalf("%s: %d lines, was %d", rel, len(lines), len(orig))
		}
		images := 0
		for i, l := range lines {
			if strings.HasPrefix(strings.TrimLeft(strings.TrimSpace(l), "- "), "image:") {
				images++
				if !strings.HasSuffix(l, "image: "+image) {
					t.Errorf("%s line %d: %q, want image %s", rel, i+1, l, image)
				}
			} else if l != orig[i] {
				t.Errorf("%s line %d changed: %q, was %q", rel, i+1, l, orig[i])
			}
		}
		if images == 0 {
			t.Errorf("%s: no image line", rel)
		}
	}
}
