package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcbuild/mcbuild/bench/internal/floors"
	"github.com/mcbuild/mcbuild/bench/internal/workload"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func rec(arm string, round int, m map[string]float64) *record {
	r := newRecord(arm)
	r.Round = round
	for k, v := range m {
		r.set(k, v)
	}
	return r
}

func TestRatiosAndVerdicts(t *testing.T) {
	res := &results{Workload: workloadInfo{Name: workload.Big().Name}, Runs: 3}
	for i, pub := range []float64{10, 12, 11} {
		res.Records = append(res.Records,
			rec(armA, i+1, map[string]float64{"publish_s": 10, "build_s": 8}),
			rec(armB, i+1, map[string]float64{"publish_s": pub, "build_s": 9, "e2e_s": 20, "publish_peak_mib": 300, "e2e_peak_mib": 350}),
			rec(armF, i+1, map[string]float64{"publish_s": 6, "build_s": 10, "early_compress_s": 5 + float64(i), "early_layers": 3, "layers": 3,
				"e2e_s": 18, "publish_peak_mib": 100, "e2e_peak_mib": 400 + float64(i)*100}),
			rec(armD, i+1, map[string]float64{"push_all_s": 40, "e2e_s": 25}),
			rec(armE+":"+floors.Ours.Name, i+1, map[string]float64{"mibps": 310, "out_bytes": 104}),
			rec(armE+":"+floors.UpstreamChunkedName, i+1, map[string]float64{"mibps": 60, "out_bytes": 100}),
			rec(armE+":"+floors.OursOneCPU.Name, i+1, map[string]float64{"mibps": 160, "out_bytes": 104}),
		)
	}
	failed := rec(armB, 4, map[string]float64{"publish_s": 1000})
	failed.fail(errTest)
	res.Records = append(res.Records, failed)
	res.summarize()
	if s := res.Stats[armB]["publish_s"]; s.Median != 11 || s.Min != 10 || s.Max != 12 || s.N != 3 {
		t.Errorf("b publish stat %+v (the failed run must be left out)", s)
	}
	want := map[string]string{
		"publish: b / a":                                        "PASS", // 11/10 = 1.1
		"publish: b / d --add-compression push":                 "FAIL", // 11/40 = 0.275
		"end to end: b / d build + gzip push":                   "PASS", // 0.8
		"zstd:chunked encoder speed":                            "PASS",
		"zstd:chunked size vs upstream":                         "FAIL", // 1.04
		"peak memory publishing a 1 GiB layer":                  "FAIL", // f's whole process, max 600
		"publish: c / b":                                        "n/a",
		"publish, compressing while building: f / b":            "info", // 6/11
		"end to end: f / b (what the overlap buys, < 1 faster)": "info", // 0.9
		"build: f / b (what the overlap costs the build)":       "info", // 10/9
	}
	got := map[string]string{}
	for _, r := range res.Ratios {
		got[r.Name] = r.Verdict
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s, want %s", k, got[k], v)
		}
	}
	if len(res.Failures) != 1 || !strings.Contains(res.Failures[0], "round 4, b") {
		t.Errorf("failures %v", res.Failures)
	}
	md := res.markdown()
	for _, s := range []string{"| publish: b / a | 1.100 | <= 1.25 | PASS |", "11.00 [10.00–12.00]",
		"| peak memory publishing a 1 GiB layer | 600.0 | < 512 MiB | FAIL |",
		"| publish, compressing while building: f / b | 0.545 |  | info |",
		"| end to end: f / b (what the overlap buys, < 1 faster) | 0.900 |  | info |",
		"| build: f / b (what the overlap costs the build) | 1.111 |  | info |",
		"| zstd:chunked encoder: all cores / one core | 1.938 |  | info |",
		"| f  mcbuild gzip + zstd:chunked, compressing while building | 6.00 |",
		"| f  mcbuild build, gzip + zstd:chunked, compressing while building | 18.00 |",
		"| arm | wall s | CPU s | peak RSS MiB | MiB/s | compressing during build s | layers compressed early |",
		// a and b print no "N of M layers were compressed during the
		// build" line: nothing measured, so "-", not a made-up 0.
		"| a  mcbuild build | 8.00 | - | - | - | - | - |",
		"| b  mcbuild build | 9.00 | - | - | - | - | - |",
		"| f  mcbuild build, compressing layers during it | 10.00 | - | - | - | 6.00 [5.00–7.00] | 3 of 3 |",
		"b publish phase 300 MiB, f whole process 600 MiB",
		"a and b run mcbuild at its defaults"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
}

// An arm whose log has the line shows what it says, even at the defaults.
func TestLayersCompressedEarlyMeasured(t *testing.T) {
	res := &results{Workload: workloadInfo{Name: workload.Reference().Name}, Runs: 1,
		Records: []*record{rec(armB, 1, map[string]float64{"build_s": 9, "early_layers": 0, "layers": 3})}}
	res.summarize()
	if md, want := res.markdown(), "| b  mcbuild build | 9.00 | - | - | - | - | 0 of 3 |"; !strings.Contains(md, want) {
		t.Errorf("markdown lacks %q:\n%s", want, md)
	}
}

type testErr string

func (e testErr) Error() string { return string(e) }

var errTest = testErr("boom")

// The memory target is the larger of b's publish-phase peak and f's
// whole-process peak (b's whole process and f's publish phase do not count),
// and judges only the 1 GiB workload.
func TestPeakMemory(t *testing.T) {
	for _, c := range []struct {
		name    string
		wl      string
		recs    []*record
		value   float64
		verdict string
	}{
		{"f larger", workload.Big().Name, []*record{
			rec(armB, 1, map[string]float64{"e2e_peak_mib": 600, "publish_peak_mib": 100}),
			rec(armF, 1, map[string]float64{"e2e_peak_mib": 450, "publish_peak_mib": 700}),
		}, 450, "PASS"},
		{"b larger", workload.Big().Name, []*record{
			rec(armB, 1, map[string]float64{"e2e_peak_mib": 900, "publish_peak_mib": 530}),
			rec(armF, 1, map[string]float64{"e2e_peak_mib": 450}),
		}, 530, "FAIL"},
		{"b only", workload.Big().Name, []*record{rec(armB, 1, map[string]float64{"publish_peak_mib": 520})}, 520, "FAIL"},
		{"reference workload", workload.Reference().Name, []*record{rec(armF, 1, map[string]float64{"e2e_peak_mib": 200})}, 200, "n/a"},
		{"neither", workload.Big().Name, []*record{rec(armA, 1, map[string]float64{"e2e_peak_mib": 200})}, 0, "n/a"},
	} {
		res := &results{Workload: workloadInfo{Name: c.wl}, Records: c.recs}
		res.summarize()
		r := res.peakMemory()
		if r.Value != c.value || r.Verdict != c.verdict {
			t.Errorf("%s: %v %s, want %v %s (%s)", c.name, r.Value, r.Verdict, c.value, c.verdict, r.Note)
		}
	}
}

func TestEarlyLayers(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	log := "building Containerfile for linux/amd64\npushing linux/amd64 gzip to r\nlinux/amd64: 2 of 3 layers were compressed during the build (2 from the tars buildah committed, 0 read back from storage)\n"
	if err := os.WriteFile(p, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	if e, n, ok := earlyLayers(p); e != 2 || n != 3 || !ok {
		t.Errorf("earlyLayers = %d, %d, %v", e, n, ok)
	}
	if err := os.WriteFile(p, []byte("pushing linux/amd64 gzip to r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := earlyLayers(p); ok {
		t.Error("earlyLayers found a line that is not there")
	}
}
