package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/imagecheck"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// The flags Konflux's buildah task has a parameter for (issue 17).

// TestHermeticRun: with --network none a RUN step cannot reach the
// registry on 127.0.0.1 (not even with RUN --network=host) while the base
// image is still pulled from it and the step's own loopback works; with the
// default (host) the same RUN reaches it. Both isolations. Each RUN writes
// what it saw into the image, read back from the registry.
func TestHermeticRun(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	base := reg.Repo("e2e/hermetic-base")
	mustRun(t, nil, append([]string{"build", "--tls-verify=false", "--image", base + ":v1", "--platform", "linux/amd64",
		"--compression-formats", "gzip", "--context", contextFiles(t, "FROM scratch\nCOPY rootfs/amd64/ /\n", "amd64")}, storageFlags(t)...)...)
	probe := func(file, flags string) string {
		return fmt.Sprintf("RUN %sif busybox wget -q -O /dev/null http://%s/v2/; then echo reached; else echo unreachable; fi > /%s\n", flags, reg.Host, file)
	}
	containerfile := "FROM " + base + ":v1\n" + probe("default", "") + probe("host-flag", "--network=host ") +
		"RUN busybox httpd -f -p 127.0.0.1:8080 -h /etc & sleep 0.3; if busybox wget -q -O /dev/null http://127.0.0.1:8080/passwd; then echo up; else echo down; fi > /loopback; kill $!\n"
	ctxDir := contextFiles(t, containerfile)
	for _, tc := range []struct {
		network, isolation, reach string
	}{
		{"none", "chroot", "unreachable"},
		{"none", "oci", "unreachable"},
		{"host", "chroot", "reached"},
		{"host", "oci", "reached"},
	} {
		t.Run(tc.network+"-"+tc.isolation, func(t *testing.T) {
			repoName := reg.Repo("e2e/hermetic-" + tc.network + "-" + tc.isolation)
			mustRun(t, nil, append([]string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--context", ctxDir,
				"--platform", "linux/amd64", "--compression-formats", "gzip", "--network", tc.network, "--isolation", tc.isolation},
				storageFlags(t)...)...)
			files := imageFiles(t, repoName, "v1")
			want := map[string]string{"default": tc.reach, "host-flag": tc.reach, "loopback": "up"}
			for f, w := range want {
				if got := strings.TrimSpace(string(files[f])); got != w {
					t.Errorf("--network %s, --isolation %s: /%s says %q, want %q", tc.network, tc.isolation, f, got, w)
				}
			}
		})
	}
}

// imageFiles reads the first (gzip) manifest of the index at ref and
// returns the small files of its layers (imagecheck.Variant.Files).
func imageFiles(t *testing.T, repoName, ref string) map[string][]byte {
	t.Helper()
	repo := testregistry.OpenRepo(t, repoName)
	var idx ocispec.Index
	desc, err := repo.Resolve(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	fetchJSON(t, repo, desc, &idx)
	v, err := imagecheck.Check(context.Background(), repo, idx.Manifests[0], formats.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	return v.Files
}

// TestKonfluxBadInput: the flags behind Konflux's params refuse bad values
// before any work, naming the flag, never printing a password.
func TestKonfluxBadInput(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	const password = "s3cret-in-a-flag"
	checkBadInput(t, reg.Repo("e2e/bad-konflux"), contextFiles(t, copyContainerfile), password, []badInput{
		{"bad network", []string{"--network", "bridge"}, []string{`--network "bridge"`, "host, none"}},
		{"bad expires-after", []string{"--expires-after", "2 days"}, []string{`--expires-after "2 days"`, "e.g. 1h, 2d, 3w"}},
		{"revision with a newline", []string{"--revision", "abc\ndef"}, []string{`--revision "abc\ndef"`, "control characters"}},
		{"source URL with a password", []string{"--source-url", "https://bot:" + password + "@git.example/app"}, []string{"--source-url", "holds a password"}},
		{"bad env", []string{"--env", "=1"}, []string{`--env "=1"`, "KEY=VALUE"}},
		{"proxy with a bad scheme", []string{"--http-proxy", "ftp://u:" + password + "@proxy.example"}, []string{"--http-proxy", `scheme "ftp"`}},
	})
}

// TestHermeticRefusesRemoteAdd: --network none refuses, before the build,
// an ADD that mcbuild would fetch from the network itself.
func TestHermeticRefusesRemoteAdd(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	ctxDir := contextFiles(t, "FROM scratch\nARG SRC=https://example.com/app.tgz\nADD ${SRC} /app.tgz\n")
	r := run(t, nil, append([]string{"build", "--tls-verify=false", "--image", reg.Repo("e2e/hermetic-add") + ":v1",
		"--context", ctxDir, "--network", "none"}, storageFlags(t)...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "https://example.com/app.tgz") || !strings.Contains(r.stderr, "--network none") || strings.Contains(r.stderr, "STEP 1") {
		t.Fatalf("exit %d, want a refusal before the build naming the source:\n%s", r.code, r.stderr)
	}
}

// TestSkipUnusedStages: a stage the target does not need is not built
// (its failing RUN never runs) unless --skip-unused-stages=false.
func TestSkipUnusedStages(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	ctxDir := contextFiles(t, "FROM scratch AS unused\nCOPY rootfs/amd64/ /\nRUN echo building the unused stage && exit 7\n\nFROM scratch\nCOPY hello.txt /hello.txt\n", "amd64")
	args := append([]string{"build", "--tls-verify=false", "--image", reg.Repo("e2e/stages") + ":v1", "--context", ctxDir,
		"--platform", "linux/amd64", "--compression-formats", "gzip"}, storageFlags(t)...)
	r := mustRun(t, nil, args...)
	if strings.Contains(r.stderr+r.stdout, "building the unused stage") {
		t.Errorf("the unused stage was built by default:\n%s", r.stderr)
	}
	r = run(t, nil, append(args, "--skip-unused-stages=false")...)
	if r.code == 0 || !strings.Contains(r.stderr, "exit status 7") {
		t.Errorf("--skip-unused-stages=false: exit %d, want the unused stage's RUN to fail the build:\n%s", r.code, r.stderr)
	}
}

// TestProvenanceEnvAndProxy: --source-url, --revision, --expires-after and
// --konflux-labels give every platform's config Konflux's labels (its own
// architecture) and every manifest the annotations, a --label overriding
// one of them; --env reaches RUN and the config; --http-proxy and
// --no-proxy reach RUN (HTTP_PROXY, HTTPS_PROXY, NO_PROXY and lower-case)
// but not the config. mcbuild's own requests to 127.0.0.1 are never
// proxied (Go's rule), so the build still pushes.
func TestProvenanceEnvAndProxy(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	repoName := reg.Repo("e2e/provenance")
	ctxDir := contextFiles(t, "FROM scratch\nARG TARGETARCH\nCOPY rootfs/${TARGETARCH}/ /\n"+
		"RUN echo \"$GREETING|$HTTP_PROXY|$https_proxy|$NO_PROXY\" > /seen\n", "amd64", "arm64")
	resultsDir := t.TempDir()
	mustRun(t, nil, append([]string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--context", ctxDir,
		"--platform", "linux/amd64,linux/arm64", "--source-date-epoch", "1700000000", "--results-dir", resultsDir,
		"--source-url", "https://git.example/o/app", "--revision", "0123abcd", "--expires-after", "2d", "--konflux-labels",
		"--label", "vcs-type=hg", "--env", "GREETING=hello there", "--http-proxy", "http://proxy.invalid:3128", "--no-proxy", ".internal"},
		storageFlags(t)...)...)
	repo := testregistry.OpenRepo(t, repoName)
	_, entries := checkIndex(t, repo, "v1", []string{"linux/amd64", "linux/arm64"}, gzipFirst)
	p := download(t, repo, "v1", readResults(t, resultsDir)["SUBJECTS_REF"])
	const stamp = "2023-11-14T22:13:20Z"
	for _, e := range entries {
		var m ocispec.Manifest
		var c ocispec.Image
		if err := json.Unmarshal(p.manifests[e.desc.Digest], &m); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(p.configs[m.Config.Digest], &c); err != nil {
			t.Fatal(err)
		}
		arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[c.Architecture]
		wantLabels := map[string]string{"org.opencontainers.image.source": "https://git.example/o/app", "org.opencontainers.image.revision": "0123abcd",
			"org.opencontainers.image.created": stamp, "build-date": stamp, "architecture": arch, "quay.expires-after": "2d",
			"vcs-url": "https://git.example/o/app", "vcs-ref": "0123abcd", "vcs-type": "hg"}
		for k, v := range wantLabels {
			if c.Config.Labels[k] != v {
				t.Errorf("%s %s: label %s = %q, want %q", c.Architecture, e.format, k, c.Config.Labels[k], v)
			}
		}
		for _, k := range []string{"org.opencontainers.image.source", "org.opencontainers.image.revision", "org.opencontainers.image.created"} {
			if m.Annotations[k] != wantLabels[k] {
				t.Errorf("%s %s: annotation %s = %q, want %q", c.Architecture, e.format, k, m.Annotations[k], wantLabels[k])
			}
		}
		if !slices.Contains(c.Config.Env, "GREETING=hello there") || slices.ContainsFunc(c.Config.Env, func(s string) bool { return strings.Contains(strings.ToLower(s), "proxy") }) {
			t.Errorf("%s: config env %q, want GREETING and no proxy variable", c.Architecture, c.Config.Env)
		}
	}
	if got, want := strings.TrimSpace(string(imageFiles(t, repoName, "v1")["seen"])), "hello there|http://proxy.invalid:3128|http://proxy.invalid:3128|.internal"; got != want {
		t.Errorf("RUN saw %q, want %q", got, want)
	}
}
