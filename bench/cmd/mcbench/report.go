package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mcbuild/mcbuild/bench/internal/floors"
	"github.com/mcbuild/mcbuild/bench/internal/workload"
)

// record is one run of one arm (for arm e, of one encoder: arm "e:NAME").
type record struct {
	Arm     string             `json:"arm"`
	Round   int                `json:"round"`
	Loadavg string             `json:"loadavg_at_round_start"`
	Metrics map[string]float64 `json:"metrics"`
	Procs   map[string]*proc   `json:"processes"`
	Error   string             `json:"error,omitempty"`
	Notes   []string           `json:"notes,omitempty"`
}

func newRecord(arm string) *record {
	return &record{Arm: arm, Metrics: map[string]float64{}, Procs: map[string]*proc{}}
}

func (r *record) set(k string, v float64) {
	if !math.IsNaN(v) && !math.IsInf(v, 0) {
		r.Metrics[k] = v
	}
}

func (r *record) fail(err error) *record {
	r.Error = err.Error()
	return r
}

func (r *record) oneLine() string {
	m := r.Metrics
	if _, ok := m["growth_bytes"]; ok {
		return r.baseLine()
	}
	switch {
	case r.Arm == armA || r.Arm == armB || r.Arm == armF || r.Arm == armS:
		early := "none"
		if v, ok := m["early_compress_s"]; ok {
			early = fmt.Sprintf("%.2fs", v)
		}
		sbom := "none"
		if v, ok := m["sbom_s"]; ok {
			sbom = fmt.Sprintf("%.2fs alongside, waited %.2fs, attached in %.2fs", v, m["sbom_wait_s"], m["sbom_attach_s"])
		}
		return fmt.Sprintf("%s: end to end %.2fs (build %.2fs, compressing during the build %s, publish %.2fs, publish CPU %.2fs, SBOMs %s, publish peak %.0f MiB, peak %.0f MiB)", r.Arm, m["e2e_s"], m["build_s"], early, m["publish_s"], m["publish_cpu_s"], sbom, m["publish_peak_mib"], m["e2e_peak_mib"])
	case r.Arm == armC:
		return fmt.Sprintf("c: publish %.2fs (gzip %.2fs, zstd:chunked %.2fs, CPU %.2fs, peak %.0f MiB)", m["publish_s"], m["publish_gzip_s"], m["publish_zstd:chunked_s"], m["publish_cpu_s"], m["publish_peak_mib"])
	case r.Arm == armD:
		return fmt.Sprintf("d: build %.2fs, push gzip %.2fs, manifest push --all --add-compression %.2fs", m["build_s"], m["push_gzip_s"], m["push_all_s"])
	default:
		return fmt.Sprintf("%s: %.2fs, %.1f MiB/s, out/in %.3f", r.Arm, m["s"], m["mibps"], m["out_ratio"])
	}
}

type stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

type ratio struct {
	Name       string  `json:"name"`
	Definition string  `json:"definition"`
	Value      float64 `json:"value"`
	Target     string  `json:"target,omitempty"`
	Verdict    string  `json:"verdict"` // PASS, FAIL, n/a, info
	Note       string  `json:"note,omitempty"`
}

type workloadInfo struct {
	Name       string        `json:"name"`
	Spec       workload.Spec `json:"spec"`
	Tars       []string      `json:"tars"`
	TarBytes   []int64       `json:"tar_bytes"`
	TarSHA256  []string      `json:"tar_sha256"`
	TotalBytes int64         `json:"total_tar_bytes"`
}

type loadSample struct {
	Round   int     `json:"before_round"`
	At      float64 `json:"at_s"`
	Loadavg string  `json:"loadavg"`
}

type results struct {
	Started       string                     `json:"started"`
	Note          string                     `json:"note,omitempty"` // BENCH_NOTE: how this run was made
	Seconds       float64                    `json:"seconds"`
	Machine       map[string]string          `json:"machine"`
	Versions      map[string]string          `json:"versions"`
	Workload      workloadInfo               `json:"workload"`
	Runs          int                        `json:"runs_per_arm"`
	Arms          []string                   `json:"arms"`
	Titles        map[string]string          `json:"arm_titles"`
	StorageDriver string                     `json:"storage_driver"`
	Load          []loadSample               `json:"load"`
	Stats         map[string]map[string]stat `json:"stats"` // arm → metric → median/min/max
	Ratios        []ratio                    `json:"ratios"`
	Failures      []string                   `json:"failures,omitempty"`
	Records       []*record                  `json:"records"`
}

func machineInfo() map[string]string {
	m := map[string]string{"cpus": fmt.Sprint(runtime.NumCPU())}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m["memory"] = strings.Join(strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:], " ")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return m
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (res *results) summarize() {
	vals := map[string]map[string][]float64{}
	for _, r := range res.Records {
		if r.Error != "" {
			res.Failures = append(res.Failures, fmt.Sprintf("round %d, %s: %s", r.Round, r.Arm, r.Error))
			continue
		}
		if vals[r.Arm] == nil {
			vals[r.Arm] = map[string][]float64{}
		}
		for k, v := range r.Metrics {
			vals[r.Arm][k] = append(vals[r.Arm][k], v)
		}
	}
	res.Stats = map[string]map[string]stat{}
	for arm, ms := range vals {
		res.Stats[arm] = map[string]stat{}
		for k, xs := range ms {
			s := stat{Median: median(xs), Min: xs[0], Max: xs[0], N: len(xs)}
			for _, x := range xs {
				s.Min, s.Max = min(s.Min, x), max(s.Max, x)
			}
			res.Stats[arm][k] = s
		}
	}
	res.Ratios = res.ratios()
}

func (res *results) get(arm, metric string) (stat, bool) {
	s, ok := res.Stats[arm][metric]
	return s, ok
}

// div is the ratio of the medians of armX's mX and armY's mY, judged by
// ok (nil: info only).
func (res *results) div(name, def, armX, mX, armY, mY, target string, ok func(float64) bool) ratio {
	x, okx := res.get(armX, mX)
	y, oky := res.get(armY, mY)
	r := ratio{Name: name, Definition: def, Target: target, Verdict: "n/a"}
	if !okx || !oky || y.Median == 0 {
		r.Note = "an arm did not run or failed"
		return r
	}
	r.Value = x.Median / y.Median
	switch {
	case ok == nil:
		r.Verdict = "info"
	case ok(r.Value):
		r.Verdict = "PASS"
	default:
		r.Verdict = "FAIL"
	}
	return r
}

func le(limit float64) func(float64) bool { return func(v float64) bool { return v <= limit } }

func (res *results) ratios() []ratio {
	if res.isBase() {
		return res.baseChecks()
	}
	div := res.div
	ours, upstream := armE+":"+floors.Ours.Name, armE+":"+floors.UpstreamChunkedName
	out := []ratio{
		div("publish: b / a", "median publish seconds, mcbuild gzip + zstd:chunked over mcbuild gzip only (both at mcbuild's defaults, compressing every layer after the build: all of their compression is in the publish phase)", armB, "publish_s", armA, "publish_s", "<= 1.25", le(1.25)),
		div("publish: b / d --add-compression push", "median publish seconds of b over buildah's `manifest push --all --add-compression zstd:chunked`", armB, "publish_s", armD, "push_all_s", "<= 0.25", le(0.25)),
		div("end to end: b / d build + gzip push", "median wall of the whole `mcbuild build` (both formats, index, subjects) over buildah's build + `push` (gzip)", armB, "e2e_s", armD, "e2e_s", "<= 1.00", le(1.0)),
		div("end to end: b / s (what the SBOMs cost)", "median wall of the whole `mcbuild build` at its defaults (SBOMs generated alongside the publish and attached) over the same with --sbom=false (issue 16: at most 10% more)", armB, "e2e_s", armS, "e2e_s", "<= 1.10", le(1.10)),
	}
	r := ratio{Name: "zstd:chunked encoder speed", Definition: fmt.Sprintf("median MiB/s of %s (%s) over the layer tars", floors.Ours.Name, floors.Ours.Doc), Target: ">= 300 MiB/s", Verdict: "n/a"}
	if s, ok := res.get(ours, "mibps"); ok {
		r.Value, r.Verdict = s.Median, verdict(s.Median >= 300)
		if res.Workload.Name != workload.Reference().Name {
			r.Note = "measured over this workload's layers; the target is set on the reference layers"
		}
	}
	out = append(out, r)
	sz := div("zstd:chunked size vs upstream", fmt.Sprintf("compressed bytes of %s over %s (same level)", floors.Ours.Name, floors.UpstreamChunkedName), ours, "out_bytes", upstream, "out_bytes", "<= 1.03", le(1.03))
	sz.Note = "pkg/zstdchunked is meant to write upstream's bytes exactly (its tests compare them), so this is 1.000 unless that breaks"
	out = append(out, sz)
	out = append(out, div("zstd:chunked encoder: all cores / one core", fmt.Sprintf("median MiB/s of %s over %s (GOMAXPROCS=1): how the encoder scales with cores", floors.Ours.Name, floors.OursOneCPU.Name), ours, "mibps", armE+":"+floors.OursOneCPU.Name, "mibps", "", nil))
	out = append(out, res.peakMemory())
	out = append(out,
		div("publish: c / b", "naive two sequential copy.Image (defaults) over mcbuild both formats", armC, "publish_s", armB, "publish_s", "", nil),
		div("publish gzip: a / d push", "mcbuild gzip-only publish over buildah push (gzip)", armA, "publish_s", armD, "push_gzip_s", "", nil),
		div("end to end: b / a", "mcbuild both formats over gzip only, whole command", armB, "e2e_s", armA, "e2e_s", "", nil),
		div("build: b / d", "mcbuild's build phase over `buildah build --layers`", armB, "build_s", armD, "build_s", "", nil),
		div("publish, compressing while building: f / b", "median publish seconds of mcbuild both formats with --compress-while-building over the same at its defaults (compressing after the build): short partly because f's compression moved into its build phase, so read it with the two rows below", armF, "publish_s", armB, "publish_s", "", nil),
		div("end to end: f / b (what the overlap buys, < 1 faster)", "median wall of the whole mcbuild command, both formats, compressing while building over compressing after the build: below 1 the overlap makes the command faster", armF, "e2e_s", armB, "e2e_s", "", nil),
		div("build: f / b (what the overlap costs the build)", "median build phase of mcbuild compressing while building over not: what the overlapped compression costs the build", armF, "build_s", armB, "build_s", "", nil),
	)
	return out
}

// peakMemory is the memory target: the larger of b's publish-phase peak (b,
// at mcbuild's defaults, compresses every layer after the build, so all of
// its compression is in that phase) and f's whole-process peak (build and
// publish: with --compress-while-building much of the compression, and its
// buffers, comes before the publish phase's mark, so f's publish-phase peak
// alone would understate it).
func (res *results) peakMemory() ratio {
	r := ratio{Name: "peak memory publishing a 1 GiB layer",
		Definition: "whichever is larger of the max over runs of b's publish-phase peak RSS (b compresses every layer after the build, in its publish phase) and the max over runs of f's whole-process peak RSS (build + publish, since f compresses layers while building), MiB (1 GiB-layer workload only); the note gives both",
		Target:     "< 512 MiB", Verdict: "n/a"}
	var parts []string
	found := false
	for _, c := range []struct{ arm, metric, what string }{
		{armB, "publish_peak_mib", "b publish phase"},
		{armF, "e2e_peak_mib", "f whole process"},
	} {
		if s, ok := res.get(c.arm, c.metric); ok {
			found = true
			r.Value = max(r.Value, s.Max)
			parts = append(parts, fmt.Sprintf("%s %.0f MiB", c.what, s.Max))
		}
	}
	if !found {
		r.Note = "neither b nor f ran"
		return r
	}
	r.Note = strings.Join(parts, ", ")
	if res.Workload.Name == workload.Big().Name {
		r.Verdict = verdict(r.Value < 512)
	} else {
		r.Note += "; this workload has no 1 GiB layer (BENCH_BIG=1): value shown for the reference workload"
	}
	return r
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// row is one line of a table: which arm's metrics, under which prefix.
type row struct {
	label, arm, prefix string
}

func (res *results) cell(arm, metric, format string) string {
	return res.cellScaled(arm, metric, format, 1)
}

// cellScaled is cell with every value divided by scale (1<<20: bytes as MiB).
func (res *results) cellScaled(arm, metric, format string, scale float64) string {
	s, ok := res.get(arm, metric)
	if !ok {
		return "-"
	}
	if s.N == 1 || s.Min == s.Max {
		return fmt.Sprintf(format, s.Median/scale)
	}
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", s.Median/scale, s.Min/scale, s.Max/scale)
}

type table struct {
	title  string
	header []string
	rows   [][]string
	note   string // printed under the table
}

func (res *results) tables() []table {
	if res.isBase() {
		return append(res.baseTables(), res.ratioTable("Checks against the issue #12 targets"))
	}
	phase := func(title string, rows []row) table {
		t := table{title: title, header: []string{"arm", "wall s", "CPU s", "peak RSS MiB", "MiB/s"}}
		for _, r := range rows {
			if _, ok := res.Stats[r.arm]; !ok {
				continue
			}
			t.rows = append(t.rows, []string{r.label,
				res.cell(r.arm, r.prefix+"_s", "%.2f"), res.cell(r.arm, r.prefix+"_cpu_s", "%.2f"),
				res.cell(r.arm, r.prefix+"_peak_mib", "%.0f"), res.cell(r.arm, r.prefix+"_mibps", "%.1f")})
		}
		return t
	}
	ts := []table{
		phase("Publish phase", []row{
			{"a  mcbuild gzip", armA, "publish"},
			{"b  mcbuild gzip + zstd:chunked", armB, "publish"},
			{"s  mcbuild gzip + zstd:chunked, --sbom=false", armS, "publish"},
			{"f  mcbuild gzip + zstd:chunked, compressing while building", armF, "publish"},
			{"c  naive: copy.Image gzip; copy.Image zstd:chunked", armC, "publish"},
			{"d  buildah push (gzip)", armD, "push_gzip"},
			{"d  buildah manifest push --all --add-compression zstd:chunked", armD, "push_all"},
		}),
		res.buildTable(phase("Build phase", []row{
			{"a  mcbuild build", armA, "build"},
			{"b  mcbuild build", armB, "build"},
			{"s  mcbuild build, --sbom=false", armS, "build"},
			{"f  mcbuild build, compressing layers during it", armF, "build"},
			{"d  buildah build --layers", armD, "build"},
		})),
		phase("End to end", []row{
			{"a  mcbuild build, gzip", armA, "e2e"},
			{"b  mcbuild build, gzip + zstd:chunked", armB, "e2e"},
			{"s  mcbuild build, gzip + zstd:chunked, --sbom=false", armS, "e2e"},
			{"f  mcbuild build, gzip + zstd:chunked, compressing while building", armF, "e2e"},
			{"d  buildah build + push (gzip)", armD, "e2e"},
		}),
	}
	if len(ts[0].rows) > 0 {
		ts[0].note = earlyNote
	}
	shares := table{title: "Publish wall per format (b's and f's formats push concurrently; c's one after the other)", header: []string{"arm", "gzip s", "zstd:chunked s"}}
	for _, a := range []string{armA, armB, armF, armC} {
		if _, ok := res.Stats[a]; ok {
			shares.rows = append(shares.rows, []string{a, res.cell(a, "publish_gzip_s", "%.2f"), res.cell(a, "publish_zstd:chunked_s", "%.2f")})
		}
	}
	ts = append(ts, shares)
	fl := table{title: "Floors (e): each encoder alone over the layer tars", header: []string{"encoder", "wall s", "CPU s", "peak RSS MiB", "MiB/s", "out MiB", "out/in"}}
	for _, n := range floorOrder() {
		a := armE + ":" + n
		if _, ok := res.Stats[a]; !ok {
			continue
		}
		out := "-"
		if s, ok := res.get(a, "out_bytes"); ok {
			out = fmt.Sprintf("%.1f", s.Median/(1<<20))
		}
		fl.rows = append(fl.rows, []string{n, res.cell(a, "s", "%.2f"), res.cell(a, "cpu_s", "%.2f"), res.cell(a, "peak_mib", "%.0f"), res.cell(a, "mibps", "%.1f"), out, res.cell(a, "out_ratio", "%.3f")})
	}
	if len(fl.rows) > 0 {
		ts = append(ts, fl)
	}
	return append(ts, res.ratioTable("Ratios (of medians) against the issue #5 targets"))
}

// ratioTable lists the ratios and checks with their verdicts.
func (res *results) ratioTable(title string) table {
	rt := table{title: title, header: []string{"ratio", "value", "target", "verdict"}}
	for _, r := range res.Ratios {
		v := "-"
		if r.Verdict != "n/a" || r.Value != 0 {
			v = fmt.Sprintf("%.3f", r.Value)
			if strings.Contains(r.Target, "MiB") || strings.Contains(r.Name, "memory") {
				v = fmt.Sprintf("%.1f", r.Value)
			}
		}
		rt.rows = append(rt.rows, []string{r.Name, v, r.Target, r.Verdict})
	}
	return rt
}

// earlyNote goes under the publish table: f's publish phase is short
// partly because its compression moved into its build.
const earlyNote = "a and b run mcbuild at its defaults: the stream publisher compresses every layer after the build, so all of their compression is in their publish phase. " +
	"f is b with `--compress-while-building`: each layer is compressed as soon as the build commits it, overlapping the rest of its build phase (see \"compressing during build s\" in the Build phase table), " +
	"and the CPU and memory of that compression up to the publish mark count in the build's. So f's publish phase is short partly because compression moved into its build: compare f and b end to end."

// buildTable adds to the build phase table the wall time mcbuild spent
// compressing layers while the build ran, and how many of the image's
// layers the publish phase found compressed already.
func (res *results) buildTable(t table) table {
	t.header = append(t.header, "compressing during build s", "layers compressed early")
	for i, r := range t.rows {
		arm := strings.Fields(r[0])[0]
		early, layers := "-", "-"
		if arm == armA || arm == armB || arm == armF {
			early = res.cell(arm, "early_compress_s", "%.2f")
			// Only what the log says: a and b, at mcbuild's defaults,
			// print no "N of M layers were compressed during the build"
			// line, so their cell stays "-".
			if n, ok := res.get(arm, "layers"); ok {
				layers = res.cell(arm, "early_layers", "%.0f") + fmt.Sprintf(" of %.0f", n.Median)
			}
		}
		t.rows[i] = append(r, early, layers)
	}
	t.note = "compressing during build s: mcbuild's `phases.compress_during_build_seconds`, the wall time of the compression started while the build ran " +
		"(only f, with `--compress-while-building`; a and b, at mcbuild's defaults, compress after the build and report none), " +
		"overlapping the build phase (a layer still being compressed when the build ends is finished in the publish phase and counted here too). " +
		"Its CPU up to the publish mark is in the build's CPU s. layers compressed early: of the image's layers, those the publish phase found compressed or being compressed, " +
		"from mcbuild's `N of M layers were compressed during the build` line; - where the arm's log has no such line (a and b, at mcbuild's defaults, do not compress early)."
	return t
}

func (res *results) header() []string {
	w := res.Workload
	var sizes []string
	for i, t := range w.Tars {
		sizes = append(sizes, fmt.Sprintf("%s %.1f MiB", filepath.Base(t), mib(w.TarBytes[i])))
	}
	var loads []string
	for _, l := range res.Load {
		loads = append(loads, l.Loadavg)
	}
	return []string{
		fmt.Sprintf("workload %q: %.1f MiB of layer tar (%s)", w.Name, mib(w.TotalBytes), strings.Join(sizes, ", ")),
		fmt.Sprintf("%d run(s) per arm, alternating %s; storage driver %s; %s CPUs; harness took %.0f s", res.Runs, strings.Join(res.Arms, ","), res.StorageDriver, res.Machine["cpus"], res.Seconds),
		fmt.Sprintf("load average (1/5/15 min) before each round and at the end: %s", strings.Join(loads, " | ")),
		"cells: median [min–max] over runs",
	}
}

func (res *results) printTable(w io.Writer) {
	fmt.Fprintln(w)
	for _, h := range res.header() {
		fmt.Fprintln(w, h)
	}
	for _, t := range res.tables() {
		fmt.Fprintf(w, "\n== %s\n", t.title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(t.header, "\t"))
		for _, r := range t.rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		_ = tw.Flush()
		if t.note != "" {
			fmt.Fprintln(w, t.note)
		}
	}
	for _, f := range res.Failures {
		fmt.Fprintln(w, "FAILED:", f)
	}
}

func (res *results) markdown() string {
	var b strings.Builder
	issue := "issue #5"
	if res.isBase() {
		issue = "issue #12, reusing layer blobs"
	}
	fmt.Fprintf(&b, "# mcbuild benchmark (%s): workload %q, %s\n\n", issue, res.Workload.Name, res.Started)
	b.WriteString("Written by bench/cmd/mcbench (`make bench`); how to read it: bench/README.md. Raw numbers per run: the JSON file next to this one.\n\n")
	if res.Note != "" {
		fmt.Fprintf(&b, "**Note.** %s\n\n", res.Note)
	}
	b.WriteString("**Noise.** The machine is shared (other engineers run builds and tests on it); the load average below says how busy it was. Compare only ratios from one run, where the arms alternate.\n\n")
	for _, h := range res.header() {
		fmt.Fprintf(&b, "- %s\n", h)
	}
	var vs []string
	for k, v := range res.Versions {
		vs = append(vs, fmt.Sprintf("%s: `%s`", k, v))
	}
	sort.Strings(vs)
	fmt.Fprintf(&b, "- versions: %s\n", strings.Join(vs, "; "))
	fmt.Fprintf(&b, "- machine: %s, %s CPUs, %s, kernel %s\n", res.Machine["cpu"], res.Machine["cpus"], res.Machine["memory"], res.Machine["kernel"])
	b.WriteString("\nArms:\n\n")
	for _, a := range res.Arms {
		fmt.Fprintf(&b, "- **%s**: %s\n", a, res.Titles[a])
	}
	for _, t := range res.tables() {
		fmt.Fprintf(&b, "\n## %s\n\n| %s |\n|%s\n", t.title, strings.Join(t.header, " | "), strings.Repeat("---|", len(t.header)))
		for _, r := range t.rows {
			fmt.Fprintf(&b, "| %s |\n", strings.Join(r, " | "))
		}
		if t.note != "" {
			fmt.Fprintf(&b, "\n%s\n", t.note)
		}
	}
	b.WriteString("\nRatio definitions:\n\n")
	for _, r := range res.Ratios {
		fmt.Fprintf(&b, "- %s: %s", r.Name, r.Definition)
		if r.Note != "" {
			fmt.Fprintf(&b, " (%s)", r.Note)
		}
		b.WriteString("\n")
	}
	if len(res.Failures) > 0 {
		b.WriteString("\nFailed runs (left out of the statistics):\n\n")
		for _, f := range res.Failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	return b.String()
}

// write stores NAME.json and NAME.md under outDir/<date>/, NAME being the
// workload (with -2, -3, ... when a run of the day is already there).
func (res *results) write(outDir string) error {
	dir := filepath.Join(outDir, time.Now().Format("2006-01-02"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := filepath.Join(dir, res.Workload.Name)
	for i := 2; ; i++ {
		if _, err := os.Stat(base + ".json"); os.IsNotExist(err) {
			break
		}
		base = filepath.Join(dir, fmt.Sprintf("%s-%d", res.Workload.Name, i))
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".json", append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(base+".md", []byte(res.markdown()), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nresults: %s.json, %s.md\n", base, base)
	return nil
}
