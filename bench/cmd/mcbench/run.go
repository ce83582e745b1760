package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mcbuild/mcbuild/bench/internal/floors"
	"github.com/mcbuild/mcbuild/bench/internal/workload"
	"github.com/mcbuild/mcbuild/internal/oci"
)

// The arms; defaultArms is the order each round runs them.
const (
	armA = "a" // mcbuild, gzip only
	armB = "b" // mcbuild, gzip + zstd:chunked (its defaults: compressing after the build)
	armF = "f" // mcbuild, gzip + zstd:chunked, --compress-while-building
	armS = "s" // b without SBOMs (--sbom=false): what the SBOMs cost b
	armC = "c" // naive library path: two sequential copy.Image
	armD = "d" // buildah 1.45 CLI: build, push gzip, manifest push --all --add-compression zstd:chunked
	armE = "e" // encoder floors
)

const defaultArms = "a,b,s,f,c,d,e"

var armTitles = map[string]string{
	armA: "mcbuild, gzip only, at its defaults (stream publisher, every layer compressed after the build)",
	armB: "mcbuild, gzip + zstd:chunked at its defaults: the stream publisher reads each layer once and compresses both formats concurrently (zstd:chunked by pkg/zstdchunked, level 3), every layer after the build",
	armS: "mcbuild, gzip + zstd:chunked at its defaults but --sbom=false: b without generating and attaching SBOMs (b makes one per platform alongside the publish, and the index SBOM)",
	armF: "mcbuild, gzip + zstd:chunked with --compress-while-building: the same stream publisher, compressing each layer as soon as the build commits it, overlapping the rest of the build",
	armC: "naive library path: copy.Image gzip, then copy.Image zstd:chunked (defaults)",
	armD: "buildah 1.45 CLI: build; push gzip; manifest push --all --add-compression zstd:chunked",
	armE: "floors: encoders alone over the layer tars",
}

type config struct {
	mcbuild, registryBin, buildah, helperDir string
	crane, goroot, rootfs                    string // base workload
	runs                                     int
	workload                                 string // ref, big or base
	arms                                     []string
	driver                                   string
	workRoot, cacheDir, outDir               string
	keep                                     bool
	note                                     string
}

func envDefault(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func runCmd(args []string) error {
	var c config
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	fs.StringVar(&c.mcbuild, "mcbuild", envDefault("MCBUILD", "bin/mcbuild"), "mcbuild binary")
	fs.StringVar(&c.registryBin, "registry", envDefault("REGISTRY_BIN", "bin/tools/registry"), "distribution registry binary")
	fs.StringVar(&c.buildah, "buildah", "bench/bin/buildah", "buildah 1.45 CLI (arm d)")
	fs.StringVar(&c.helperDir, "helpers", "bench/bin/netavark/usr/lib/podman", "directory holding netavark and aardvark-dns for the buildah CLI")
	runs, _ := strconv.Atoi(envDefault("BENCH_RUNS", "3"))
	fs.IntVar(&c.runs, "runs", runs, "runs per arm ($BENCH_RUNS)")
	big := fs.Bool("big", os.Getenv("BENCH_BIG") == "1", "the workload with a 1 GiB layer ($BENCH_BIG=1; same as -workload big)")
	fs.StringVar(&c.workload, "workload", envDefault("BENCH_WORKLOAD", workload.Reference().Name), "workload: ref, big, or base (issue 12: layer reuse) ($BENCH_WORKLOAD)")
	arms := fs.String("arms", os.Getenv("BENCH_ARMS"), "arms to run, in this order ($BENCH_ARMS; default "+defaultArms+", for the base workload "+defaultBaseArms+")")
	fs.StringVar(&c.crane, "crane", "bench/bin/crane", "go-containerregistry's crane (base workload: pushes the foreign base)")
	fs.StringVar(&c.goroot, "goroot", os.Getenv("GOROOT"), "Go toolchain whose src/ the base workload copies (default: `go env GOROOT`)")
	fs.StringVar(&c.rootfs, "rootfs", "examples/busybox-base/rootfs", "busybox root filesystems per architecture (make rootfs), the base workload's shell")
	fs.StringVar(&c.driver, "storage-driver", envDefault("BENCH_STORAGE_DRIVER", "vfs"), "containers/storage driver for every build ($BENCH_STORAGE_DRIVER)")
	fs.StringVar(&c.workRoot, "work", envDefault("BENCH_WORK", "/var/tmp"), "where the registry, stores and logs live during the run ($BENCH_WORK)")
	fs.StringVar(&c.cacheDir, "cache", "bench/.cache/workload", "workload cache directory")
	fs.StringVar(&c.outDir, "out", "bench/results", "results directory (a dated subdirectory is created)")
	fs.BoolVar(&c.keep, "keep", false, "keep the work directory (logs, registry) afterwards")
	fs.StringVar(&c.note, "note", os.Getenv("BENCH_NOTE"), "a sentence recorded with the results: how this run was made ($BENCH_NOTE)")
	_ = fs.Parse(args)
	if c.runs < 1 {
		return fmt.Errorf("-runs %d: at least 1", c.runs)
	}
	if *big {
		c.workload = workload.Big().Name
	}
	titles, valid := armTitles, defaultArms
	switch c.workload {
	case workload.Reference().Name, workload.Big().Name:
	case workload.BaseName:
		titles, valid = baseArmTitles, defaultBaseArms
	default:
		return fmt.Errorf("-workload %q: want ref, big or base", c.workload)
	}
	if *arms == "" {
		*arms = valid
	}
	for _, a := range strings.Split(*arms, ",") {
		if _, ok := titles[a]; !ok {
			return fmt.Errorf("-arms: unknown arm %q for workload %s (valid: %s)", a, c.workload, valid)
		}
		c.arms = append(c.arms, a)
	}
	for _, p := range []*string{&c.mcbuild, &c.registryBin, &c.buildah, &c.helperDir, &c.crane, &c.workRoot, &c.cacheDir, &c.outDir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	b := &bench{cfg: c, started: time.Now()}
	return b.run()
}

type bench struct {
	cfg      config
	started  time.Time
	self     string
	wl       *workload.Generated
	work     string
	reg      string // 127.0.0.1:PORT
	regCmd   *exec.Cmd
	srcStore string // the setup build's store, arm c's source
	res      results
	base     baseState // base workload only
}

func (b *bench) logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%6.0fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, a...))
}

func (b *bench) has(arm string) bool {
	for _, a := range b.cfg.arms {
		if a == arm {
			return true
		}
	}
	return false
}

func (b *bench) run() error {
	var err error
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	spec, err := b.spec()
	if err != nil {
		return err
	}
	if b.wl, err = workload.Ensure(b.cfg.cacheDir, spec, os.Stderr); err != nil {
		return err
	}
	b.logf("workload %q: %d layers, %.1f MiB of layer tar, context %s", spec.Name, len(b.wl.Tars), mib(b.wl.TotalBytes), b.wl.Context)
	if err := b.checkTools(); err != nil {
		return err
	}
	if b.work, err = os.MkdirTemp(b.cfg.workRoot, "mcbench."); err != nil {
		return err
	}
	defer b.cleanup()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		b.logf("interrupted; stopping the registry")
		b.cleanup()
		os.Exit(130)
	}()

	titles := armTitles
	if b.isBase() {
		titles = baseArmTitles
	}
	b.res = results{
		Workload: workloadInfo{Name: spec.Name, Spec: spec, Tars: b.wl.Tars, TarBytes: b.wl.TarBytes, TotalBytes: b.wl.TotalBytes, TarSHA256: b.wl.TarSHA256},
		Runs:     b.cfg.runs, Arms: b.cfg.arms, StorageDriver: b.cfg.driver,
		Machine: machineInfo(), Versions: b.versions(), Started: b.started.UTC().Format(time.RFC3339),
		Titles: titles, Note: b.cfg.note,
	}
	if err := b.startRegistry(); err != nil {
		return err
	}
	if b.isBase() {
		if err := b.setupBase(); err != nil {
			return err
		}
	}
	if b.has(armC) {
		if err := b.setupNaiveSource(); err != nil {
			return err
		}
	}
	if b.has(armD) {
		if err := b.writeContainersConf(); err != nil {
			return err
		}
	}
	for round := 1; round <= b.cfg.runs; round++ {
		load := loadavg()
		b.res.Load = append(b.res.Load, loadSample{Round: round, Loadavg: load, At: time.Since(b.started).Seconds()})
		b.logf("round %d/%d (load average %s)", round, b.cfg.runs, load)
		for _, arm := range b.cfg.arms {
			var recs []*record
			switch arm {
			case armA:
				recs = []*record{b.runMcbuild(armA, "gzip", round)}
			case armB:
				recs = []*record{b.runMcbuild(armB, "gzip,zstd:chunked", round)}
			case armS:
				recs = []*record{b.runMcbuild(armS, "gzip,zstd:chunked", round, "--sbom=false")}
			case armF:
				recs = []*record{b.runMcbuild(armF, "gzip,zstd:chunked", round, "--compress-while-building")}
			case armC:
				recs = []*record{b.runNaive(round)}
			case armD:
				if b.isBase() {
					recs = []*record{b.runApp(armD, round)}
				} else {
					recs = []*record{b.runBuildah(round)}
				}
			case armE:
				recs = b.runFloors(round)
			case armReuse, armNoReuse, armGoBase:
				recs = []*record{b.runApp(arm, round)}
			}
			for _, r := range recs {
				r.Round, r.Loadavg = round, load
				if r.Error != "" {
					b.logf("  %s FAILED: %s", r.Arm, r.Error)
				} else {
					b.logf("  %s", r.oneLine())
				}
				b.res.Records = append(b.res.Records, r)
			}
		}
	}
	b.res.Load = append(b.res.Load, loadSample{Round: b.cfg.runs + 1, Loadavg: loadavg(), At: time.Since(b.started).Seconds()})
	b.res.Seconds = time.Since(b.started).Seconds()
	b.res.summarize()
	b.res.printTable(os.Stdout)
	return b.res.write(b.cfg.outDir)
}

// spec is the workload the configuration names.
func (b *bench) spec() (workload.Spec, error) {
	return specFor(b.cfg.workload, b.cfg.goroot, b.cfg.rootfs)
}

// specFor is workload name (ref, big, base); the base workload copies
// goroot/src and needs a busybox under rootfs/<GOARCH> (make rootfs).
func specFor(name, goroot, rootfs string) (workload.Spec, error) {
	switch name {
	case workload.Reference().Name:
		return workload.Reference(), nil
	case workload.Big().Name:
		return workload.Big(), nil
	case workload.BaseName:
		rootfs, err := filepath.Abs(filepath.Join(rootfs, runtime.GOARCH))
		if err != nil {
			return workload.Spec{}, err
		}
		if _, err := os.Stat(filepath.Join(rootfs, "bin", "busybox")); err != nil {
			return workload.Spec{}, fmt.Errorf("the base workload's shell: %w (make rootfs prepares it)", err)
		}
		if goroot == "" {
			out, err := exec.Command("go", "env", "GOROOT").Output()
			if err != nil {
				return workload.Spec{}, fmt.Errorf("no GOROOT given and `go env GOROOT` failed: %w", err)
			}
			goroot = strings.TrimSpace(string(out))
		}
		return workload.Base(goroot, rootfs), nil
	}
	return workload.Spec{}, fmt.Errorf("workload %q: want ref, big or base", name)
}

func (b *bench) isBase() bool { return b.cfg.workload == workload.BaseName }

func (b *bench) checkTools() error {
	need := []string{b.cfg.mcbuild, b.cfg.registryBin}
	if b.isBase() {
		need = append(need, b.cfg.crane)
	}
	if b.has(armD) {
		need = append(need, b.cfg.buildah, filepath.Join(b.cfg.helperDir, "netavark"))
		if _, err := exec.LookPath("unshare"); err != nil {
			return fmt.Errorf("arm d needs unshare (util-linux) to give buildah a private blob-info cache: %w", err)
		}
	}
	for _, p := range need {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w (bench/run.sh builds and fetches what the benchmark needs)", err)
		}
	}
	return nil
}

func (b *bench) cleanup() {
	if b.base.proxy != nil {
		b.base.proxy.close()
	}
	if b.regCmd != nil && b.regCmd.Process != nil {
		_ = b.regCmd.Process.Signal(syscall.SIGTERM)
		_, _ = b.regCmd.Process.Wait()
		b.regCmd = nil
	}
	if b.work == "" {
		return
	}
	if b.cfg.keep {
		b.logf("work directory kept: %s", b.work)
		return
	}
	removeAll(b.work)
}

// removeAll unmounts whatever a crashed build left under dir, then removes it.
func removeAll(dir string) {
	if m, err := os.ReadFile("/proc/self/mounts"); err == nil {
		lines := strings.Split(string(m), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			f := strings.Fields(lines[i])
			if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
				_ = syscall.Unmount(f[1], syscall.MNT_DETACH)
			}
		}
	}
	_ = os.RemoveAll(dir)
}

func (b *bench) startRegistry() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b.reg = l.Addr().String()
	_ = l.Close()
	dir := filepath.Join(b.work, "registry")
	cfg := fmt.Sprintf("version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}\nhttp: {addr: %s}\n", filepath.Join(dir, "data"), b.reg)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return err
	}
	b.regCmd = exec.Command(b.cfg.registryBin, "serve", filepath.Join(dir, "config.yml"))
	b.regCmd.Stdout, b.regCmd.Stderr = logf, logf
	b.regCmd.Env = registryEnv()
	if err := b.regCmd.Start(); err != nil {
		return err
	}
	for range 100 {
		if resp, err := http.Get("http://" + b.reg + "/v2/"); err == nil {
			resp.Body.Close()
			b.logf("registry (distribution) on %s, pid %d", b.reg, b.regCmd.Process.Pid)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("registry on %s did not answer; see %s", b.reg, filepath.Join(dir, "registry.log"))
}

// registryEnv keeps REGISTRY_* settings of the caller away from distribution.
func registryEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

func (b *bench) runDir(name string) (string, error) {
	d := filepath.Join(b.work, name)
	return d, os.MkdirAll(d, 0o755)
}

// mcbuildArgs is one `mcbuild build` of the workload to REGISTRY/repo:latest
// into a private store, with mcbuild's defaults but for extra.
func (b *bench) mcbuildArgs(dir, repo, formats string, extra ...string) []string {
	return b.mcbuildArgsFor(dir, b.reg+"/"+repo+":latest", b.wl.Containerfile(), formats, extra...)
}

// mcbuildArgsFor is one `mcbuild build` of containerfile (its directory
// is the context) to image, into a private store under dir.
func (b *bench) mcbuildArgsFor(dir, image, containerfile, formats string, extra ...string) []string {
	return append([]string{b.cfg.mcbuild, "build", "--tls-verify=false",
		"--image", image,
		"--context", filepath.Dir(containerfile), "--file", containerfile,
		"--storage-driver", b.cfg.driver,
		"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"),
		"--compression-formats", formats,
		"--summary-json", filepath.Join(dir, "summary.json")}, extra...)
}

// mcbuildSummary is the part of --summary-json the benchmark reads.
type mcbuildSummary struct {
	IndexSize int64 `json:"index_size"`
	Manifests []struct {
		Compression string `json:"compression"`
		Digest      string `json:"digest"`
	} `json:"manifests"`
	// Variants say how each manifest's layers were made (internal/summary's
	// Variant): reused by source, compressed, bytes compressed and uploaded.
	Variants []struct {
		Platform        string         `json:"platform"`
		Compression     string         `json:"compression"`
		Layers          int            `json:"layers"`
		Reused          map[string]int `json:"layers_reused"`
		Compressed      int            `json:"layers_compressed"`
		BytesCompressed int64          `json:"bytes_compressed"`
		BytesUploaded   int64          `json:"bytes_uploaded"`
	} `json:"variants"`
	Phases struct {
		Build float64 `json:"build_seconds"`
		// CompressDuringBuild is the wall time of the compression started
		// while the build ran (--compress-while-building); left out when 0.
		CompressDuringBuild float64            `json:"compress_during_build_seconds"`
		Publish             float64            `json:"publish_seconds"`
		ByFormat            map[string]float64 `json:"publish_format_seconds"`
		// The SBOMs: generating them (alongside the publish), the wait for
		// them after it, attaching them in the release.
		SBOM       float64 `json:"sbom_seconds"`
		SBOMWait   float64 `json:"sbom_wait_seconds"`
		SBOMAttach float64 `json:"sbom_attach_seconds"`
		Total      float64 `json:"total_seconds"`
	} `json:"phases"`
}

// earlyLayersRE matches the stream publisher's line saying how many layers
// the build had already compressed when the publish phase needed them.
var earlyLayersRE = regexp.MustCompile(`: (\d+) of (\d+) layers were compressed during the build\b`)

// earlyLayers reads that line from a log: ok is false without it (no early
// compression, or a mcbuild that does not print it).
func earlyLayers(log string) (early, total int, ok bool) {
	b, err := os.ReadFile(log)
	if err != nil {
		return 0, 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if m := earlyLayersRE.FindStringSubmatch(l); m != nil {
			e, _ := strconv.Atoi(m[1])
			t, _ := strconv.Atoi(m[2])
			early, total, ok = early+e, total+t, true
		}
	}
	return early, total, ok
}

func (b *bench) runMcbuild(arm, formats string, round int, extra ...string) *record {
	r := newRecord(arm)
	dir, err := b.runDir(fmt.Sprintf("%s-%d", arm, round))
	if err != nil {
		return r.fail(err)
	}
	defer removeAll(dir)
	log := b.logPath(arm, round, "build")
	s, err := measureMcbuild(r, "", b.mcbuildArgs(dir, fmt.Sprintf("bench/%s-r%d", arm, round), formats, extra...), log, formats, mib(b.wl.TotalBytes))
	if err != nil {
		return r.fail(err)
	}
	// Compression moved into the build (arm f, --compress-while-building):
	// it overlaps build_s, and its CPU and memory count before the
	// "pushing " mark. a and b, at mcbuild's defaults, compress after the
	// build and report none (kept if they ever do).
	if arm == armF || s.Phases.CompressDuringBuild > 0 {
		r.set("early_compress_s", s.Phases.CompressDuringBuild)
	}
	if e, t, ok := earlyLayers(log); ok {
		r.set("early_layers", float64(e))
		r.set("layers", float64(t))
	}
	return r
}

// measureMcbuild runs one `mcbuild build` (args from mcbuildArgsFor) as
// process prefix+"mcbuild" of r, reads its --summary-json, checks it
// published formats, and records under prefix its phases and its CPU and
// memory split at the publish phase's "pushing " mark; with inMiB > 0
// also MiB/s of that much layer tar.
func measureMcbuild(r *record, prefix string, args []string, log, formats string, inMiB float64) (*mcbuildSummary, error) {
	p, err := measure(runSpec{args: args, log: log, markPrefix: "pushing "})
	r.Procs[prefix+"mcbuild"] = p
	if err != nil {
		return nil, err
	}
	var s mcbuildSummary
	if err := readJSON(summaryPath(args), &s); err != nil {
		return nil, err
	}
	var got []string
	for _, m := range s.Manifests {
		got = append(got, m.Compression)
	}
	if strings.Join(got, ",") != formats {
		return nil, fmt.Errorf("published %v, want %s", got, formats)
	}
	set := func(k string, v float64) { r.set(prefix+k, v) }
	set("build_s", s.Phases.Build)
	set("publish_s", s.Phases.Publish)
	if s.Phases.SBOM > 0 {
		set("sbom_s", s.Phases.SBOM)
		set("sbom_wait_s", s.Phases.SBOMWait)
		set("sbom_attach_s", s.Phases.SBOMAttach)
	}
	for f, sec := range s.Phases.ByFormat {
		set("publish_"+f+"_s", sec)
	}
	set("e2e_s", p.Wall)
	set("e2e_cpu_s", p.CPU())
	set("e2e_peak_mib", p.MaxRSSMiB)
	if inMiB > 0 {
		set("build_mibps", inMiB/s.Phases.Build)
		set("publish_mibps", inMiB/s.Phases.Publish)
		set("e2e_mibps", inMiB/p.Wall)
	}
	if p.Mark != nil {
		set("build_cpu_s", p.Mark.CPU)
		set("build_peak_mib", p.Mark.HWMMiB)
		set("publish_cpu_s", p.AfterMarkCPU())
		if p.Mark.ResetOK {
			set("publish_peak_mib", p.AfterMarkPeak())
		}
	} else {
		r.Notes = append(r.Notes, prefix+"mcbuild: no \"pushing \" line on stderr: publish CPU and memory not split from the build")
	}
	return &s, nil
}

// summaryPath is the value of --summary-json in args.
func summaryPath(args []string) string {
	for i, a := range args {
		if a == "--summary-json" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// setupNaiveSource builds the workload once with mcbuild (gzip to a
// throwaway repository) into a store that every run of arm c copies from.
func (b *bench) setupNaiveSource() error {
	dir, err := b.runDir("c-source")
	if err != nil {
		return err
	}
	b.srcStore = dir
	b.logf("setup: building the workload once into %s for arm c", dir)
	args := b.mcbuildArgs(dir, "bench/setup", "gzip")
	_, err = measure(runSpec{args: args, log: filepath.Join(b.work, "setup.log")})
	return err
}

func (b *bench) runNaive(round int) *record {
	r := newRecord(armC)
	dir, err := b.runDir(fmt.Sprintf("c-%d", round))
	if err != nil {
		return r.fail(err)
	}
	defer removeAll(dir)
	var out bytes.Buffer
	p, err := measure(runSpec{
		args: []string{b.self, "naive", "-storage-driver", b.cfg.driver,
			"-root", filepath.Join(b.srcStore, "root"), "-runroot", filepath.Join(b.srcStore, "runroot"),
			"-dest", fmt.Sprintf("%s/bench/c-r%d", b.reg, round), "-blob-info-cache", filepath.Join(dir, "blob-info-cache")},
		env:    []string{"TMPDIR=" + mkdir(filepath.Join(dir, "tmp"))},
		stdout: &out, log: b.logPath(armC, round, "naive"),
	})
	r.Procs["naive"] = p
	if err != nil {
		return r.fail(err)
	}
	var nr naiveResult
	if err := json.Unmarshal(out.Bytes(), &nr); err != nil {
		return r.fail(fmt.Errorf("naive output: %w", err))
	}
	for _, c := range nr.Copies {
		r.set("publish_"+c.Format+"_s", c.Seconds)
	}
	r.set("publish_s", p.Wall)
	r.set("publish_cpu_s", p.CPU())
	r.set("publish_peak_mib", p.MaxRSSMiB)
	r.set("publish_mibps", mib(b.wl.TotalBytes)/p.Wall)
	return r
}

func (b *bench) writeContainersConf() error {
	conf := fmt.Sprintf("# mcbench: the buildah CLI's private configuration (arm d)\n[network]\nnetwork_backend = \"netavark\"\n\n[engine]\nhelper_binaries_dir = [%q]\n", b.cfg.helperDir)
	return os.WriteFile(filepath.Join(b.work, "containers.conf"), []byte(conf), 0o644)
}

// blobInfoCachePath is where containers/image keeps its cache when running as
// root, whatever the flags; arm d's pushes get a fresh directory over it in a
// private mount namespace.
const blobInfoCachePath = "/var/lib/containers/cache"

func (b *bench) runBuildah(round int) *record {
	r := newRecord(armD)
	dir, err := b.runDir(fmt.Sprintf("d-%d", round))
	if err != nil {
		return r.fail(err)
	}
	defer removeAll(dir)
	if err := os.MkdirAll(blobInfoCachePath, 0o755); err != nil {
		return r.fail(err)
	}
	base, isolated, env := b.buildahCmd(dir)
	img := fmt.Sprintf("localhost/bench-d:r%d", round)
	list := fmt.Sprintf("localhost/bench-d-list:r%d", round)
	repo := fmt.Sprintf("%s/bench/d-r%d", b.reg, round)
	steps := []struct {
		name string
		args []string
	}{
		{"build", append(base, "build", "--layers", "--no-cache", "--format", "oci", "--isolation", "chroot", "-f", b.wl.Containerfile(), "-t", img, b.wl.Context)},
		{"push_gzip", isolated("push", "--tls-verify=false", "--format", "oci", "--compression-format", "gzip", img, "docker://"+repo+":gzip")},
		{"manifest_create", append(base, "manifest", "create", list)},
		{"manifest_add", append(base, "manifest", "add", list, img)},
		{"push_all", isolated("manifest", "push", "--all", "--add-compression", "zstd:chunked", "--tls-verify=false", list, "docker://"+repo+":latest")},
	}
	for _, s := range steps {
		p, err := measure(runSpec{args: s.args, env: env, log: b.logPath(armD, round, s.name)})
		r.Procs[s.name] = p
		if err != nil {
			return r.fail(err)
		}
	}
	if err := b.checkBuildahPush(repo); err != nil {
		return r.fail(err)
	}
	in := mib(b.wl.TotalBytes)
	for _, n := range []string{"build", "push_gzip", "push_all"} {
		p := r.Procs[n]
		r.set(n+"_s", p.Wall)
		r.set(n+"_cpu_s", p.CPU())
		r.set(n+"_peak_mib", p.MaxRSSMiB)
		r.set(n+"_mibps", in/p.Wall)
	}
	r.set("manifest_prep_s", r.Procs["manifest_create"].Wall+r.Procs["manifest_add"].Wall)
	bd, pg := r.Procs["build"], r.Procs["push_gzip"]
	r.set("e2e_s", bd.Wall+pg.Wall)
	r.set("e2e_cpu_s", bd.CPU()+pg.CPU())
	r.set("e2e_peak_mib", max(bd.MaxRSSMiB, pg.MaxRSSMiB))
	r.set("e2e_mibps", in/(bd.Wall+pg.Wall))
	return r
}

// buildahCmd is how arm d runs the buildah CLI with its store, TMPDIR
// and blob-info cache under dir: base runs it directly, isolated in a
// private mount namespace where the run's own cache directory is
// bind-mounted over containers/image's root cache (see blobInfoCachePath).
func (b *bench) buildahCmd(dir string) (base []string, isolated func(args ...string) []string, env []string) {
	cache := mkdir(filepath.Join(dir, "blob-info-cache"))
	env = []string{"CONTAINERS_CONF=" + filepath.Join(b.work, "containers.conf"), "TMPDIR=" + mkdir(filepath.Join(dir, "tmp"))}
	base = []string{b.cfg.buildah, "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"), "--storage-driver", b.cfg.driver}
	isolated = func(args ...string) []string {
		return append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
			`mount --bind "$0" ` + blobInfoCachePath + ` && exec "$@"`, cache}, append(base, args...)...)
	}
	return base, isolated, env
}

// checkBuildahPush verifies arm d published what it claims: a gzip manifest,
// and an index with the gzip instance and a zstd:chunked one.
func (b *bench) checkBuildahPush(repo string) error {
	name := strings.TrimPrefix(repo, b.reg+"/")
	var m struct {
		Layers []struct {
			MediaType string `json:"mediaType"`
		} `json:"layers"`
	}
	if err := b.getManifest(name, "gzip", &m); err != nil {
		return err
	}
	for _, l := range m.Layers {
		if !strings.HasSuffix(l.MediaType, "gzip") {
			return fmt.Errorf("buildah push --compression-format gzip: layer media type %s", l.MediaType)
		}
	}
	var idx struct {
		Manifests []struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := b.getManifest(name, "latest", &idx); err != nil {
		return err
	}
	zstd := 0
	for _, d := range idx.Manifests {
		if d.Annotations[oci.AnnotationZstd] == "true" {
			zstd++
		}
	}
	if len(idx.Manifests) != 2 || zstd != 1 {
		return fmt.Errorf("buildah manifest push --all --add-compression: index has %d manifests, %d zstd, want 2 and 1", len(idx.Manifests), zstd)
	}
	return nil
}

func (b *bench) getManifest(name, ref string, v any) error {
	raw, err := b.fetchManifest(name, ref)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// fetchManifest is the manifest or index name:ref (a tag or digest) as stored.
func (b *bench) fetchManifest(name, ref string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+b.reg+"/v2/"+name+"/manifests/"+ref, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", strings.Join([]string{oci.MediaTypeImageIndex, oci.MediaTypeImageManifest, oci.MediaTypeDockerManifest, oci.MediaTypeDockerManifestList}, ", "))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s:%s: %s", name, ref, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, oci.MaxDocumentBytes))
}

// cliFloors are the command-line encoders, run on the same tars when installed.
var cliFloors = []struct {
	name string
	args []string
}{
	{"pigz-6", []string{"pigz", "-c", "-p", "2"}},
	{"zstd-cli-3", []string{"zstd", "-q", "-c", "-T2", "-3"}},
	{"zstd-cli-10", []string{"zstd", "-q", "-c", "-T2", "-10"}},
}

// floorOrder is the order the floors run and print in.
func floorOrder() []string {
	names := []string{"pgzip", "zstd-3", floors.UpstreamChunkedName, floors.Ours.Name, floors.OursOneCPU.Name, "storage-zstd-chunked-10"}
	for _, c := range cliFloors {
		names = append(names, c.name)
	}
	return names
}

func (b *bench) runFloors(round int) []*record {
	tars := b.wl.TarPaths()
	var recs []*record
	in := float64(b.wl.TotalBytes)
	for _, name := range floorOrder() {
		r := newRecord(armE + ":" + name)
		recs = append(recs, r)
		var args []string
		isCLI := false
		for _, c := range cliFloors {
			if c.name == name {
				args, isCLI = append(append([]string{}, c.args...), tars...), true
			}
		}
		if !isCLI {
			args = append([]string{b.self, "floor", "-encoder", name}, tars...)
		} else if _, err := exec.LookPath(args[0]); err != nil {
			r.fail(fmt.Errorf("%s not installed", args[0]))
			continue
		}
		var out bytes.Buffer
		var count floors.Counter
		spec := runSpec{args: args, log: b.logPath(armE, round, name), stdout: &out}
		if e, err := floors.Get(name); err == nil {
			spec.env = e.Env
		}
		if isCLI {
			spec.stdout = &count
		}
		p, err := measure(spec)
		r.Procs[name] = p
		if err != nil {
			r.fail(err)
			continue
		}
		secs, outBytes := p.Wall, count.N
		if !isCLI {
			var fr floors.Result
			if err := json.Unmarshal(out.Bytes(), &fr); err != nil {
				r.fail(err)
				continue
			}
			secs, outBytes = fr.Seconds, fr.OutBytes
		}
		r.set("s", secs)
		r.set("cpu_s", p.CPU())
		r.set("peak_mib", p.MaxRSSMiB)
		r.set("mibps", in/(1<<20)/secs)
		r.set("out_bytes", float64(outBytes))
		r.set("out_ratio", float64(outBytes)/in)
	}
	return recs
}

func (b *bench) logPath(arm string, round int, step string) string {
	return filepath.Join(mkdir(filepath.Join(b.work, "logs")), fmt.Sprintf("r%d-%s-%s.log", round, arm, step))
}

func (b *bench) versions() map[string]string {
	v := map[string]string{"go (harness)": runtime.Version()}
	first := func(args ...string) string {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return "unavailable"
		}
		return strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
	}
	v["mcbuild"] = first(b.cfg.mcbuild, "--version")
	v["registry"] = first(b.cfg.registryBin, "--version")
	if b.isBase() {
		v["crane"] = first(b.cfg.crane, "version")
	}
	if b.has(armD) {
		v["buildah"] = first(b.cfg.buildah, "--version")
		v["netavark"] = first(filepath.Join(b.cfg.helperDir, "netavark"), "--version")
	}
	if b.has(armE) {
		v["pigz"] = first("pigz", "--version")
		v["zstd"] = first("zstd", "--version")
	}
	return v
}

func mkdir(d string) string {
	_ = os.MkdirAll(d, 0o755)
	return d
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
