package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mcbuild/mcbuild/bench/internal/workload"
)

// baseResults is a base-workload run: the two setup records and two
// rounds of every arm, with the figures the harness records.
func baseResults(rPublish float64, rebuildExcess float64) *results {
	res := &results{Workload: workloadInfo{Name: workload.BaseName}, Runs: 2, Arms: []string{armReuse, armNoReuse, armGoBase, armD}, Titles: baseArmTitles}
	res.Records = append(res.Records,
		rec(setupCrane, 0, map[string]float64{"publish_s": 4, "publish_cpu_s": 3.5, "e2e_s": 4, "layers_compressed": 4, "bytes_compressed": 200 << 20, "sent_bytes": 60 << 20, "growth_bytes": 60 << 20}),
		rec(setupBase, 0, map[string]float64{"publish_s": 20, "publish_cpu_s": 9, "e2e_s": 100, "build_s": 78, "layers_compressed": 8, "bytes_compressed": 400 << 20, "bytes_uploaded": 110 << 20, "sent_bytes": 110 << 20, "growth_bytes": 110 << 20}))
	for round := 1; round <= 2; round++ {
		res.Records = append(res.Records,
			rec(armReuse, round, map[string]float64{"publish_s": rPublish, "publish_cpu_s": 1.5, "e2e_s": 100, "layers_compressed": 4, "bytes_compressed": 4 << 20, "bytes_uploaded": 4 << 20,
				"sent_bytes": 4 << 20, "growth_bytes": 4 << 20, "growth_bound_bytes": 4<<20 + 70<<10, "growth_over_bound": 0.98,
				"layers_gzip": 6, "compressed_gzip": 2, "reused_gzip": 4, "reused_gzip_base": 4, "layers_zstd:chunked": 6, "compressed_zstd:chunked": 2, "reused_zstd:chunked": 4, "reused_zstd:chunked_pulled": 4,
				"base_same_gzip": 1, "base_same_zstd:chunked": 1,
				"rebuild_publish_s": 1.7, "rebuild_layers_compressed": 2, "rebuild_compressed_gzip": 1, "rebuild_compressed_zstd:chunked": 1,
				"rebuild_layers_gzip": 6, "rebuild_reused_gzip": 5, "rebuild_reused_gzip_base": 4, "rebuild_reused_gzip_previous-release": 1,
				"rebuild_bytes_uploaded_gzip": 2097664 + rebuildExcess, "rebuild_changed_bytes_gzip": 2097664, "rebuild_upload_excess_gzip": rebuildExcess,
				"rebuild_bytes_uploaded_zstd:chunked": 2097700, "rebuild_changed_bytes_zstd:chunked": 2097700, "rebuild_upload_excess_zstd:chunked": 0,
				"rebuild_growth_bytes": 4 << 20, "rebuild_growth_over_bound": 0.99}),
			rec(armNoReuse, round, map[string]float64{"publish_s": 18, "publish_cpu_s": 30, "layers_compressed": 12, "growth_bytes": 4 << 20, "growth_over_bound": 0.97,
				"base_same_gzip": 1, "base_same_zstd:chunked": float64(round - 1)}),
			rec(armGoBase, round, map[string]float64{"publish_s": 12, "growth_bytes": 70 << 20, "growth_over_bound": 17, "base_same_gzip": 1, "layers_gzip": 6, "reused_gzip": 4, "reused_gzip_pulled": 4, "compressed_gzip": 2}),
			rec(armD, round, map[string]float64{"publish_s": 30, "push_gzip_s": 12, "push_zstd_s": 18, "growth_bytes": 120 << 20, "growth_over_bound": 30, "base_same_gzip": 0, "base_same_zstd:chunked": 0}),
		)
	}
	res.summarize()
	return res
}

func TestBaseChecks(t *testing.T) {
	res := baseResults(2, 0)
	want := map[string]string{
		"app publish / base publish: r (reuse, the base held in both formats)":               "PASS", // 2/20
		"gzip base layers are the mcbuild base's blobs (r)":                                  "PASS",
		"gzip base layers are the crane base's blobs (g)":                                    "PASS",
		"registry growth within the app's new layers (r)":                                    "PASS",
		"rebuild, one COPY changed: gzip compresses and uploads only that layer (r)":         "PASS",
		"rebuild, one COPY changed: zstd:chunked compresses and uploads only that layer (r)": "PASS",
		"app publish / base publish: d (buildah, two pushes)":                                "info",
		"gzip base layers are the mcbuild base's blobs (d)":                                  "info",
		"registry growth within the app's new layers (g)":                                    "info", // 17 > 1, but not judged
	}
	got := map[string]ratio{}
	for _, r := range res.Ratios {
		got[r.Name] = r
	}
	for k, v := range want {
		if got[k].Verdict != v {
			t.Errorf("%s: %s (%v), want %s", k, got[k].Verdict, got[k].Value, v)
		}
	}
	if r := got["zstd:chunked base layers are the mcbuild base's blobs (n)"]; r.Value != 0 || r.Verdict != "info" || r.Target != "" {
		t.Errorf("n's zstd:chunked identity, 1 run of 2: %+v", r)
	}
	md := res.markdown()
	for _, s := range []string{
		"# mcbuild benchmark (issue #12, reusing layer blobs): workload \"base\"",
		"| app publish / base publish: r (reuse, the base held in both formats) | 0.100 | <= 0.15 | PASS |",
		"| gzip base layers are the mcbuild base's blobs (d) | 0.000 |  | info |",
		"| crane append + mutate: gzip (Go's compress/gzip), Docker media types | 4.00 | 3.50 | 4.00 | 4 | 200.0 | - | 60.0 | 60.0 |",
		"| mcbuild build, FROM scratch, gzip + zstd:chunked: the base's publish | 20.00 | 9.00 | 100.00 | 8 | 400.0 | 110.0 | 110.0 | 110.0 |",
		"(build phase 78.00 s)",
		"| r  mcbuild, reuse (default) | 2.00 | 1.50 | 100.00 | 0.100 | 4 | 4.0 | 4.0 | 4.0 | 4.0 | 4.1 |",
		"| d  buildah build; push gzip; push zstd:chunked | 30.00 | - | - | 1.500 | - | - | - | - | 120.0 | - |",
		"| r  rebuild, one COPY changed, same tag | 1.70 | - | - | 0.085 | 2 | - | - | - | 4.0 | - |",
		"| r | gzip | 6 | 4 (base 4) | 2 | - | - | yes |",
		"| r | zstd:chunked | 6 | 4 (pulled 4) | 2 | - | - | yes |",
		"| r rebuild | gzip | 6 | 5 (base 4, previous-release 1) | 1 | - | 2.0 | - |",
		"| n | zstd:chunked | - | - | - | - | - | in 1 of 2 runs |",
		"| g | gzip | 6 | 4 (pulled 4) | 2 | - | - | yes |",
		"| d | gzip | - | - | - | - | - | no |",
		"uploaded 2097664 B (median), the changed layer's blob 2097664 B",
	} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
	// The ref workload's tables are not printed for the base workload.
	if strings.Contains(md, "Floors") || strings.Contains(md, "issue #5 targets") {
		t.Errorf("base markdown has the ref workload's tables:\n%s", md)
	}
}

func TestBaseChecksFail(t *testing.T) {
	res := baseResults(4, 512) // 4/20 = 0.2; the gzip rebuild uploaded 512 B more than the changed layer
	got := map[string]string{}
	for _, r := range res.Ratios {
		got[r.Name] = r.Verdict
	}
	for _, k := range []string{"app publish / base publish: r (reuse, the base held in both formats)", "rebuild, one COPY changed: gzip compresses and uploads only that layer (r)"} {
		if got[k] != "FAIL" {
			t.Errorf("%s: %s, want FAIL", k, got[k])
		}
	}
	if k := "rebuild, one COPY changed: zstd:chunked compresses and uploads only that layer (r)"; got[k] != "PASS" {
		t.Errorf("%s: %s, want PASS", k, got[k])
	}
	// Without arm r, its checks are n/a, not FAIL.
	res = &results{Workload: workloadInfo{Name: workload.BaseName}, Records: []*record{rec(setupBase, 0, map[string]float64{"publish_s": 20})}}
	res.summarize()
	for _, r := range res.Ratios {
		if r.Verdict != "n/a" {
			t.Errorf("%s: %s without the arms, want n/a", r.Name, r.Verdict)
		}
	}
}

// recordVariants reads mcbuild's --summary-json variants.
func TestRecordVariants(t *testing.T) {
	const js = `{"index_size": 556, "manifests": [{"compression": "gzip", "digest": "sha256:aa"}, {"compression": "zstd:chunked", "digest": "sha256:bb"}],
	"variants": [
	  {"platform": "linux/amd64", "compression": "zstd:chunked", "layers": 6, "layers_reused": {"pulled": 4, "previous-release": 1}, "layers_compressed": 1, "bytes_compressed": 2100000, "bytes_uploaded": 2097700},
	  {"platform": "linux/amd64", "compression": "gzip", "layers": 6, "layers_reused": {"base": 4}, "layers_compressed": 2, "bytes_compressed": 2200000, "bytes_uploaded": -1}
	],
	"phases": {"build_seconds": 150, "publish_seconds": 1.7, "total_seconds": 152}}`
	var s mcbuildSummary
	if err := json.Unmarshal([]byte(js), &s); err != nil {
		t.Fatal(err)
	}
	r := newRecord(armReuse)
	recordVariants(r, "rebuild_", &s)
	want := map[string]float64{
		"rebuild_layers_zstd:chunked": 6, "rebuild_compressed_zstd:chunked": 1, "rebuild_reused_zstd:chunked": 5,
		"rebuild_reused_zstd:chunked_pulled": 4, "rebuild_reused_zstd:chunked_previous-release": 1,
		"rebuild_bytes_compressed_zstd:chunked": 2100000, "rebuild_bytes_uploaded_zstd:chunked": 2097700,
		"rebuild_layers_gzip": 6, "rebuild_compressed_gzip": 2, "rebuild_reused_gzip": 4, "rebuild_reused_gzip_base": 4,
		"rebuild_bytes_compressed_gzip": 2200000,
		"rebuild_layers_compressed":     3, "rebuild_bytes_compressed": 4300000, "rebuild_bytes_uploaded": 2097700,
	}
	for k, v := range want {
		if r.Metrics[k] != v {
			t.Errorf("%s = %v, want %v", k, r.Metrics[k], v)
		}
	}
	if _, ok := r.Metrics["rebuild_bytes_uploaded_gzip"]; ok {
		t.Error("an unknown byte count (-1) was recorded")
	}
	if len(r.Metrics) != len(want) {
		t.Errorf("%d metrics, want %d: %v", len(r.Metrics), len(want), r.Metrics)
	}
	if s.IndexSize != 556 || s.Manifests[1].Digest != "sha256:bb" {
		t.Errorf("summary %+v", s)
	}
}

func layer(content string, size int64) ocispec.Descriptor {
	return ocispec.Descriptor{Digest: digest.FromString(content), Size: size}
}

func TestJudgeApp(t *testing.T) {
	base := []ocispec.Descriptor{layer("b1", 1000), layer("b2", 2000)}
	zbase := []ocispec.Descriptor{layer("z1", 1100), layer("z2", 2100)}
	b := &bench{base: baseState{layers: map[string]map[string][]string{
		baseMC:    {"gzip": digests(base), "zstd:chunked": digests(zbase)},
		baseCrane: {"gzip": digests(base)},
	}}}
	run := layer("run", 300)
	mans := map[string]pushed{
		"gzip":         {size: 1400, manifest: ocispec.Manifest{Config: layer("c", 500), Layers: append(append([]ocispec.Descriptor{}, base...), run, layer("copy", 4000))}},
		"zstd:chunked": {size: 3200, manifest: ocispec.Manifest{Config: layer("c", 500), Layers: []ocispec.Descriptor{layer("other", 1100), zbase[1], run, layer("zcopy", 4100)}}},
	}
	r := newRecord(armReuse)
	r.set("growth_bytes", 10000)
	b.judgeApp(r, "", baseMC, 2, 556, mans)
	// Configs count per manifest (the same config twice is a bound, not
	// an estimate); the RUN layer once.
	bound := 556.0 + growthSlack + 1400 + 500 + 300 + 4000 + 3200 + 500 + 4100
	if r.Metrics["base_same_gzip"] != 1 || r.Metrics["base_same_zstd:chunked"] != 0 || r.Metrics["growth_bound_bytes"] != bound || r.Metrics["growth_over_bound"] != 10000/bound {
		t.Errorf("metrics %v, want bound %v", r.Metrics, bound)
	}
	// The crane base has no zstd:chunked variant: nothing to compare.
	r = newRecord(armGoBase)
	b.judgeApp(r, "", baseCrane, 3, 0, mans)
	if _, ok := r.Metrics["base_same_zstd:chunked"]; ok || r.Metrics["base_same_gzip"] != 1 {
		t.Errorf("crane base: %v", r.Metrics)
	}
	if _, ok := r.Metrics["growth_over_bound"]; ok {
		t.Error("growth over bound without a growth measured")
	}
	// A manifest shorter than the base is not the base.
	short := map[string]pushed{"gzip": {manifest: ocispec.Manifest{Layers: base[:1]}}}
	r = newRecord(armD)
	b.judgeApp(r, "", baseMC, 2, 0, short)
	if r.Metrics["base_same_gzip"] != 0 {
		t.Errorf("a one-layer manifest matched a two-layer base: %v", r.Metrics)
	}
}

func TestCountingProxy(t *testing.T) {
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		w.Header().Set("Location", "http://"+r.Host+"/v2/x/blobs/uploads/1")
		_, _ = w.Write([]byte("0123456789"))
	}))
	defer srv.Close()
	p, err := startProxy(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for range 2 {
		req, _ := http.NewRequest(http.MethodPatch, "http://"+p.addr+"/v2/x/blobs/uploads/1", bytes.NewReader(make([]byte, 1000)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "0123456789" || len(got) != 1000 {
			t.Fatalf("through the proxy: %q, the server got %d B", body, len(got))
		}
		if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "http://"+p.addr+"/") {
			t.Errorf("Location %q does not point back at the proxy %s", loc, p.addr)
		}
	}
	if sent, received := p.counts(); sent != 2000 || received != 20 {
		t.Errorf("counts %d sent, %d received; want 2000, 20", sent, received)
	}
	p.reset()
	if sent, received := p.counts(); sent != 0 || received != 0 {
		t.Errorf("after reset: %d, %d", sent, received)
	}
}

func TestDirBytes(t *testing.T) {
	dir := t.TempDir()
	if n, err := dirBytes(filepath.Join(dir, "missing")); n != 0 || err != nil {
		t.Errorf("missing directory: %d, %v", n, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, n := range map[string]int{"x": 10, "a/y": 100, "a/b/z": 1000} {
		if err := os.WriteFile(filepath.Join(dir, p), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("x", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if n, err := dirBytes(dir); n != 1110 || err != nil {
		t.Errorf("dirBytes = %d, %v; want 1110", n, err)
	}
}

func TestSummaryPath(t *testing.T) {
	b := &bench{cfg: config{mcbuild: "mcbuild", driver: "vfs"}, reg: "127.0.0.1:5000"}
	args := b.mcbuildArgsFor("/w/r-1", "127.0.0.1:5000/bench/app:v1", "/w/app/Containerfile", bothFormats, "--reuse-layers=false")
	if got := summaryPath(args); got != "/w/r-1/summary.json" {
		t.Errorf("summaryPath = %q", got)
	}
	joined := strings.Join(args, " ")
	for _, s := range []string{"--context /w/app --file /w/app/Containerfile", "--image 127.0.0.1:5000/bench/app:v1", "--compression-formats gzip,zstd:chunked", "--reuse-layers=false"} {
		if !strings.Contains(joined, s) {
			t.Errorf("args lack %q: %s", s, joined)
		}
	}
	if summaryPath([]string{"mcbuild", "build"}) != "" {
		t.Error("summaryPath without the flag")
	}
}

func TestAppSeed(t *testing.T) {
	seen := map[uint64]string{}
	for _, arm := range []string{armReuse, armNoReuse, armGoBase, armD} {
		for round := 1; round <= 5; round++ {
			for v := range 2 {
				s := appSeed(arm, round, v)
				if prev, ok := seen[s]; ok {
					t.Fatalf("appSeed(%s, %d, %d) = %d, as %s", arm, round, v, s, prev)
				}
				seen[s] = arm
			}
		}
	}
}
