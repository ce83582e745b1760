package pipeline

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mcbuild/mcbuild/internal/build"
	"github.com/mcbuild/mcbuild/internal/formats"
	"github.com/mcbuild/mcbuild/internal/imagecheck"
	"github.com/mcbuild/mcbuild/internal/imageref"
	"github.com/mcbuild/mcbuild/internal/publish"
	"github.com/mcbuild/mcbuild/internal/registry"
	"github.com/mcbuild/mcbuild/internal/results"
	"github.com/mcbuild/mcbuild/internal/stage"
	"github.com/mcbuild/mcbuild/internal/summary"
	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

func TestMain(m *testing.M) {
	if build.InitReexec() {
		return
	}
	os.Exit(m.Run())
}

// TestBuildAndIndex runs a whole `mcbuild build` in this process against a
// loopback registry, then merges its result with `mcbuild index`: the
// variants, the gzip-first index, the tag, the results and every phase are
// checked, and the run's scratch directory is gone.
func TestBuildAndIndex(t *testing.T) {
	ctx := context.Background()
	reg := testregistry.StartDistribution(t)
	dir := testfixture.Context(t, map[string]string{
		"Containerfile": "FROM scratch\nCOPY rootfs/amd64/ /\nRUN echo built > /built.txt\n",
	}, "amd64")
	tmp := t.TempDir()
	dest, err := imageref.ParseTagged(reg.Repo("pipeline/app") + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	ro := registry.DefaultOptions()
	ro.TLSVerify = false
	sess, err := registry.NewSession(ro)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	plan := BuildPlan{
		Dest:      dest,
		Platforms: []ocispec.Platform{{OS: "linux", Architecture: "amd64"}},
		Formats:   []formats.Format{formats.Gzip, formats.ZstdChunked},
		Build:     build.Options{ContextDir: dir, Containerfile: filepath.Join(dir, "Containerfile")},
		Store:     build.StoreOptions{Driver: "vfs", Root: filepath.Join(tmp, "root"), RunRoot: filepath.Join(tmp, "run")},
		Publisher: publish.Stream,
		Stage:     stage.Settings{TmpDir: filepath.Join(tmp, "scratch")},
		Registry:  sess,
		Results:   Results{Dir: filepath.Join(tmp, "results"), SummaryJSON: filepath.Join(tmp, "summary.json")},
		Log:       &log,
	}
	if err := os.MkdirAll(plan.Stage.TmpDir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := Build(ctx, plan)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	checkOutcome(t, out, dest, plan.Results.Dir, 2)
	p := out.Phases
	if p.Build <= 0 || p.Publish <= 0 || p.PublishByFormat["gzip"] <= 0 || p.PublishByFormat["zstd:chunked"] <= 0 ||
		p.Index <= 0 || p.Subjects <= 0 || p.Verify <= 0 || p.Total < p.Build+p.Publish+p.Index+p.Subjects+p.Verify {
		t.Errorf("phases %+v: every phase of a build must be timed, and the total cover them", p)
	}
	repo := testregistry.OpenRepo(t, dest.Repository)
	for _, e := range out.Entries {
		if _, err := imagecheck.Check(ctx, repo, e.Descriptor, e.Format); err != nil {
			t.Errorf("%s variant: %v", e.Format, err)
		}
	}
	// --summary-json: the same report, variants included, written with the results.
	var written summary.Report
	if raw, err := os.ReadFile(plan.Results.SummaryJSON); err != nil || json.Unmarshal(raw, &written) != nil {
		t.Fatalf("summary JSON: %v", err)
	}
	if len(written.Variants) != 2 || written.Variants[0].Layers != 2 || written.Variants[0].Compressed != 2 || written.IndexDigest != out.Index.Digest.String() {
		t.Errorf("summary JSON %+v: want the index and both variants' layer figures", written)
	}
	rows, _, err := Inspect(ctx, repo, dest, sess.Options())
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0].Platform != "(index)" || rows[0].Digest != out.Index.Digest.String() ||
		rows[1].Compression != "gzip" || rows[2].Compression != "zstd:chunked" || rows[1].Size != out.Sizes[out.Entries[0].Descriptor.Digest] {
		t.Errorf("inspect rows %+v: want the index, then gzip and zstd:chunked with their download sizes", rows)
	}
	if left, _ := filepath.Glob(filepath.Join(plan.Stage.TmpDir, "*")); len(left) != 0 {
		t.Errorf("the run left %v in its scratch directory's parent", left)
	}

	// The build's index, merged on its own under another tag, lists the same
	// manifests in the same order.
	merged, err := imageref.ParseTagged(dest.Repository + ":merged")
	if err != nil {
		t.Fatal(err)
	}
	iplan := IndexPlan{Dest: merged, From: []string{dest.TaggedWithDigest(out.Index.Digest)}, Registry: sess,
		Results: Results{Dir: filepath.Join(tmp, "index-results")}, Log: &log}
	iout, err := Index(ctx, iplan)
	if err != nil {
		t.Fatal(err)
	}
	checkOutcome(t, iout, merged, iplan.Results.Dir, 2)
	for i := range out.Entries {
		if iout.Entries[i].Descriptor.Digest != out.Entries[i].Descriptor.Digest {
			t.Errorf("merged entry %d is %s, the build's %s", i, iout.Entries[i].Descriptor.Digest, out.Entries[i].Descriptor.Digest)
		}
	}
	if ip := iout.Phases; ip.Collect <= 0 || ip.Build != 0 || ip.Publish != 0 || ip.Index <= 0 || ip.Verify <= 0 {
		t.Errorf("index phases %+v: collect, index and verify timed; no build or publish", ip)
	}
}

// checkOutcome checks what any release must hold: gzip first per
// platform, the tag at the index, the results naming it, and a report row
// per manifest with its download size.
func checkOutcome(t *testing.T, out Outcome, dest imageref.Ref, resultsDir string, manifests int) {
	t.Helper()
	if len(out.Entries) != manifests {
		t.Fatalf("%d manifests published, want %d", len(out.Entries), manifests)
	}
	if out.Entries[0].Format != formats.Gzip || out.Entries[1].Format != formats.ZstdChunked {
		t.Errorf("index order %s, %s; want gzip first", out.Entries[0].Format, out.Entries[1].Format)
	}
	tagged, err := testregistry.OpenRepo(t, dest.Repository).Resolve(context.Background(), dest.Tag)
	if err != nil || tagged.Digest != out.Index.Digest {
		t.Errorf("tag %s resolves to %v (%v), want the index %s", dest.Tag, tagged.Digest, err, out.Index.Digest)
	}
	got, err := os.ReadFile(filepath.Join(resultsDir, results.ImageDigest))
	if err != nil || string(got) != out.Index.Digest.String() {
		t.Errorf("%s result %q (%v), want %s", results.ImageDigest, got, err, out.Index.Digest)
	}
	report := out.Report()
	if report.IndexDigest != out.Index.Digest.String() || len(report.Manifests) != manifests {
		t.Fatalf("report %+v does not describe the index", report)
	}
	for _, row := range report.Manifests {
		if row.Size <= 0 || row.Platform != "linux/amd64" {
			t.Errorf("report row %+v: want linux/amd64 and its download size", row)
		}
	}
}
