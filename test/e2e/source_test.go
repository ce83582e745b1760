package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// orasBin is the oras CLI: $MCBUILD_ORAS_BIN, else on PATH, else
// bin/tools/oras (`make test` installs oras v1.3.6 there).
func orasBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MCBUILD_ORAS_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("oras"); err == nil {
		return p
	}
	p := filepath.Join(testfixture.RepoRoot(t), "bin", "tools", "oras")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("oras not found ($MCBUILD_ORAS_BIN, PATH, %s): `make test` installs it, or go install oras.land/oras/cmd/oras@v1.3.6", p)
	}
	return p
}

// pushArtifact pushes archive as konflux-ci/build-trusted-artifacts'
// create does (`oras push REPO:TAG NAME` from the archive's directory) and
// returns its reference, oci:REPO@sha256:<the archive's SHA-256>.
func pushArtifact(t *testing.T, repo, tag string, archive []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "source"), archive, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(orasBin(t), "push", "--plain-http", "--no-tty", repo+":"+tag, "source")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oras push: %v\n%s", err, out)
	}
	sum := sha256.Sum256(archive)
	return "oci:" + repo + "@sha256:" + hex.EncodeToString(sum[:])
}

// TestSourceFetch: `mcbuild source fetch` restores an artifact that GNU
// tar archived (as build-trusted-artifacts' create runs it) and oras pushed:
// files, modes, symlinks and times as they were.
func TestSourceFetch(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	src := contextFiles(t, "FROM scratch\nCOPY . /src/\n")
	for _, mk := range []func() error{
		func() error { return os.MkdirAll(filepath.Join(src, "sub", "deep"), 0o750) },
		func() error {
			return os.WriteFile(filepath.Join(src, "sub", "deep", "run.sh"), []byte("#!/bin/sh\n"), 0o755)
		},
		func() error { return os.Symlink("sub/deep/run.sh", filepath.Join(src, "run")) },
		func() error { return os.Symlink("../../hello.txt", filepath.Join(src, "sub", "deep", "hello")) },
	} {
		if err := mk(); err != nil {
			t.Fatal(err)
		}
	}
	archive := filepath.Join(t.TempDir(), "source.tgz")
	if out, err := exec.Command("tar", "--create", "--use-compress-program=gzip -n", "--file", archive, "--directory="+src, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	ref := pushArtifact(t, reg.Repo("e2e/source"), "taskrun-1", data)
	dest := filepath.Join(t.TempDir(), "workdir", "source")
	r := mustRun(t, nil, "source", "fetch", "--tls-verify=false", ref, dest)
	if !strings.Contains(r.stdout, "restored "+ref+" into "+dest) {
		t.Errorf("stdout %q", r.stdout)
	}
	if out, err := exec.Command("diff", "-r", "--no-dereference", src, dest).CombinedOutput(); err != nil {
		t.Errorf("the restored tree differs: %v\n%s", err, out)
	}
	for _, p := range []string{"sub", "sub/deep/run.sh", "Containerfile"} {
		a, _ := os.Stat(filepath.Join(src, p))
		b, err := os.Stat(filepath.Join(dest, p))
		// GNU tar keeps whole seconds.
		if err != nil || a.Mode() != b.Mode() || !a.ModTime().Truncate(time.Second).Equal(b.ModTime()) {
			t.Errorf("%s: mode %v time %v, want %v %v (%v)", p, b.Mode(), b.ModTime(), a.Mode(), a.ModTime(), err)
		}
	}
}

// TestSourceFetchRefuses: a malicious archive (an entry leaving the
// target, a symlink out of it, a write through a symlink), a blob whose
// bytes do not match the reference's digest (a tampering proxy), a
// reference without a digest or of another scheme, and a target that is
// not empty: each fails `mcbuild source fetch`, leaving the target empty
// and nothing beside it.
func TestSourceFetchRefuses(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	repo := reg.Repo("e2e/source-bad")
	good := testfixture.TarGz(t, testfixture.TarFile("Containerfile", "FROM scratch\n"))
	goodRef := pushArtifact(t, repo, "good", good)
	evil := testfixture.TarGz(t, testfixture.TarFile("Containerfile", "FROM scratch\n"), testfixture.TarFile("../escaped", "x"))
	link := testfixture.TarGz(t, testfixture.TarSymlink("Containerfile", "/workspace/dockerconfig/.dockerconfigjson"))
	through := testfixture.TarGz(t, testfixture.TarSymlink("etc", "../.."), testfixture.TarFile("etc/passwd", "x"))
	flipped := append([]byte(nil), good...) // same size, another digest
	flipped[len(flipped)/2] ^= 0xff
	tampered := tamperProxy(t, reg, map[string][]byte{strings.TrimPrefix(goodRef, "oci:"+repo+"@"): flipped})
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "stale"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, ref, dest string
		want            []string
	}{
		{"dot-dot entry", pushArtifact(t, repo, "evil", evil), "", []string{`unsafe archive entry "../escaped"`}},
		{"symlink to the credentials", pushArtifact(t, repo, "link", link), "", []string{`"Containerfile": a symlink to the absolute path`}},
		{"write through a symlink", pushArtifact(t, repo, "through", through), "", []string{`"etc"`, "outside the target directory"}},
		{"bytes not matching the digest", strings.Replace(goodRef, reg.Host, tampered, 1), "", []string{"is not the artifact it names"}},
		{"no digest", "oci:" + repo + ":good", "", []string{"want a sha256 digest"}},
		{"another scheme", "file:source@sha256:" + strings.Repeat("a", 64), "", []string{"want oci:REGISTRY/REPO@sha256:HEX"}},
		{"unknown digest", "oci:" + repo + "@sha256:" + strings.Repeat("b", 64), "", []string{"not found"}},
		{"target not empty", goodRef, full, []string{"is not empty (it holds stale)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dest := tc.dest
			if dest == "" {
				dest = filepath.Join(parent, "source")
			}
			r := run(t, nil, "source", "fetch", "--tls-verify=false", "--retry", "0", tc.ref, dest)
			if r.code == 0 {
				t.Fatalf("exit 0, want a refusal:\n%s", r.stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, r.stderr)
				}
			}
			if names := testfixture.DirNames(t, parent); len(names) > 1 || (len(names) == 1 && names[0] != "source") {
				t.Errorf("beside the target: %q", names)
			}
			if names := testfixture.DirNames(t, dest); tc.dest == "" && len(names) != 0 {
				t.Errorf("the target holds %q", names)
			}
		})
	}
}
