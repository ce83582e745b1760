package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/pprof/profile"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// TestBuildPublishers: a reproducible build (--source-date-epoch) published
// by every path mcbuild offers gives the same gzip and zstd:chunked
// manifests: the stream publisher, with its layers compressed during the
// build or after it, with pkg/zstdchunked or storage's encoder, and
// copy.Image. So the fast path is exactly the reference one, byte for byte.
func TestBuildPublishers(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	dir := contextFiles(t, runContainerfile, "amd64")
	paths := []struct {
		name string
		args []string
	}{
		{"stream", nil}, // the defaults: parallel encoder, compressing after the build
		{"stream-early", []string{"--compress-while-building"}},
		{"stream-upstream", []string{"--zstd-chunked-encoder", "upstream"}},
		{"copy", []string{"--publisher", "copy"}},
	}
	var first []checkedEntry
	profile := filepath.Join(t.TempDir(), "cpu.prof")
	for _, p := range paths {
		repoName := reg.Repo("e2e/publishers-" + p.name)
		args := append([]string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--context", dir,
			"--platform", "linux/amd64", "--source-date-epoch", "1700000000"}, storageFlags(t)...)
		if p.name == "stream" {
			args = append(args, "--cpu-profile", profile)
		}
		r := mustRun(t, nil, append(args, p.args...)...)
		early := strings.Contains(r.stderr, "layers were compressed during the build")
		if want := p.name == "stream-early"; early != want {
			t.Errorf("%s: log mentions layers compressed during the build: %v, want %v\n%s", p.name, early, want, r.stderr)
		}
		// Early takes the tars buildah writes while committing (a buildah
		// that stops writing them where Early looks shows up here).
		if p.name == "stream-early" && !regexp.MustCompile(`\([1-9][0-9]* from the tars buildah committed`).MatchString(r.stderr) {
			t.Errorf("%s: no layer was compressed from buildah's commit tars:\n%s", p.name, r.stderr)
		}
		if p.name == "stream" {
			checkProfileLabels(t, profile)
		}
		_, entries := checkIndex(t, testregistry.OpenRepo(t, repoName), "v1", []string{"linux/amd64"}, gzipFirst)
		if first == nil {
			first = entries
			continue
		}
		for i, e := range entries {
			if i < len(first) && e.desc.Digest != first[i].desc.Digest {
				t.Errorf("%s: %s manifest %s, the stream publisher's is %s", p.name, e.format, e.desc.Digest, first[i].desc.Digest)
			}
		}
	}
}

// checkProfileLabels: a build's CPU profile labels its samples with the
// phase they belong to, so it can be read per phase (pprof -tagfocus
// phase=publish); the build phase always has samples.
func checkProfileLabels(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	prof, err := profile.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	phases := map[string]int{}
	for _, s := range prof.Sample {
		for _, v := range s.Label["phase"] {
			phases[v]++
		}
	}
	for v := range phases {
		if v != "build" && v != "publish" && v != "sbom" {
			t.Errorf("profile sample labeled phase=%q", v)
		}
	}
	if phases["build"] == 0 {
		t.Errorf("no sample of the CPU profile is labeled phase=build (labels: %v)", phases)
	}
}

// TestCPUProfile: --cpu-profile writes a profile even when the command
// fails (the profile is for finding out why something is slow, or stuck).
func TestCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.prof")
	r := run(t, nil, "--cpu-profile", path, "inspect", "--tls-verify=false", "127.0.0.1:1/e2e/none:v1")
	if r.code == 0 {
		t.Fatal("inspect of an unreachable registry succeeded")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 2 || raw[0] != 0x1f || raw[1] != 0x8b { // pprof profiles are gzipped protobufs
		t.Errorf("%s is not a gzipped pprof profile (%d bytes)", path, len(raw))
	}
}
