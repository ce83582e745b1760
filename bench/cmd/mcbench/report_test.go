package main

import (
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
			rec(armA, i+1, map[string]float64{"publish_s": 10}),
			rec(armB, i+1, map[string]float64{"publish_s": pub, "e2e_s": 20, "publish_peak_mib": 400 + float64(i)*100}),
			rec(armD, i+1, map[string]float64{"push_all_s": 40, "e2e_s": 25}),
			rec(armE+":"+floors.Ours.Name, i+1, map[string]float64{"mibps": 310, "out_bytes": 104}),
			rec(armE+":"+floors.UpstreamChunkedName, i+1, map[string]float64{"mibps": 60, "out_bytes": 100}),
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
		"publish: b / a":                        "PASS", // 11/10 = 1.1
		"publish: b / d --add-compression push": "FAIL", // 11/40 = 0.275
		"end to end: b / d build + gzip push":   "PASS", // 0.8
		"zstd:chunked encoder speed":            "PASS",
		"zstd:chunked size vs upstream":         "FAIL", // 1.04
		"peak memory publishing a 1 GiB layer":  "FAIL", // max 600
		"publish: c / b":                        "n/a",
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
	for _, s := range []string{"| publish: b / a | 1.100 | <= 1.25 | PASS |", "11.00 [10.00–12.00]"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
}

type testErr string

func (e testErr) Error() string { return string(e) }

var errTest = testErr("boom")
