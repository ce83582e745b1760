package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// mountTmpfs mounts a tmpfs of size (mount's size=) on a new directory
// and returns it; the test is skipped when that is not allowed (not root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mounting a tmpfs needs root: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	return mnt
}

// fullFilesystem mounts a 64 KiB tmpfs, creates dirs in it, fills it up and
// returns its path: creating a file there still works, writing a byte
// fails with ENOSPC.
func fullFilesystem(t *testing.T, dirs ...string) string {
	t.Helper()
	mnt := mountTmpfs(t, "64k")
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(mnt, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 1<<20)); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("filling the tmpfs: %v, want no space left", err)
	}
	return mnt
}

// filesUnder lists every file and directory under dir, relative to it.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(dir, p); rel != "." {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCommitPoint: the tag is the commit point. Results and the summary
// JSON are written (to temporary files, synced) before the tag moves and
// renamed into place after, and what cannot be renamed into place is
// refused before any build work; so a run that fails leaves the tag where
// it was, no result file and no temporary file. Each case is a second,
// different build (its own label) of a tag a first build made.
func TestCommitPoint(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	repoName := reg.Repo("e2e/commit")
	repo := testregistry.OpenRepo(t, repoName)
	base := append([]string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--context", contextFiles(t, copyContainerfile),
		"--platform", "linux/amd64"}, storageFlags(t)...)
	mustRun(t, nil, base...)
	before, err := repo.Resolve(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// setup returns the flags of the case and the directory that must
		// hold exactly want afterwards.
		setup func(t *testing.T) (args []string, dir string, want []string)
		// built: the failure comes after the build (else before any
		// build work: no STEP line).
		built  bool
		stderr []string
	}{
		{"results and summary on a full filesystem", func(t *testing.T) ([]string, string, []string) {
			fs := fullFilesystem(t, "results")
			return []string{"--results-dir", filepath.Join(fs, "results"), "--summary-json", filepath.Join(fs, "summary.json")},
				fs, []string{"filler", "results"}
		}, true, []string{"no space left on device", "the tag was not moved"}},
		{"summary-json names a directory", func(t *testing.T) ([]string, string, []string) {
			dir := t.TempDir()
			return []string{"--results-dir", filepath.Join(dir, "results"), "--summary-json", dir}, dir, nil
		}, false, []string{"--summary-json", "is a directory"}},
		{"IMAGE_DIGEST is a directory in the results dir", func(t *testing.T) ([]string, string, []string) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "IMAGE_DIGEST"), 0o755); err != nil {
				t.Fatal(err)
			}
			return []string{"--results-dir", dir}, dir, []string{"IMAGE_DIGEST"}
		}, false, []string{"--results-dir", "IMAGE_DIGEST", "is a directory"}},
		{"IMAGES is a directory in the results dir", func(t *testing.T) ([]string, string, []string) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "IMAGES", "x"), 0o755); err != nil {
				t.Fatal(err)
			}
			return []string{"--results-dir", dir}, dir, []string{"IMAGES", "IMAGES/x"}
		}, false, []string{"--results-dir", "IMAGES", "is a directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args, dir, want := tc.setup(t)
			r := run(t, nil, append(append(base, "--label", "case="+tc.name), args...)...)
			if r.code == 0 {
				t.Fatalf("exit 0, want a failure; stderr:\n%s", r.stderr)
			}
			for _, w := range tc.stderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, r.stderr)
				}
			}
			if built := strings.Contains(r.stderr, "STEP 1/"); built != tc.built {
				t.Errorf("built: %v, want %v:\n%s", built, tc.built, r.stderr)
			}
			after, err := repo.Resolve(context.Background(), "v1")
			if err != nil || after.Digest != before.Digest {
				t.Errorf("tag v1 -> %v (%v), want it left at %s", after.Digest, err, before.Digest)
			}
			if got := filesUnder(t, dir); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("%s holds %q, want exactly %q (no result, no summary, no temporary file)", dir, got, want)
			}
		})
	}
}
