package main

// The base workload (issue 12: reuse layer blobs that exist already): a
// base of real files is pushed once by crane and published once by
// mcbuild in both formats; each round every arm builds a small app on it
// and publishes it. See bench/README.md.

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mcbuild/mcbuild/bench/internal/workload"
	"github.com/mcbuild/mcbuild/internal/build"
)

// The arms of the base workload (arm d, the buildah CLI, too).
const (
	armReuse   = "r" // mcbuild at its defaults (reuse on), FROM the mcbuild base; then the one-COPY rebuild
	armNoReuse = "n" // mcbuild --reuse-layers=false, FROM the mcbuild base
	armGoBase  = "g" // mcbuild at its defaults, FROM the crane base
)

const defaultBaseArms = "r,n,g,d"

var baseArmTitles = map[string]string{
	armReuse:   "mcbuild at its defaults (layer reuse on): the app FROM the mcbuild base, gzip + zstd:chunked; then the same app with its COPY changed, built again in a fresh store and published to the same tag (the rebuild)",
	armNoReuse: "mcbuild --reuse-layers=false: the same app FROM the mcbuild base, every layer compressed in both formats",
	armGoBase:  "mcbuild at its defaults: the app FROM the crane base (gzip only, Go's compress/gzip, Docker media types), so its zstd:chunked variant compresses the base layers",
	armD:       "buildah 1.45 CLI: build FROM the mcbuild base; push --compression-format gzip; push --compression-format zstd:chunked (two tags, no index)",
}

// The setup records of the base workload (round 0), made once.
const (
	setupCrane = "crane" // crane append + mutate: the foreign base, gzip only
	setupBase  = "base"  // mcbuild: the base's publish, both formats
)

const (
	baseMC      = "bench/base-mc"
	baseCrane   = "bench/base-crane"
	tagV1       = "v1"
	bothFormats = "gzip,zstd:chunked"
	// sourceDateEpoch is every mcbuild build's --source-date-epoch, so
	// that a rebuild keeps the diff IDs of the layers it did not change.
	sourceDateEpoch = "1700000000"
	// growthSlack is how far registry growth may exceed the new layer
	// blobs, manifests, configs and index: the subjects artifact, the
	// repository's link files and tags.
	growthSlack = 64 << 10
)

type baseState struct {
	proxy *countingProxy
	// layers are each base's layer digests by compression (baseMC: gzip
	// and zstd:chunked; baseCrane: gzip).
	layers map[string]map[string][]string
}

// pushed is one manifest as the registry holds it.
type pushed struct {
	size     int64
	manifest ocispec.Manifest
}

// setupBase puts the counting proxy in front of the registry, then pushes
// the base with crane and publishes it with mcbuild (the base's publish).
func (b *bench) setupBase() error {
	p, err := startProxy(b.reg)
	if err != nil {
		return err
	}
	b.base.proxy, b.reg = p, p.addr
	b.base.layers = map[string]map[string][]string{}
	b.logf("counting proxy on %s in front of the registry; every client uses it", p.addr)
	for _, s := range []struct {
		arm string
		run func(*record) error
	}{{setupCrane, b.pushCraneBase}, {setupBase, b.publishMcbuildBase}} {
		r := newRecord(s.arm)
		if err := s.run(r); err != nil {
			return fmt.Errorf("setup, %s: %w", s.arm, err)
		}
		b.logf("  %s", r.oneLine())
		b.res.Records = append(b.res.Records, r)
	}
	return nil
}

// pushCraneBase pushes the workload's layer tars as one image with crane
// (Go's compress/gzip, Docker media types), then sets its platform.
func (b *bench) pushCraneBase(r *record) error {
	ref := b.reg + "/" + baseCrane + ":" + tagV1
	args := []string{b.cfg.crane, "append", "--insecure", "-t", ref}
	for _, t := range b.wl.TarPaths() {
		args = append(args, "-f", t)
	}
	w, err := b.startWindow()
	if err != nil {
		return err
	}
	for _, s := range []struct {
		name string
		args []string
	}{
		{"append", args},
		{"mutate", []string{b.cfg.crane, "mutate", "--insecure", "--set-platform", "linux/" + runtime.GOARCH, "-t", ref, ref}},
	} {
		p, err := measure(runSpec{args: s.args, log: b.logPath(setupCrane, 0, s.name)})
		r.Procs[s.name] = p
		if err != nil {
			return err
		}
		r.Metrics["publish_s"] += p.Wall
		r.Metrics["publish_cpu_s"] += p.CPU()
	}
	if err := w.end(r, ""); err != nil {
		return err
	}
	r.set("e2e_s", r.Metrics["publish_s"])
	r.set("layers_compressed", float64(len(b.wl.Tars)))
	r.set("bytes_compressed", float64(b.wl.TotalBytes))
	m, err := b.fetchPushed(baseCrane, tagV1)
	if err != nil {
		return err
	}
	if len(m.manifest.Layers) != len(b.wl.Tars) {
		return fmt.Errorf("crane pushed %d layers, want %d", len(m.manifest.Layers), len(b.wl.Tars))
	}
	b.base.layers[baseCrane] = map[string][]string{"gzip": digests(m.manifest.Layers)}
	return nil
}

// publishMcbuildBase is the base's publish: FROM scratch and one COPY per
// layer tar's directory, both formats, timed like an app.
func (b *bench) publishMcbuildBase(r *record) error {
	dir, err := b.runDir("base-mc")
	if err != nil {
		return err
	}
	defer removeAll(dir)
	mans, err := b.mcbuildApp(r, "", dir, b.wl.Containerfile(), baseMC, "", 0, mib(b.wl.TotalBytes), "--source-date-epoch", sourceDateEpoch)
	if err != nil {
		return err
	}
	b.base.layers[baseMC] = map[string][]string{}
	for c, m := range mans {
		b.base.layers[baseMC][c] = digests(m.manifest.Layers)
	}
	return nil
}

// appSeed picks the app's payload: another arm, round or version,
// another COPY layer (so that no app push finds its layer in the
// registry already).
func appSeed(arm string, round, version int) uint64 {
	return uint64(round)<<16 | uint64(arm[0])<<8 | uint64(version)
}

// runApp is one run of a base-workload arm: the app built FROM its base
// in a fresh store and published; arm r then rebuilds it with its COPY
// changed and publishes that to the same tag.
func (b *bench) runApp(arm string, round int) *record {
	r := newRecord(arm)
	r.Round = round
	dir, err := b.runDir(fmt.Sprintf("%s-%d", arm, round))
	if err != nil {
		return r.fail(err)
	}
	defer removeAll(dir)
	from := baseMC
	if arm == armGoBase {
		from = baseCrane
	}
	fromRef := b.reg + "/" + from + ":" + tagV1
	cf, err := workload.App(filepath.Join(dir, "app"), fromRef, appSeed(arm, round, 0))
	if err != nil {
		return r.fail(err)
	}
	repo := fmt.Sprintf("bench/app-%s-r%d", arm, round)
	nBase := len(b.wl.Tars)
	if arm == armD {
		if err := b.buildahApp(r, dir, cf, repo, round); err != nil {
			return r.fail(err)
		}
		return r
	}
	extra := []string{"--source-date-epoch", sourceDateEpoch}
	if arm == armNoReuse {
		extra = append(extra, "--reuse-layers=false")
	}
	mans, err := b.mcbuildApp(r, "", mkdir(filepath.Join(dir, "build")), cf, repo, from, nBase, 0, extra...)
	if err != nil {
		return r.fail(err)
	}
	if arm != armReuse {
		return r
	}
	removeAll(filepath.Join(dir, "build")) // the rebuild runs in a fresh store, as a new pod would
	cf, err = workload.App(filepath.Join(dir, "app-changed"), fromRef, appSeed(arm, round, 1))
	if err != nil {
		return r.fail(err)
	}
	layers := len(mans["gzip"].manifest.Layers)
	mans, err = b.mcbuildApp(r, "rebuild_", mkdir(filepath.Join(dir, "rebuild")), cf, repo, from, layers-1, 0, extra...)
	if err != nil {
		return r.fail(fmt.Errorf("rebuild: %w", err))
	}
	for c, m := range mans {
		if n := len(m.manifest.Layers); n != layers {
			return r.fail(fmt.Errorf("rebuild: %s variant has %d layers, the first build %d", c, n, layers))
		}
		changed := m.manifest.Layers[layers-1].Size
		r.set("rebuild_changed_bytes_"+c, float64(changed))
		r.set("rebuild_upload_excess_"+c, r.Metrics["rebuild_bytes_uploaded_"+c]-float64(changed))
	}
	return r
}

// mcbuildApp runs one `mcbuild build` of containerfile, both formats, to
// REGISTRY/repo:v1 with its store under dir, and records under prefix its
// phases, how its variants were made, the bytes it sent and the
// registry's growth, and what judgeApp says. It returns the pushed
// manifests by compression.
func (b *bench) mcbuildApp(r *record, prefix, dir, containerfile, repo, from string, firstNew int, inMiB float64, extra ...string) (map[string]pushed, error) {
	w, err := b.startWindow()
	if err != nil {
		return nil, err
	}
	args := b.mcbuildArgsFor(dir, b.reg+"/"+repo+":"+tagV1, containerfile, bothFormats, extra...)
	s, err := measureMcbuild(r, prefix, args, b.logPath(r.Arm, r.Round, prefix+"build"), bothFormats, inMiB)
	if err != nil {
		return nil, err
	}
	if err := w.end(r, prefix); err != nil {
		return nil, err
	}
	recordVariants(r, prefix, s)
	mans := map[string]pushed{}
	for _, m := range s.Manifests {
		if mans[m.Compression], err = b.fetchPushed(repo, m.Digest); err != nil {
			return nil, err
		}
	}
	b.judgeApp(r, prefix, from, firstNew, s.IndexSize, mans)
	return mans, nil
}

// buildahApp is arm d on the base workload: buildah builds the app
// (pulling the base), then pushes it twice, gzip and zstd:chunked, to two
// tags. Every step shares the run's blob-info cache, as one pod's would.
func (b *bench) buildahApp(r *record, dir, containerfile, repo string, round int) error {
	_, isolated, env := b.buildahCmd(dir)
	img := fmt.Sprintf("localhost/bench-app-d:r%d", round)
	tags := map[string]string{"gzip": "gzip", "zstd:chunked": "zstd"}
	args := []string{"build", "--layers", "--no-cache", "--format", "oci", "--isolation", "chroot", "--tls-verify=false"}
	ulimits, err := build.HardUlimits() // as mcbuild's RUN gets them
	if err != nil {
		return err
	}
	for _, u := range ulimits {
		args = append(args, "--ulimit", u)
	}
	p, err := measure(runSpec{args: isolated(append(args, "-f", containerfile, "-t", img, filepath.Dir(containerfile))...), env: env, log: b.logPath(armD, round, "build")})
	r.Procs["build"] = p
	if err != nil {
		return err
	}
	w, err := b.startWindow()
	if err != nil {
		return err
	}
	r.set("build_s", p.Wall)
	r.set("build_cpu_s", p.CPU())
	r.Metrics["e2e_s"], r.Metrics["e2e_cpu_s"] = p.Wall, p.CPU()
	for _, c := range []string{"gzip", "zstd:chunked"} {
		name := "push_" + tags[c]
		p, err := measure(runSpec{args: isolated("push", "--tls-verify=false", "--format", "oci", "--compression-format", c,
			img, "docker://"+b.reg+"/"+repo+":"+tags[c]), env: env, log: b.logPath(armD, round, name)})
		r.Procs[name] = p
		if err != nil {
			return err
		}
		r.set(name+"_s", p.Wall)
		r.set(name+"_cpu_s", p.CPU())
		for k, v := range map[string]float64{"publish_s": p.Wall, "publish_cpu_s": p.CPU(), "e2e_s": p.Wall, "e2e_cpu_s": p.CPU()} {
			r.Metrics[k] += v
		}
	}
	if err := w.end(r, ""); err != nil {
		return err
	}
	mans := map[string]pushed{}
	for c, tag := range tags {
		if mans[c], err = b.fetchPushed(repo, tag); err != nil {
			return err
		}
	}
	b.judgeApp(r, "", baseMC, len(b.wl.Tars), 0, mans)
	return nil
}

// judgeApp records under prefix, for the app's manifests mans (by
// compression) built on base from: whether each variant's first layers
// are the base's own blobs of the same compression (base_same_<c>, 1 or
// 0; where the base has that compression), and the growth bound: the
// manifests, their configs, the index (indexSize) and the distinct layer
// blobs from position firstNew on (the app's new layers), plus
// growthSlack; growth_over_bound is the growth measured over it.
func (b *bench) judgeApp(r *record, prefix, from string, firstNew int, indexSize int64, mans map[string]pushed) {
	bound := indexSize + growthSlack
	seen := map[string]bool{}
	for c, m := range mans {
		if base, ok := b.base.layers[from][c]; ok {
			same := len(m.manifest.Layers) >= len(base)
			for i := 0; same && i < len(base); i++ {
				same = m.manifest.Layers[i].Digest.String() == base[i]
			}
			r.set(prefix+"base_same_"+c, boolMetric(same))
		}
		bound += m.size + m.manifest.Config.Size
		for _, l := range m.manifest.Layers[min(firstNew, len(m.manifest.Layers)):] {
			if !seen[l.Digest.String()] {
				seen[l.Digest.String()] = true
				bound += l.Size
			}
		}
	}
	r.set(prefix+"growth_bound_bytes", float64(bound))
	if g, ok := r.Metrics[prefix+"growth_bytes"]; ok {
		r.set(prefix+"growth_over_bound", g/float64(bound))
	}
}

func boolMetric(ok bool) float64 {
	if ok {
		return 1
	}
	return 0
}

// recordVariants records under prefix how each variant's layers were
// made (mcbuild's --summary-json variants), per compression c: layers_<c>,
// compressed_<c>, reused_<c> and reused_<c>_<source>, bytes_compressed_<c>,
// bytes_uploaded_<c> (when known); and the totals layers_compressed,
// bytes_compressed, bytes_uploaded.
func recordVariants(r *record, prefix string, s *mcbuildSummary) {
	set := func(k string, v float64) { r.set(prefix+k, v) }
	var compressed, bytesCompressed, bytesUploaded float64
	for _, v := range s.Variants {
		c := v.Compression
		set("layers_"+c, float64(v.Layers))
		set("compressed_"+c, float64(v.Compressed))
		reused := 0
		for src, n := range v.Reused {
			set("reused_"+c+"_"+src, float64(n))
			reused += n
		}
		set("reused_"+c, float64(reused))
		compressed += float64(v.Compressed)
		if v.BytesCompressed >= 0 {
			set("bytes_compressed_"+c, float64(v.BytesCompressed))
			bytesCompressed += float64(v.BytesCompressed)
		}
		if v.BytesUploaded >= 0 {
			set("bytes_uploaded_"+c, float64(v.BytesUploaded))
			bytesUploaded += float64(v.BytesUploaded)
		}
	}
	if len(s.Variants) > 0 {
		set("layers_compressed", compressed)
		set("bytes_compressed", bytesCompressed)
		set("bytes_uploaded", bytesUploaded)
	}
}

// fetchPushed reads manifest name:ref from the registry.
func (b *bench) fetchPushed(name, ref string) (pushed, error) {
	raw, err := b.fetchManifest(name, ref)
	if err != nil {
		return pushed{}, err
	}
	p := pushed{size: int64(len(raw))}
	if err := json.Unmarshal(raw, &p.manifest); err != nil {
		return p, fmt.Errorf("%s:%s: %w", name, ref, err)
	}
	return p, nil
}

func digests(ds []ocispec.Descriptor) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Digest.String()
	}
	return out
}

// window measures what one step did to the registry: the growth of its
// storage (apparent size of every file under the filesystem driver's
// root) and the bytes through the counting proxy.
type window struct {
	b      *bench
	before int64
}

func (b *bench) startWindow() (*window, error) {
	n, err := dirBytes(b.registryData())
	if err != nil {
		return nil, err
	}
	b.base.proxy.reset()
	return &window{b: b, before: n}, nil
}

// end records growth_bytes, sent_bytes and received_bytes under prefix.
func (w *window) end(r *record, prefix string) error {
	sent, received := w.b.base.proxy.counts()
	n, err := dirBytes(w.b.registryData())
	if err != nil {
		return err
	}
	r.set(prefix+"growth_bytes", float64(n-w.before))
	r.set(prefix+"sent_bytes", float64(sent))
	r.set(prefix+"received_bytes", float64(received))
	return nil
}

func (b *bench) registryData() string { return filepath.Join(b.work, "registry", "data") }

// dirBytes is the apparent size of every regular file under root (0 when
// root does not exist yet).
func dirBytes(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}
