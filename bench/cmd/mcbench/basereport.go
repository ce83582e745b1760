package main

import (
	"fmt"
	"strings"

	"github.com/mcbuild/mcbuild/bench/internal/workload"
)

// The report of the base workload (issue 12): its tables and checks.

// isBase says these are the base workload's results.
func (res *results) isBase() bool { return res.Workload.Name == workload.BaseName }

// reuseSources are the sources mcbuild's variants name for reused layers,
// in the order they are printed.
var reuseSources = []string{"pulled", "base", "previous-release", "reuse-from"}

// formatsBoth are the variants the base workload publishes, gzip first.
var formatsBoth = []string{"gzip", "zstd:chunked"}

const mibScale = 1 << 20

// baseLine is the progress line of one base-workload record.
func (r *record) baseLine() string {
	m := r.Metrics
	var b strings.Builder
	fmt.Fprintf(&b, "%s: publish %.2fs (CPU %.2fs), end to end %.2fs", r.Arm, m["publish_s"], m["publish_cpu_s"], m["e2e_s"])
	if n, ok := m["layers_compressed"]; ok {
		fmt.Fprintf(&b, ", %.0f layers compressed (%.1f MiB)", n, m["bytes_compressed"]/mibScale)
	}
	if v, ok := m["bytes_uploaded"]; ok {
		fmt.Fprintf(&b, ", %.1f MiB uploaded", v/mibScale)
	}
	fmt.Fprintf(&b, ", %.1f MiB sent, registry +%.1f MiB", m["sent_bytes"]/mibScale, m["growth_bytes"]/mibScale)
	if v, ok := m["rebuild_publish_s"]; ok {
		fmt.Fprintf(&b, "; rebuild: publish %.2fs, %.0f layers compressed, %.1f MiB uploaded, registry +%.1f MiB",
			v, m["rebuild_layers_compressed"], m["rebuild_bytes_uploaded"]/mibScale, m["rebuild_growth_bytes"]/mibScale)
	}
	return b.String()
}

// everyRun checks that metric (1 or 0 per run) of arm is 1 in every run:
// the value is its minimum; info only unless judged.
func (res *results) everyRun(name, def, arm, metric string, judged bool) ratio {
	r := ratio{Name: name, Definition: def, Verdict: "n/a"}
	if judged {
		r.Target = "1 (every run)"
	}
	s, ok := res.get(arm, metric)
	if !ok {
		r.Note = "the arm did not run or failed"
		return r
	}
	r.Value = s.Min
	r.Verdict = judge(judged, s.Min == 1)
	return r
}

// growthCheck is the largest growth / bound over arm's runs (prefix:
// "" for the app, "rebuild_" for arm r's rebuild).
func (res *results) growthCheck(name, arm, prefix string, judged bool, note string) ratio {
	r := ratio{Name: name, Definition: "registry growth (apparent size of the registry's storage after the push minus before) over the bound: the app's new layer blobs (" + note + "), its manifests, configs and index, plus 64 KiB (subjects artifact, links, tags); the largest over the runs", Verdict: "n/a"}
	if judged {
		r.Target = "<= 1"
	}
	s, ok := res.get(arm, prefix+"growth_over_bound")
	if !ok {
		r.Note = "the arm did not run or failed"
		return r
	}
	r.Value = s.Max
	r.Verdict = judge(judged, s.Max <= 1)
	return r
}

// judge is the verdict of a judged check, "info" otherwise.
func judge(judged, ok bool) string {
	if !judged {
		return "info"
	}
	return verdict(ok)
}

// rebuildCheck: the rebuild with one changed COPY compressed exactly one
// layer of the variant and uploaded exactly that layer's blob, every run.
func (res *results) rebuildCheck(c string) ratio {
	r := ratio{Name: "rebuild, one COPY changed: " + c + " compresses and uploads only that layer (r)",
		Definition: "arm r's rebuild (same inputs but the COPY's file, --source-date-epoch, a fresh store, the same tag): the " + c + " variant's layers_compressed (value: the largest over runs) must be 1 and its bytes_uploaded exactly the changed layer's blob, in every run",
		Target:     "1 layer, its bytes", Verdict: "n/a"}
	n, ok := res.get(armReuse, "rebuild_compressed_"+c)
	ex, okEx := res.get(armReuse, "rebuild_upload_excess_"+c)
	up, okUp := res.get(armReuse, "rebuild_bytes_uploaded_"+c)
	ch, okCh := res.get(armReuse, "rebuild_changed_bytes_"+c)
	if !ok || !okEx || !okUp || !okCh {
		r.Note = "arm r did not run, failed, or its summary lacks the figures"
		return r
	}
	r.Value = n.Max
	r.Verdict = verdict(n.Min == 1 && n.Max == 1 && ex.Min == 0 && ex.Max == 0)
	r.Note = fmt.Sprintf("uploaded %d B (median), the changed layer's blob %d B", int64(up.Median), int64(ch.Median))
	return r
}

// baseChecks are the targets (PASS/FAIL) and related figures (info).
func (res *results) baseChecks() []ratio {
	pubDef := func(arm string) string {
		return "median publish seconds of arm " + arm + "'s app (mcbuild: `phases.publish_seconds`; buildah: its two pushes) over the base's publish (mcbuild's publish phase of the base, both formats, once)"
	}
	out := []ratio{
		res.div("app publish / base publish: r (reuse, the base held in both formats)", pubDef(armReuse), armReuse, "publish_s", setupBase, "publish_s", "<= 0.15", le(0.15)),
		res.everyRun("gzip base layers are the mcbuild base's blobs (r)", "every gzip base layer of arm r's app has the digest of the mcbuild base's gzip variant's layer", armReuse, "base_same_gzip", true),
		res.everyRun("gzip base layers are the crane base's blobs (g)", "every gzip base layer of arm g's app has the digest of the crane base's layer (Go's compress/gzip)", armGoBase, "base_same_gzip", true),
		res.growthCheck("registry growth within the app's new layers (r)", armReuse, "", true, "the layers after the base's"),
		res.rebuildCheck("gzip"),
		res.rebuildCheck("zstd:chunked"),
		res.div("app publish / base publish: n (--reuse-layers=false)", pubDef(armNoReuse), armNoReuse, "publish_s", setupBase, "publish_s", "", nil),
		res.div("app publish / base publish: g (crane base, gzip only)", pubDef(armGoBase), armGoBase, "publish_s", setupBase, "publish_s", "", nil),
		res.div("app publish / base publish: d (buildah, two pushes)", pubDef(armD), armD, "publish_s", setupBase, "publish_s", "", nil),
		res.div("app publish: r / n (what reuse saves)", "median publish seconds of r over n", armReuse, "publish_s", armNoReuse, "publish_s", "", nil),
		res.div("app publish: r / d (mcbuild vs buildah's two pushes)", "median publish seconds of r over buildah's gzip push + zstd:chunked push", armReuse, "publish_s", armD, "publish_s", "", nil),
		res.everyRun("zstd:chunked base layers are the mcbuild base's blobs (r)", "every zstd:chunked base layer of arm r's app has the digest of the mcbuild base's zstd:chunked variant's layer", armReuse, "base_same_zstd:chunked", false),
		res.everyRun("gzip base layers are the mcbuild base's blobs (n)", "the same for arm n (--reuse-layers=false: compressed again; equal only if the compressor's output is)", armNoReuse, "base_same_gzip", false),
		res.everyRun("zstd:chunked base layers are the mcbuild base's blobs (n)", "the same for arm n's zstd:chunked variant", armNoReuse, "base_same_zstd:chunked", false),
		res.everyRun("gzip base layers are the mcbuild base's blobs (d)", "the same for buildah's gzip push", armD, "base_same_gzip", false),
		res.everyRun("zstd:chunked base layers are the mcbuild base's blobs (d)", "the same for buildah's zstd:chunked push", armD, "base_same_zstd:chunked", false),
		res.growthCheck("registry growth within the app's new layers (n)", armNoReuse, "", false, "the layers after the base's"),
		res.growthCheck("registry growth within the app's new layers (g)", armGoBase, "", false, "the layers after the base's; the crane base has no zstd:chunked variant, so g's zstd:chunked base layers are new too"),
		res.growthCheck("registry growth within the app's new layers (d)", armD, "", false, "the layers after the base's"),
		res.growthCheck("registry growth within the rebuild's new layer (r)", armReuse, "rebuild_", false, "the changed COPY's layer only"),
	}
	return out
}

// baseTables are the base workload's tables (the checks come after).
func (res *results) baseTables() []table {
	mibCell := func(arm, metric string) string { return res.cellScaled(arm, metric, "%.1f", mibScale) }
	setup := table{title: "The base, pushed once (setup)", header: []string{"", "publish s", "publish CPU s", "end to end s", "layers compressed", "MiB compressed", "MiB uploaded", "MiB sent to the registry", "registry growth MiB"}}
	for _, row := range []struct{ label, arm string }{
		{"crane append + mutate: gzip (Go's compress/gzip), Docker media types", setupCrane},
		{"mcbuild build, FROM scratch, gzip + zstd:chunked: the base's publish", setupBase},
	} {
		if _, ok := res.Stats[row.arm]; !ok {
			continue
		}
		setup.rows = append(setup.rows, []string{row.label, res.cell(row.arm, "publish_s", "%.2f"), res.cell(row.arm, "publish_cpu_s", "%.2f"), res.cell(row.arm, "e2e_s", "%.2f"),
			res.cell(row.arm, "layers_compressed", "%.0f"), mibCell(row.arm, "bytes_compressed"), mibCell(row.arm, "bytes_uploaded"), mibCell(row.arm, "sent_bytes"), mibCell(row.arm, "growth_bytes")})
	}
	setup.note = fmt.Sprintf("crane's figures are its whole processes (it reads the layer tars and compresses them while pushing); mcbuild's publish is its `phases.publish_seconds` (build phase %s s), the CPU after its \"pushing \" line. MiB compressed: uncompressed layer bytes compressed (crane: its layer tars, once, gzip; mcbuild: summed over both formats).",
		res.cell(setupBase, "build_s", "%.2f"))

	base, hasBase := res.get(setupBase, "publish_s")
	apps := table{title: "The app: publish", header: []string{"arm", "publish s", "publish CPU s", "end to end s", "publish / base publish", "layers compressed", "MiB compressed", "MiB uploaded", "MiB sent to the registry", "registry growth MiB", "growth bound MiB"}}
	for _, row := range []struct{ label, arm, prefix string }{
		{"r  mcbuild, reuse (default)", armReuse, ""},
		{"n  mcbuild --reuse-layers=false", armNoReuse, ""},
		{"g  mcbuild, reuse, FROM the crane base", armGoBase, ""},
		{"d  buildah build; push gzip; push zstd:chunked", armD, ""},
		{"r  rebuild, one COPY changed, same tag", armReuse, "rebuild_"},
	} {
		if _, ok := res.get(row.arm, row.prefix+"publish_s"); !ok {
			continue
		}
		ratio := "-"
		if s, _ := res.get(row.arm, row.prefix+"publish_s"); hasBase && base.Median > 0 {
			ratio = fmt.Sprintf("%.3f", s.Median/base.Median)
		}
		p := row.prefix
		apps.rows = append(apps.rows, []string{row.label, res.cell(row.arm, p+"publish_s", "%.2f"), res.cell(row.arm, p+"publish_cpu_s", "%.2f"), res.cell(row.arm, p+"e2e_s", "%.2f"), ratio,
			res.cell(row.arm, p+"layers_compressed", "%.0f"), mibCell(row.arm, p+"bytes_compressed"), mibCell(row.arm, p+"bytes_uploaded"),
			mibCell(row.arm, p+"sent_bytes"), mibCell(row.arm, p+"growth_bytes"), mibCell(row.arm, p+"growth_bound_bytes")})
	}
	apps.note = "publish s: mcbuild's `phases.publish_seconds` (staging, reuse or compression, uploads, index, subjects, verify); buildah's is its two pushes. " +
		"publish CPU s: mcbuild's CPU after its \"pushing \" line; buildah's, its pushes' processes. publish / base publish: of the medians. " +
		"layers compressed, MiB compressed (uncompressed bytes compressed) and MiB uploaded (layer bytes sent): mcbuild's `variants` in `--summary-json`, both formats summed; buildah reports none (`-`). " +
		"MiB sent to the registry: request bodies through the harness' counting proxy during the command (buildah: its two pushes), every client alike. " +
		"registry growth: the registry storage's apparent size after minus before; growth bound: the app's new layer blobs (after the base's; for the rebuild, the changed layer) + manifests + configs + index + 64 KiB."

	vars := table{title: "How each variant's layers were made", header: []string{"arm", "variant", "layers", "reused (by source)", "compressed", "MiB compressed", "MiB uploaded", "base layers = the base's blobs"}}
	for _, row := range []struct{ label, arm, prefix string }{
		{"r", armReuse, ""}, {"n", armNoReuse, ""}, {"g", armGoBase, ""}, {"d", armD, ""}, {"r rebuild", armReuse, "rebuild_"},
	} {
		for _, c := range formatsBoth {
			p := row.prefix
			_, hasLayers := res.get(row.arm, p+"layers_"+c)
			_, hasSame := res.get(row.arm, p+"base_same_"+c)
			if !hasLayers && !hasSame {
				continue
			}
			vars.rows = append(vars.rows, []string{row.label, c, res.cell(row.arm, p+"layers_"+c, "%.0f"), res.reusedCell(row.arm, p, c), res.cell(row.arm, p+"compressed_"+c, "%.0f"),
				mibCell(row.arm, p+"bytes_compressed_"+c), mibCell(row.arm, p+"bytes_uploaded_"+c), res.sameCell(row.arm, p+"base_same_"+c)})
		}
	}
	vars.note = "reused: mcbuild's `layers_reused` (pulled: a blob the build pulled for FROM; base: another variant in the FROM image's index; previous-release: the tag's current index), medians. " +
		"base layers = the base's blobs: whether the variant's first layers have the digests of the base's layers of the same compression (`-` where the base has no such variant: the crane base has no zstd:chunked)."
	return []table{setup, apps, vars}
}

// reusedCell is the median count of reused layers by source, e.g.
// "4 (pulled 4)"; "0" when none were.
func (res *results) reusedCell(arm, prefix, c string) string {
	total, ok := res.get(arm, prefix+"reused_"+c)
	if !ok {
		return "-"
	}
	var parts []string
	for _, src := range reuseSources {
		if s, ok := res.get(arm, prefix+"reused_"+c+"_"+src); ok && s.Median > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f", src, s.Median))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%.0f", total.Median)
	}
	return fmt.Sprintf("%.0f (%s)", total.Median, strings.Join(parts, ", "))
}

// sameCell says whether the base layers were the base's in every run.
func (res *results) sameCell(arm, metric string) string {
	s, ok := res.get(arm, metric)
	switch {
	case !ok:
		return "-"
	case s.Min == 1:
		return "yes"
	case s.Max == 0:
		return "no"
	}
	yes := 0
	for _, r := range res.Records {
		if r.Arm == arm && r.Error == "" && r.Metrics[metric] == 1 {
			yes++
		}
	}
	return fmt.Sprintf("in %d of %d runs", yes, s.N)
}
