package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/results"
	"github.com/mcbuild/mcbuild/internal/summary"
	"github.com/mcbuild/mcbuild/internal/testregistry"
	"github.com/mcbuild/mcbuild/pkg/subjects"
)

// runContainerfile has a RUN step, so the arm64 build runs busybox under qemu.
const runContainerfile = `FROM scratch
ARG TARGETARCH
COPY rootfs/${TARGETARCH}/ /
RUN mkdir -p /srv && echo "built on $(uname -m)" > /srv/built.txt
COPY hello.txt /srv/hello.txt
`

// copyContainerfile has no RUN: any platform builds without emulation.
const copyContainerfile = `FROM scratch
COPY hello.txt /hello.txt
`

var gzipFirst = []formats.Format{formats.Gzip, formats.ZstdChunked}

// TestBuildTwoPlatforms is the main flow on a registry without the referrers
// API: two platforms (arm64 RUN under qemu), both formats, index, subjects
// (found through the fallback tag), results, verify, and Debian's skopeo.
func TestBuildTwoPlatforms(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	repoName := reg.Repo("e2e/two")
	dir := contextFiles(t, runContainerfile, "amd64", "arm64")
	resultsDir := t.TempDir()
	summaryJSON := filepath.Join(t.TempDir(), "summary.json")
	args := append([]string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--context", dir,
		"--platform", "linux/amd64,linux/arm64", "--results-dir", resultsDir, "--summary-json", summaryJSON}, storageFlags(t)...)
	r := mustRun(t, nil, args...)

	repo := testregistry.OpenRepo(t, repoName)
	idx, entries := checkIndex(t, repo, "v1", []string{"linux/amd64", "linux/arm64"}, gzipFirst)
	res := readResults(t, resultsDir)
	wantImages := []string{repoName + "@" + idx.Digest.String()}
	for _, e := range entries {
		wantImages = append(wantImages, repoName+"@"+e.desc.Digest.String())
	}
	want := map[string]string{
		"IMAGE_URL":    repoName + ":v1",
		"IMAGE_DIGEST": idx.Digest.String(),
		"IMAGE_REF":    repoName + ":v1@" + idx.Digest.String(),
		"IMAGES":       strings.Join(wantImages, ","),
	}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("result %s = %q, want %q", k, res[k], v)
		}
	}
	if len(res) != 6 || !strings.HasPrefix(res["SUBJECTS_REF"], repoName+"@sha256:") || !strings.HasPrefix(res["SBOM_BLOB_URL"], repoName+"@sha256:") {
		t.Fatalf("results %v: want the six results with SUBJECTS_REF and SBOM_BLOB_URL", res)
	}
	checkSubjects(t, repo, repoName, res["SUBJECTS_REF"], idx, entries)

	// distribution has no referrers API: the artifact is found via the
	// fallback tag, as the SBOM referrers of the index and every manifest.
	fallback := "sha256-" + idx.Digest.Encoded()
	wantTags := []string{"v1", fallback}
	for _, e := range entries {
		wantTags = append(wantTags, "sha256-"+e.desc.Digest.Encoded())
	}
	if got := tags(t, repo); strings.Join(got, ",") != strings.Join(sortedCopy(wantTags), ",") {
		t.Errorf("tags %v, want exactly v1 and the referrers fallback tags %v of the index and the manifests (no temporary tags)", got, wantTags[1:])
	}
	found, err := subjects.Find(context.Background(), repo, idx)
	if err != nil || "@"+found.Digest.String() != res["SUBJECTS_REF"][len(repoName):] {
		t.Errorf("subjects.Find from the index = %v, %v; want %s", found.Digest, err, res["SUBJECTS_REF"])
	}

	// The human summary names every manifest and the time of each phase;
	// the JSON one too.
	for _, e := range entries {
		if !strings.Contains(r.stdout, e.desc.Digest.String()) {
			t.Errorf("summary lacks %s:\n%s", e.desc.Digest, r.stdout)
		}
	}
	if !regexp.MustCompile(`time: build [0-9.]+s, publish [0-9.]+s \(gzip [0-9.]+s, zstd:chunked [0-9.]+s\), sbom [0-9.]+s \(alongside the publish; waited [0-9.]+s\), index [0-9.]+s, subjects [0-9.]+s, sbom attach [0-9.]+s, verify [0-9.]+s, total [0-9.]+s`).MatchString(r.stdout) {
		t.Errorf("summary lacks the phase times:\n%s", r.stdout)
	}
	var report summary.Report
	raw, err := os.ReadFile(summaryJSON)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &report); err != nil {
		t.Fatal(err)
	}
	if report.IndexDigest != idx.Digest.String() || len(report.Manifests) != len(entries) {
		t.Errorf("summary JSON index %s with %d manifests, want %s with %d", report.IndexDigest, len(report.Manifests), idx.Digest, len(entries))
	}
	for i, m := range report.Manifests {
		if m.Digest != entries[i].desc.Digest.String() || m.Size <= entries[i].desc.Size {
			t.Errorf("summary JSON manifest %d = %+v, want digest %s and a size counting config and layers", i, m, entries[i].desc.Digest)
		}
	}
	if p := report.Phases; p.Build <= 0 || p.Publish <= 0 || p.PublishByFormat["gzip"] <= 0 || p.PublishByFormat["zstd:chunked"] <= 0 || p.Verify <= 0 || p.Total < p.Build+p.Publish {
		t.Errorf("summary JSON phases %+v: want build, publish (per format) and a total covering them", p)
	}
	v := mustRun(t, nil, "subjects", "verify", "--tls-verify=false", repoName+":v1")
	if !strings.Contains(v.stdout, "matches") {
		t.Errorf("subjects verify output: %s", v.stdout)
	}
	insp := mustRun(t, nil, "inspect", "--tls-verify=false", repoName+":v1")
	for _, w := range []string{"linux/amd64", "linux/arm64", "gzip", "zstd:chunked"} {
		if !strings.Contains(insp.stdout, w) {
			t.Errorf("inspect output lacks %q:\n%s", w, insp.stdout)
		}
	}

	// Debian's skopeo 1.9.3 takes the first entry for its platform: gzip.
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Fatal("skopeo not installed: `make test` installs it")
	}
	dest := t.TempDir()
	cmd := exec.Command(skopeo, "--override-os", "linux", "--override-arch", "arm64", "copy", "--src-tls-verify=false",
		"docker://"+repoName+":v1", "dir:"+dest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	raw, err = os.ReadFile(filepath.Join(dest, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := digest.FromBytes(raw); got != entries[2].desc.Digest {
		t.Errorf("skopeo pulled %s for linux/arm64, want the gzip entry %s", got, entries[2].desc.Digest)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestBuildReferrersAPI: one platform on olareg, which has the referrers API,
// with the formats given zstd:chunked first (the index still puts gzip first).
func TestBuildReferrersAPI(t *testing.T) {
	reg := testregistry.StartOlareg(t)
	repoName := reg.Repo("e2e/one")
	dir := contextFiles(t, runContainerfile, "amd64")
	resultsDir := t.TempDir()
	args := append([]string{"build", "--tls-verify=false", "--image", repoName + ":latest", "--context", dir,
		"--platform", "linux/amd64", "--compression-formats", "zstd:chunked,gzip", "--results-dir", resultsDir}, storageFlags(t)...)
	mustRun(t, nil, args...)
	repo := testregistry.OpenRepo(t, repoName)
	idx, entries := checkIndex(t, repo, "latest", []string{"linux/amd64"}, gzipFirst)
	res := readResults(t, resultsDir)
	checkSubjects(t, repo, repoName, res["SUBJECTS_REF"], idx, entries)
	var listed []string
	err := repo.Referrers(context.Background(), idx, subjects.ArtifactType, func(refs []ocispec.Descriptor) error {
		for _, r := range refs {
			listed = append(listed, r.Digest.String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || repoName+"@"+listed[0] != res["SUBJECTS_REF"] {
		t.Errorf("referrers API lists %v, want exactly %s", listed, res["SUBJECTS_REF"])
	}
	for _, tag := range tags(t, repo) {
		if tag != "latest" {
			t.Errorf("unexpected tag %q: the referrers API needs no fallback tag, and no temporary tags may remain", tag)
		}
	}
}

// TestDeterminism: the same inputs and SOURCE_DATE_EPOCH give the same digests,
// even from two separate stores.
func TestDeterminism(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	dir := contextFiles(t, runContainerfile, "amd64")
	var digests []string
	for _, tag := range []string{"a", "b"} {
		resultsDir := t.TempDir()
		args := append([]string{"build", "--tls-verify=false", "--image", reg.Repo("e2e/repro") + ":" + tag, "--context", dir,
			"--platform", "linux/amd64", "--results-dir", resultsDir}, storageFlags(t)...)
		mustRun(t, []string{"SOURCE_DATE_EPOCH=1700000000"}, args...)
		res := readResults(t, resultsDir)
		digests = append(digests, res["IMAGE_DIGEST"]+" "+strings.SplitN(res["SUBJECTS_REF"], "@", 2)[1])
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds with the same SOURCE_DATE_EPOCH differ: %q vs %q", digests[0], digests[1])
	}
}

// TestResultsBudgetTwentyPlatforms: 20 platforms x 2 formats do not fit the
// 4096-byte termination message with every digest in IMAGES, so IMAGES is
// written empty (present, so that a Pipeline result naming it resolves) with
// a warning naming SUBJECTS_REF, and what is written, the empty IMAGES
// included, fits.
func TestResultsBudgetTwentyPlatforms(t *testing.T) {
	platforms := []string{
		"linux/amd64", "openbsd/amd64", "openbsd/arm64", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm64",
		"linux/386", "linux/ppc64le", "linux/ppc64", "linux/s390x", "linux/riscv64", "linux/mips64le", "linux/mips64",
		"linux/mipsle", "linux/mips", "linux/loong64", "freebsd/amd64", "freebsd/arm64", "netbsd/amd64",
	}
	reg := testregistry.StartDistribution(t)
	repoName := reg.Repo("e2e/many-platforms")
	dir := contextFiles(t, copyContainerfile)
	resultsDir := t.TempDir()
	args := append([]string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--context", dir,
		"--platform", strings.Join(platforms, ","), "--results-dir", resultsDir}, storageFlags(t)...)
	r := mustRun(t, nil, args...)
	res := readResults(t, resultsDir)
	if images, ok := res["IMAGES"]; !ok || images != "" {
		t.Errorf("IMAGES = %q (written: %v) for 40 manifests; want it written empty, the digests cannot fit the budget", images, ok)
	}
	if res["SUBJECTS_REF"] == "" || !strings.Contains(r.stderr, "IMAGES written empty") || !strings.Contains(r.stderr, "SUBJECTS_REF="+res["SUBJECTS_REF"]) {
		t.Errorf("want SUBJECTS_REF written and a warning that IMAGES is empty naming it; stderr:\n%s", r.stderr)
	}
	if len(res) != 6 || res["SBOM_BLOB_URL"] == "" {
		t.Errorf("results %v: want all six (SBOM_BLOB_URL included)", res)
	}
	if size := results.EncodedSize(res); size > results.DefaultBudget {
		t.Errorf("results take %d bytes (with Tekton's StartedAt entry), over %d", size, results.DefaultBudget)
	}
	repo := testregistry.OpenRepo(t, repoName)
	idx, entries := checkIndex(t, repo, "v1", platforms, gzipFirst)
	checkSubjects(t, repo, repoName, res["SUBJECTS_REF"], idx, entries)
}

// TestIndexMerge is the matrix flow: two single-platform builds under
// per-platform tags, then `mcbuild index` merges them (flattening their
// indexes) into one gzip-first index with its own subjects artifact.
func TestIndexMerge(t *testing.T) {
	reg := testregistry.StartOlareg(t)
	repoName := reg.Repo("e2e/matrix")
	dir := contextFiles(t, copyContainerfile)
	var from []string
	for _, p := range []struct{ platform, tag string }{{"linux/arm64", "v1-linux-arm64"}, {"linux/arm/v7", "v1-linux-arm-v7"}} {
		resultsDir := t.TempDir()
		args := append([]string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--append-platform", "--context", dir,
			"--platform", p.platform, "--results-dir", resultsDir}, storageFlags(t)...)
		mustRun(t, nil, args...)
		res := readResults(t, resultsDir)
		if res["IMAGE_URL"] != repoName+":"+p.tag {
			t.Errorf("--append-platform for %s: IMAGE_URL %q, want tag %s", p.platform, res["IMAGE_URL"], p.tag)
		}
		from = append(from, res["IMAGE_REF"])
	}
	resultsDir := t.TempDir()
	summaryJSON := filepath.Join(t.TempDir(), "summary.json")
	r := mustRun(t, nil, "index", "--tls-verify=false", "--image", repoName+":v1", "--from", from[0], "--from", from[1], "--results-dir", resultsDir, "--summary-json", summaryJSON)
	repo := testregistry.OpenRepo(t, repoName)
	idx, entries := checkIndex(t, repo, "v1", []string{"linux/arm64", "linux/arm/v7"}, gzipFirst)
	// Its time, per phase: in the human summary and in --summary-json.
	if !regexp.MustCompile(`time: collect [0-9.]+s, index [0-9.]+s, subjects [0-9.]+s, sbom attach [0-9.]+s, verify [0-9.]+s, total [0-9.]+s`).MatchString(r.stdout) {
		t.Errorf("index summary lacks its phase times:\n%s", r.stdout)
	}
	var report summary.Report
	raw, err := os.ReadFile(summaryJSON)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &report); err != nil {
		t.Fatal(err)
	}
	if p := report.Phases; report.IndexDigest != idx.Digest.String() || p.Collect <= 0 || p.Index <= 0 || p.Subjects <= 0 || p.Verify <= 0 || p.Build != 0 || p.Total < p.Collect+p.Index+p.Subjects {
		t.Errorf("index summary JSON: index %s, phases %+v; want %s, collect, index and subjects, no build, a total covering them", report.IndexDigest, p, idx.Digest)
	}
	res := readResults(t, resultsDir)
	if res["IMAGE_DIGEST"] != idx.Digest.String() {
		t.Errorf("IMAGE_DIGEST %s, want %s", res["IMAGE_DIGEST"], idx.Digest)
	}
	checkSubjects(t, repo, repoName, res["SUBJECTS_REF"], idx, entries)
	// The comma-list form of --from gives the same index.
	mustRun(t, nil, "index", "--tls-verify=false", "--image", repoName+":v1-again", "--from", strings.Join(from, ","))
	again, err := repo.Resolve(context.Background(), "v1-again")
	if err != nil || again.Digest != idx.Digest {
		t.Errorf("comma-list --from gave %v (%v), want %s", again.Digest, err, idx.Digest)
	}
}

// TestSubjectsVerifyTampered: verify fails, listing the mismatch, on an
// artifact that leaves a manifest out.
func TestSubjectsVerifyTampered(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	repoName := reg.Repo("e2e/tamper")
	dir := contextFiles(t, copyContainerfile)
	resultsDir := t.TempDir()
	mustRun(t, nil, append([]string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--context", dir,
		"--platform", "linux/amd64", "--results-dir", resultsDir}, storageFlags(t)...)...)
	repo := testregistry.OpenRepo(t, repoName)
	ctx := context.Background()
	res := readResults(t, resultsDir)
	good, err := repo.Resolve(ctx, res["SUBJECTS_REF"])
	if err != nil {
		t.Fatal(err)
	}
	doc, m, err := subjects.Fetch(ctx, repo, good)
	if err != nil {
		t.Fatal(err)
	}
	dropped := doc.Subjects[len(doc.Subjects)-1]
	doc.Subjects = doc.Subjects[:len(doc.Subjects)-1]
	bad, err := subjects.Push(ctx, repo, doc, *m.Subject)
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, "subjects", "verify", "--tls-verify=false", repoName+"@"+bad.Digest.String())
	if r.code == 0 || !strings.Contains(r.stderr, dropped.Digest["sha256"]) {
		t.Errorf("verify of a tampered artifact: exit %d, stderr:\n%s\nwant non-zero naming %s", r.code, r.stderr, dropped.Digest["sha256"])
	}
	if r := run(t, nil, "subjects", "verify", "--tls-verify=false", res["SUBJECTS_REF"]); r.code != 0 {
		t.Errorf("verify of the genuine artifact failed: %s", r.stderr)
	}
}

// TestIsolation: --isolation oci runs RUN in its own PID namespace through
// runc (the RUN is PID 1 there); chroot, the default, needs no runtime.
func TestIsolation(t *testing.T) {
	reg := testregistry.StartOlareg(t)
	dir := contextFiles(t, "FROM scratch\nCOPY rootfs/amd64/ /\nRUN echo \"pid1=$(cat /proc/1/comm)\"\n", "amd64")
	tests := []struct{ isolation, pid1 string }{
		{"oci", "pid1=sh"},
		{"chroot", "pid1="},
	}
	for _, tc := range tests {
		t.Run(tc.isolation, func(t *testing.T) {
			r := mustRun(t, nil, append([]string{"build", "--tls-verify=false", "--image", reg.Repo("e2e/isolation") + ":" + tc.isolation,
				"--context", dir, "--platform", "linux/amd64", "--isolation", tc.isolation}, storageFlags(t)...)...)
			if !strings.Contains(r.stderr, tc.pid1) {
				t.Errorf("RUN output lacks %q:\n%s", tc.pid1, r.stderr)
			}
			if tc.isolation == "chroot" && strings.Contains(r.stderr, "pid1=sh") {
				t.Errorf("chroot isolation ran RUN as PID 1 of a new namespace")
			}
		})
	}
}
