package tekton

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Container runtimes from Debian that run the step image the way a kubelet's
// runtime would (docker.io 20.10, containerd 1.6 with ctr, podman 4.3 with
// runc; `make test` installs them). Each is started with its state in a
// temporary directory and stopped by t.Cleanup; containers share the host's
// network namespace, so they reach the loopback registries.

// containerSpec is one container as the kubelet hands it to the runtime,
// after the kubelet's own decisions (capabilities, seccomp profile,
// no_new_privs, user).
type containerSpec struct {
	Name       string
	Image      string // a reference the runtime has pulled
	Argv       []string
	Env        []string
	WorkingDir string
	Mounts     []bindMount
	// User is the uid to run as; nil keeps the image's (root here).
	User *int64
	// Caps is the container's whole capability set, without the CAP_
	// prefix: the runtime's defaults, then the securityContext's drop and add.
	Caps       []string
	NoNewPrivs bool
	Seccomp    seccompChoice
}

type bindMount struct {
	Src, Dst string
	ReadOnly bool
}

// seccompChoice is the profile the kubelet asks the runtime for.
type seccompChoice struct {
	Type corev1.SeccompProfileType
	// File is the host path of a Localhost profile.
	File string
}

// containerRuntime runs containers to completion.
type containerRuntime interface {
	// Name says which runtime and which CRI runtime's behavior it stands for.
	Name() string
	// DefaultCaps is the capability set the CRI runtime it stands for gives
	// a container before the securityContext's drop and add.
	DefaultCaps() []string
	// Pull makes ref (on a plain-HTTP loopback registry) runnable.
	Pull(t *testing.T, ref string)
	// Run runs c and returns its exit code (-1 when it could not start) and
	// its output.
	Run(t *testing.T, c containerSpec) (int, string)
}

// containerdDefaultCaps is what containerd (and Docker) give a container:
// containerd's oci.WithDefaultSpec. criODefaultCaps (harness_test.go) is CRI-O's.
var containerdDefaultCaps = []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"}

// runtimeDir is a fresh directory for a runtime's state. Paths stay short:
// containerd and dockerd put unix sockets in them (108 bytes at most).
func runtimeDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "mcb-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// dockerd leaves its netns/default nsfs mount behind when it stops.
		unmountUnder(t, dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	return dir
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Error(err)
		return
	}
	var points []string
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			points = append(points, f[1])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", p, err)
		}
	}
}

// requireCommands fails (never skips) when a runtime's binary is missing.
func requireCommands(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s not found: `make test` installs it (Debian packages docker.io, containerd, podman, runc, uidmap, apparmor)", n)
		}
	}
}

// runCmd runs a command to completion with a bound on its time, returning
// its combined output.
func runCmd(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v: %w", name, timeout, err)
	}
	return out.String(), err
}

// exitCode is the container's exit code from a runtime client's error.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// daemon is a runtime daemon this test started; stop ends it by its PID.
type daemon struct {
	cmd  *exec.Cmd
	done chan error
	log  string // its output
}

// startDaemon starts name with args, its output in logFile, and stops it
// when the test ends.
func startDaemon(t *testing.T, logFile string, name string, args ...string) *daemon {
	t.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	d := &daemon{cmd: cmd, done: make(chan error, 1), log: logFile}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", name, d.logTail())
		}
	})
	return d
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.log)
	return tail(string(b), 3000)
}

// stop sends SIGTERM to the daemon's PID and waits; SIGKILL after 20s.
func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// waitFor polls ready until it succeeds, the daemon exits, or 60s pass.
func (d *daemon) waitFor(t *testing.T, what string, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := ready()
		if err == nil {
			return
		}
		select {
		case exit := <-d.done:
			d.done <- exit
			t.Fatalf("%s exited (%v) before it was ready: %s", what, exit, d.logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 60s: %v\n%s", what, err, d.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// ---- containerd 1.6 through ctr -------------------------------------------

// ctrRuntime is Debian's containerd 1.6 driven by its ctr client, standing
// in for containerd's CRI plugin: `ctr run --seccomp` applies containerd's
// RuntimeDefault (contrib/seccomp.DefaultProfile, computed for the
// container's capabilities) and `--seccomp-profile FILE` loads a Localhost
// profile with the same code as the CRI plugin (seccomp.WithProfile).
type ctrRuntime struct {
	address string
	ns      string
}

func startContainerd(t *testing.T) *ctrRuntime {
	t.Helper()
	requireCommands(t, "containerd", "ctr", "runc")
	dir := runtimeDir(t, "containerd")
	sock := filepath.Join(dir, "c.sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, filepath.Join(dir, "containerd.log"), "containerd", "--config", cfgPath, "--log-level", "warn")
	r := &ctrRuntime{address: sock, ns: "mcbuild-test"}
	d.waitFor(t, "containerd", func() error {
		_, err := runCmd(10*time.Second, "ctr", "--address", sock, "version")
		return err
	})
	return r
}

func (r *ctrRuntime) Name() string          { return "containerd 1.6 (ctr)" }
func (r *ctrRuntime) DefaultCaps() []string { return containerdDefaultCaps }

func (r *ctrRuntime) ctr(args ...string) []string {
	return append([]string{"--address", r.address, "--namespace", r.ns}, args...)
}

func (r *ctrRuntime) Pull(t *testing.T, ref string) {
	t.Helper()
	out, err := runCmd(5*time.Minute, "ctr", r.ctr("images", "pull", "--plain-http", ref)...)
	if err != nil {
		t.Fatalf("ctr images pull %s: %v\n%s", ref, err, out)
	}
}

func (r *ctrRuntime) Run(t *testing.T, c containerSpec) (int, string) {
	t.Helper()
	if c.User != nil && *c.User != 0 {
		t.Fatalf("%s: ctr 1.6 has no --user; run container %s as root or on another runtime", r.Name(), c.Name)
	}
	args := []string{"run", "--rm", "--net-host"}
	if c.WorkingDir != "" {
		args = append(args, "--cwd", c.WorkingDir)
	}
	// ctr starts from containerd's default set: drop what the container
	// lacks, add what it has beyond.
	for _, d := range containerdDefaultCaps {
		if !slices.Contains(c.Caps, d) {
			args = append(args, "--cap-drop", "CAP_"+d)
		}
	}
	for _, a := range c.Caps {
		if !slices.Contains(containerdDefaultCaps, a) {
			args = append(args, "--cap-add", "CAP_"+a)
		}
	}
	if !c.NoNewPrivs {
		args = append(args, "--allow-new-privs") // ctr sets no_new_privs by default
	}
	switch c.Seccomp.Type {
	case corev1.SeccompProfileTypeRuntimeDefault:
		args = append(args, "--seccomp")
	case corev1.SeccompProfileTypeLocalhost:
		args = append(args, "--seccomp", "--seccomp-profile", c.Seccomp.File)
	}
	for _, m := range c.Mounts {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		args = append(args, "--mount", fmt.Sprintf("type=bind,src=%s,dst=%s,options=rbind:%s", m.Src, m.Dst, mode))
	}
	for _, e := range c.Env {
		args = append(args, "--env", e)
	}
	id := fmt.Sprintf("%s-%d", c.Name, time.Now().UnixNano())
	args = append(append(args, c.Image, id), c.Argv...)
	out, err := runCmd(10*time.Minute, "ctr", r.ctr(args...)...)
	return exitCode(err), out
}

// ---- Docker 20.10 -------------------------------------------------------------

// dockerRuntime is Debian's dockerd 20.10 (its default seccomp profile is
// containerd's RuntimeDefault in Docker's format; `--security-opt
// seccomp=FILE` loads a Localhost-style profile).
type dockerRuntime struct {
	host string
}

// dockerCLI is Debian's client: another docker may come first on PATH.
const dockerCLI = "/usr/bin/docker"

func startDocker(t *testing.T, insecureRegistries ...string) *dockerRuntime {
	t.Helper()
	requireCommands(t, "dockerd", dockerCLI, "containerd", "runc")
	dir := runtimeDir(t, "docker")
	sock := filepath.Join(dir, "d.sock")
	args := []string{"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "pid"), "-H", "unix://" + sock, "--storage-driver", "vfs",
		"--iptables=false", "--ip-masq=false", "--bridge=none", "--log-level", "warn",
		"--containerd-namespace", "mcbuild-test-docker", "--containerd-plugins-namespace", "mcbuild-test-docker-plugins"}
	for _, reg := range insecureRegistries {
		args = append(args, "--insecure-registry", reg)
	}
	d := startDaemon(t, filepath.Join(dir, "dockerd.log"), "dockerd", args...)
	r := &dockerRuntime{host: "unix://" + sock}
	d.waitFor(t, "dockerd", func() error {
		_, err := runCmd(10*time.Second, dockerCLI, "-H", r.host, "version")
		return err
	})
	return r
}

func (r *dockerRuntime) Name() string          { return "Docker 20.10" }
func (r *dockerRuntime) DefaultCaps() []string { return containerdDefaultCaps }

func (r *dockerRuntime) Pull(t *testing.T, ref string) {
	t.Helper()
	out, err := runCmd(5*time.Minute, dockerCLI, "-H", r.host, "pull", "-q", ref)
	if err != nil {
		t.Fatalf("docker pull %s: %v\n%s", ref, err, out)
	}
}

func (r *dockerRuntime) Run(t *testing.T, c containerSpec) (int, string) {
	t.Helper()
	out, err := runCmd(10*time.Minute, dockerCLI, append([]string{"-H", r.host}, cliRun(c)...)...)
	return exitCode(err), out
}

// cliRun is docker's and podman's `run` for c (extra: more flags before the
// image): host network, c's working directory, user, capabilities (the
// whole set, after --cap-drop ALL), no_new_privs, seccomp profile, mounts
// and environment, c.Argv[0] as the entrypoint.
func cliRun(c containerSpec, extra ...string) []string {
	args := append([]string{"run", "--rm", "--network", "host", "--cap-drop", "ALL"}, extra...)
	if c.WorkingDir != "" {
		args = append(args, "-w", c.WorkingDir)
	}
	if c.User != nil {
		args = append(args, "--user", strconv.FormatInt(*c.User, 10))
	}
	for _, a := range c.Caps {
		args = append(args, "--cap-add", a)
	}
	if c.NoNewPrivs {
		args = append(args, "--security-opt", "no-new-privileges")
	}
	switch c.Seccomp.Type {
	case corev1.SeccompProfileTypeUnconfined, "":
		args = append(args, "--security-opt", "seccomp=unconfined")
	case corev1.SeccompProfileTypeLocalhost:
		args = append(args, "--security-opt", "seccomp="+c.Seccomp.File)
	}
	for _, m := range c.Mounts {
		v := m.Src + ":" + m.Dst
		if m.ReadOnly {
			v += ":ro"
		}
		args = append(args, "-v", v)
	}
	for _, e := range c.Env {
		args = append(args, "-e", e)
	}
	args = append(args, "--entrypoint", c.Argv[0], c.Image)
	return append(args, c.Argv[1:]...)
}

// ---- podman 4.3 + runc, standing in for CRI-O ----------------------------------

// podmanRuntime is Debian's podman 4.3 with runc, standing in for CRI-O: it
// gives CRI-O's default capabilities, and its RuntimeDefault is CRI-O's
// (>= 1.24): containers-common's profile with unshare allowed only to
// containers holding CAP_SYS_ADMIN, made from Debian's
// /usr/share/containers/seccomp.json as CRI-O's seccomp.DefaultProfile makes
// it from the same profile compiled in. podman loads profiles with
// containers/common's seccomp package, as CRI-O does.
type podmanRuntime struct {
	global      []string
	crioDefault string
	ulimits     []string
}

func startPodman(t *testing.T) *podmanRuntime {
	t.Helper()
	requireCommands(t, "podman", "runc", "conmon")
	dir := runtimeDir(t, "podman")
	r := &podmanRuntime{
		global: []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
			"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs", "--runtime", "runc",
			"--cgroup-manager", "cgroupfs", "--events-backend", "none", "--log-level", "error"},
		crioDefault: filepath.Join(dir, "crio-runtime-default.json"),
	}
	// podman sets RLIMIT_NOFILE/NPROC above what this VM lets it raise them
	// to otherwise (FACTS.md: runc fails "error setting rlimits").
	r.ulimits = []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
	if err := os.WriteFile(r.crioDefault, crioRuntimeDefault(t), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *podmanRuntime) Name() string          { return "CRI-O stand-in (podman 4.3 + runc)" }
func (r *podmanRuntime) DefaultCaps() []string { return criODefaultCaps }

func (r *podmanRuntime) Pull(t *testing.T, ref string) {
	t.Helper()
	out, err := runCmd(5*time.Minute, "podman", append(r.global, "pull", "-q", "--tls-verify=false", ref)...)
	if err != nil {
		t.Fatalf("podman pull %s: %v\n%s", ref, err, out)
	}
}

func (r *podmanRuntime) Run(t *testing.T, c containerSpec) (int, string) {
	t.Helper()
	if c.Seccomp.Type == corev1.SeccompProfileTypeRuntimeDefault {
		c.Seccomp = seccompChoice{Type: corev1.SeccompProfileTypeLocalhost, File: r.crioDefault}
	}
	out, err := runCmd(10*time.Minute, "podman", append(slices.Clone(r.global), cliRun(c, r.ulimits...)...)...)
	return exitCode(err), out
}

// crioRuntimeDefault is CRI-O's RuntimeDefault profile (CRI-O >= 1.24,
// internal/config/seccomp.DefaultProfile): containers-common's default
// profile with "unshare" taken out of the rule that allows it to everyone
// and allowed only with CAP_SYS_ADMIN.
func crioRuntimeDefault(t *testing.T) []byte {
	t.Helper()
	const src = "/usr/share/containers/seccomp.json" // Debian's golang-github-containers-common
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("containers-common's seccomp profile: %v (podman depends on golang-github-containers-common)", err)
	}
	var profile map[string]any
	if err := json.Unmarshal(raw, &profile); err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	rules, _ := profile["syscalls"].([]any)
	removed := 0
	for _, r := range rules {
		rule := r.(map[string]any)
		names, _ := rule["names"].([]any)
		if rule["action"] != "SCMP_ACT_ALLOW" || len(names) < 100 {
			continue // CRI-O edits the big unconditional allow rule only
		}
		kept := names[:0]
		for _, n := range names {
			if n == "unshare" {
				removed++
				continue
			}
			kept = append(kept, n)
		}
		rule["names"] = kept
	}
	if removed != 1 {
		t.Fatalf("%s: found unshare %d times in its big allow rule, want 1 (CRI-O's edit assumes it)", src, removed)
	}
	profile["syscalls"] = append(rules, map[string]any{
		"names": []string{"unshare"}, "action": "SCMP_ACT_ALLOW", "includes": map[string]any{"caps": []string{"CAP_SYS_ADMIN"}},
	})
	out, err := json.Marshal(profile)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
