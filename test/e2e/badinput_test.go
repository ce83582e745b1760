package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// TestBadInput: every bad input is refused with an error naming the value,
// a non-zero exit, no tag, and no result file.
func TestBadInput(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	repoName := reg.Repo("e2e/bad")
	dir := contextFiles(t, copyContainerfile)
	failing := contextFiles(t, "FROM scratch\nCOPY rootfs/amd64/ /\nRUN echo about to fail && exit 3\n", "amd64")
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missingDir := filepath.Join(t.TempDir(), "missing", "dir")
	const password = "s3cret-in-a-flag" // never printed
	notJSON := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(notJSON, []byte("auths: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []badInput{
		{"unknown format", []string{"--compression-formats", "zstd:chunky"}, []string{`"zstd:chunky"`, "gzip, zstd, zstd:chunked"}},
		{"duplicate format", []string{"--compression-formats", "gzip,gzip"}, []string{`"gzip" is listed twice`}},
		{"dual with another format", []string{"--compression-formats", "dual,zstd"}, []string{`"dual"`, "cannot be combined"}},
		{"Konflux's zstd-chunked spelling", []string{"--compression-formats", "gzip,zstd-chunked"}, []string{`"zstd-chunked"`, "zstd:chunked here"}},
		{"zstd and zstd:chunked", []string{"--compression-formats", "zstd,zstd:chunked"}, []string{"cannot both"}},
		{"digest image", []string{"--image", repoName + "@sha256:" + strings.Repeat("a", 64)}, []string{"digest"}},
		{"malformed image", []string{"--image", "127.0.0.1:1/UPPER/case:v1"}, []string{"UPPER/case"}},
		{"credentials in the image", []string{"--image", "builder:" + password + "@" + repoName + ":v1"}, []string{`--image "***@` + repoName + `:v1"`, "auth file", "--authfile"}},
		{"malformed platform", []string{"--platform", "linux"}, []string{`"linux"`, "os/arch"}},
		{"windows platform", []string{"--platform", "linux/amd64,windows/amd64"}, []string{`--platform "windows/amd64"`, "does not build windows images"}},
		{"missing containerfile", []string{"--file", "Nope.containerfile"}, []string{"Nope.containerfile"}},
		{"missing context", []string{"--context", "/nonexistent/ctx"}, []string{"/nonexistent/ctx"}},
		{"unwritable results dir", []string{"--results-dir", filepath.Join(notDir, "results")}, []string{notDir}},
		{"results budget below the results always written", []string{"--results-budget", "300"}, []string{"--results-budget 300", "IMAGE_REF", "want at least"}},
		{"summary-json in a missing directory", []string{"--summary-json", filepath.Join(missingDir, "s.json")}, []string{"--summary-json", missingDir, "does not exist"}},
		{"authfile not JSON, registry without auth", []string{"--authfile", notJSON}, []string{"--authfile: auth file " + notJSON + " is malformed: not valid JSON"}},
		{"unreachable registry", []string{"--image", "127.0.0.1:1/e2e/bad:v1"}, []string{"127.0.0.1:1"}},
		{"label key with a newline", []string{"--label", "a\nb=1"}, []string{`--label "a\nb=1"`, "control characters"}},
		{"annotation key with a control character", []string{"--annotation", "a\x01b=1"}, []string{`--annotation "a\x01b=1"`, "control characters"}},
		{"bad source date epoch", []string{"--source-date-epoch", "yesterday"}, []string{`"yesterday"`}},
		{"bad storage driver", []string{"--storage-driver", "btrfs"}, []string{`"btrfs"`, "vfs, overlay"}},
		{"bad isolation", []string{"--isolation", "vm"}, []string{`"vm"`, "chroot"}},
		{"bad publisher", []string{"--publisher", "skopeo"}, []string{`"skopeo"`, "stream, copy"}},
		{"bad zstd:chunked encoder", []string{"--zstd-chunked-encoder", "fast"}, []string{`"fast"`, "parallel, upstream"}},
		{"compress while building with copy publisher", []string{"--publisher", "copy", "--compress-while-building"}, []string{"--compress-while-building", "--publisher stream"}},
		{"parallel encoder with copy publisher", []string{"--publisher", "copy", "--zstd-chunked-encoder", "parallel"}, []string{"--zstd-chunked-encoder parallel", "--publisher stream"}},
		{"malformed reuse-from", []string{"--reuse-from", "ns/cache"}, []string{"--reuse-from", `"ns/cache"`, "no registry host"}},
		{"reuse-from with copy publisher", []string{"--publisher", "copy", "--reuse-from", repoName + ":cache"}, []string{"--reuse-from", "--publisher stream"}},
		{"append-platform with two platforms", []string{"--append-platform", "--platform", "linux/amd64,linux/arm64"}, []string{"--append-platform", "exactly one", "linux/amd64,linux/arm64"}},
		{"failing RUN", []string{"--context", failing, "--platform", "linux/amd64"}, []string{"exit status 3", "RUN echo about to fail"}},
	}
	checkBadInput(t, repoName, dir, password, tests)
	if _, err := os.Stat(filepath.Dir(missingDir)); err == nil {
		t.Errorf("--summary-json created %s", filepath.Dir(missingDir))
	}
}

// badInput is one refused `mcbuild build`.
type badInput struct {
	name string
	args []string // after "build --tls-verify=false"
	want []string // substrings of stderr
}

// checkBadInput runs `mcbuild build` once per test on dir, pushing to
// repoName: each must fail naming what is wrong, without printing password,
// leaving no tag and no result file.
func checkBadInput(t *testing.T, repoName, dir, password string, tests []badInput) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resultsDir := t.TempDir()
			args := []string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--context", dir, "--results-dir", resultsDir}
			args = append(append(args, storageFlags(t)...), tc.args...) // later flags win
			r := run(t, nil, args...)
			if r.code == 0 {
				t.Fatalf("exit 0, want failure; stdout:\n%s", r.stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, r.stderr)
				}
			}
			if strings.Contains(r.stdout+r.stderr, password) {
				t.Errorf("the password is printed:\n%s", r.stderr)
			}
			if got := tags(t, testregistry.OpenRepo(t, repoName)); len(got) != 0 {
				t.Errorf("tags left behind: %v", got)
			}
			if files, _ := os.ReadDir(resultsDir); len(files) != 0 {
				t.Errorf("result files written on failure: %v", files)
			}
		})
	}
}

// TestRefusedCredentials: a registry with htpasswd auth refuses a wrong
// password with a clear message that never prints the password; the right
// one works.
func TestRefusedCredentials(t *testing.T) {
	const user, password = "builder", "s3cret-Pa55word"
	reg := testregistry.StartDistribution(t, testregistry.WithHtpasswd(user, password))
	dir := contextFiles(t, copyContainerfile)
	authFile := func(pass string) string {
		p := filepath.Join(t.TempDir(), "auth.json")
		auth := map[string]any{"auths": map[string]any{reg.Host: map[string]string{
			"auth": b64(user + ":" + pass),
		}}}
		b, _ := json.Marshal(auth)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrong := "wrong-" + password
	args := append([]string{"build", "--tls-verify=false", "--image", reg.Repo("e2e/auth") + ":v1", "--context", dir,
		"--platform", "linux/amd64"}, storageFlags(t)...)
	r := run(t, nil, append(args, "--authfile", authFile(wrong))...)
	if r.code == 0 || !strings.Contains(r.stderr, reg.Host) || !strings.Contains(strings.ToLower(r.stderr), "credentials") {
		t.Errorf("wrong password: exit %d, stderr:\n%s\nwant a failure naming the registry and the credentials", r.code, r.stderr)
	}
	for _, secret := range []string{wrong, b64(user + ":" + wrong)} {
		if strings.Contains(r.stderr+r.stdout, secret) {
			t.Errorf("output contains the credential %q", secret)
		}
	}
	r = run(t, []string{"REGISTRY_AUTH_FILE=" + authFile(password)}, args...)
	if r.code != 0 {
		t.Errorf("right password via REGISTRY_AUTH_FILE: exit %d\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr+r.stdout, password) {
		t.Error("output contains the password")
	}
}

// TestDiskFullDuringBuild: a full disk while buildah copies or commits a
// layer fails the run naming the instruction (as written), with no Go
// value dump of the step (its environment included) or of buildah's
// copier request, and nothing tagged.
func TestDiskFullDuringBuild(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	dir := testfixture.Context(t, map[string]string{"Containerfile": "FROM scratch\nCOPY big /big\n"})
	if err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, 12<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, where := range []string{"storage root", "TMPDIR"} {
		t.Run(where, func(t *testing.T) {
			full, store := mountTmpfs(t, "8m"), t.TempDir()
			root, env := filepath.Join(full, "root"), []string(nil)
			if where == "TMPDIR" {
				root, env = filepath.Join(store, "root"), []string{"TMPDIR=" + full}
			}
			repoName := reg.Repo("e2e/full")
			r := run(t, env, "build", "--tls-verify=false", "--image", repoName+":v1", "--context", dir,
				"--platform", "linux/amd64", "--storage-driver", "vfs", "--root", root, "--runroot", filepath.Join(store, "run"))
			if r.code == 0 {
				t.Fatalf("exit 0 with a 12 MiB layer on an 8 MiB %s", where)
			}
			for _, w := range []string{"no space left on device", `"COPY big /big"`} {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, r.stderr)
				}
			}
			for _, dump := range []string{"{Env:", "Command:copy", "copier.request{", "(0x"} {
				if strings.Contains(r.stderr, dump) {
					t.Errorf("stderr holds a Go value dump (%q):\n%s", dump, r.stderr)
				}
			}
			if got := tags(t, testregistry.OpenRepo(t, repoName)); len(got) != 0 {
				t.Errorf("tags left behind: %v", got)
			}
		})
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestSparseBaseImage: a base image whose layer holds a sparse file (PAX
// GNU.sparse entries, as GNU tar --sparse writes them) is pulled and built
// on, but containers/storage cannot give that layer's tar back as it was:
// each publisher refuses it with an error saying what is wrong (not a
// registry failure, no retries), a non-zero exit, and no index or tag.
func TestSparseBaseImage(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	sparseTar, err := os.ReadFile("../../pkg/zstdchunked/testdata/sparse/pax-1.0.tar")
	if err != nil {
		t.Fatal(err)
	}
	base := reg.Repo("e2e/sparse-base")
	pushBaseImage(t, testregistry.OpenRepo(t, base), "v1", sparseTar)
	dir := contextFiles(t, "FROM "+base+":v1\nCOPY hello.txt /hello.txt\n")
	for _, tc := range []struct {
		publisher string
		want      []string
	}{
		{"stream", []string{"storage does not give back the layer's tar", "sparse files", digest.FromBytes(sparseTar).String()}},
		{"copy", []string{"reading or compressing a layer from local storage"}},
	} {
		t.Run(tc.publisher, func(t *testing.T) {
			repoName := reg.Repo("e2e/sparse-" + tc.publisher)
			r := run(t, nil, append([]string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--context", dir,
				"--publisher", tc.publisher}, storageFlags(t)...)...)
			if r.code == 0 {
				t.Fatalf("exit 0, want failure; stderr:\n%s", r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, r.stderr)
				}
			}
			for _, bad := range []string{"retrying", "connection reset", "pushed index"} {
				if strings.Contains(r.stderr, bad) {
					t.Errorf("stderr mentions %q:\n%s", bad, r.stderr)
				}
			}
			if got := tags(t, testregistry.OpenRepo(t, repoName)); len(got) != 0 {
				t.Errorf("tags left behind: %v", got)
			}
		})
	}
}

// pushBaseImage pushes a one-layer linux/amd64 image made of layerTar
// (gzip-compressed) to repo as tag.
func pushBaseImage(t *testing.T, repo *remote.Repository, tag string, layerTar []byte) {
	t.Helper()
	ctx := context.Background()
	layer, err := oras.PushBytes(ctx, repo, ocispec.MediaTypeImageLayerGzip, testfixture.Gzip(t, layerTar))
	if err != nil {
		t.Fatal(err)
	}
	config, err := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layerTar)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	configDesc, err := oras.PushBytes(ctx, repo, ocispec.MediaTypeImageConfig, config)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "", oras.PackManifestOptions{
		ConfigDescriptor: &configDesc, Layers: []ocispec.Descriptor{layer},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Tag(ctx, manifest, tag); err != nil {
		t.Fatal(err)
	}
}
