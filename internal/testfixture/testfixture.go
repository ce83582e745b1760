// Package testfixture makes build contexts for tests: a Containerfile plus a
// busybox root filesystem per architecture (prepared by `make test` with
// hack/busybox-rootfs.sh, since there is no docker.io here).
package testfixture

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot is the directory holding go.mod, found from the test's directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// RootfsDir is where the busybox root filesystems live: $MCBUILD_BUSYBOX_ROOTFS
// or examples/busybox-base/rootfs.
func RootfsDir(t testing.TB) string {
	if d := os.Getenv("MCBUILD_BUSYBOX_ROOTFS"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(t), "examples", "busybox-base", "rootfs")
}

// Context writes a build context into a new temporary directory: the given
// files (path -> content) and, for each arch, rootfs/<arch>/ with busybox.
func Context(t testing.TB, files map[string]string, arches ...string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, arch := range arches {
		src := filepath.Join(RootfsDir(t), arch)
		if _, err := os.Stat(filepath.Join(src, "bin", "busybox")); err != nil {
			t.Fatalf("busybox rootfs for %s missing at %s: `make test` prepares it (hack/busybox-rootfs.sh)", arch, src)
		}
		if err := copyTree(src, filepath.Join(dir, "rootfs", arch)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		default:
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		}
	})
}
