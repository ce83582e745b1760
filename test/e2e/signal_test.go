package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcbuild/mcbuild/internal/testfixture"
	"github.com/mcbuild/mcbuild/internal/testregistry"
)

// runDirs are the directories one run may touch: its store, its run root
// and its TMPDIR.
type runDirs struct {
	driver, root, runRoot, tmp string
}

func newRunDirs(t *testing.T, driver string) runDirs {
	dir := t.TempDir()
	d := runDirs{driver: driver, root: filepath.Join(dir, "root"), runRoot: filepath.Join(dir, "run"), tmp: filepath.Join(dir, "tmp")}
	if err := os.MkdirAll(d.tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	// Runs after a failing test killed its mcbuild: take down whatever it left
	// mounted, deepest first, so the temporary directory can be removed.
	t.Cleanup(func() {
		mounts := mountsUnder(dir)
		for i := len(mounts) - 1; i >= 0; i-- {
			if err := syscall.Unmount(mounts[i], 0); err != nil {
				_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
			}
		}
	})
	return d
}

// mountsUnder lists the mount points at or below dir, in mount order.
func mountsUnder(dirs ...string) []string {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(mi))
	for sc.Scan() {
		// Field 5 is the mount point (octal escapes do not occur in these paths).
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		for _, d := range dirs {
			if f[4] == d || strings.HasPrefix(f[4], d+"/") {
				out = append(out, f[4])
				break
			}
		}
	}
	return out
}

func (d runDirs) flags() []string {
	return []string{"--storage-driver", d.driver, "--root", d.root, "--runroot", d.runRoot}
}

func (d runDirs) env() []string { return []string{"TMPDIR=" + d.tmp} }

// process is an mcbuild started in the background whose stderr is watched.
type process struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	stdout bytes.Buffer
	done   chan struct{}
	code   int
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func start(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	p := &process{done: make(chan struct{})}
	p.cmd = exec.Command(mcbuildBin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = lockedWriter{&p.mu, &p.stdout}
	p.cmd.Stderr = lockedWriter{&p.mu, &p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			p.code = exit.ExitCode()
			if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.code = 128 + int(ws.Signal()) // killed, not exited
			}
		case err != nil:
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill() // the process this test started, by PID
			<-p.done
		}
	})
	return p
}

func (p *process) output() (stdout, stderr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String(), p.stderr.String()
}

// waitFor waits until stderr contains s; it fails if the process ends first.
func (p *process) waitFor(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, e := p.output(); strings.Contains(e, s) {
			return
		}
		select {
		case <-p.done:
			_, e := p.output()
			t.Fatalf("mcbuild exited (%d) before printing %q:\n%s", p.code, s, e)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_, e := p.output()
			t.Fatalf("no %q on stderr within %s:\n%s", s, timeout, e)
		}
	}
}

// signalAndWait sends sig and returns the exit code and how long the process
// took to exit.
func (p *process) signalAndWait(t *testing.T, sig syscall.Signal, timeout time.Duration) (int, time.Duration) {
	t.Helper()
	sent := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %v: %v", sig, err)
	}
	select {
	case <-p.done:
		return p.code, time.Since(sent)
	case <-time.After(timeout):
		_, e := p.output()
		t.Fatalf("mcbuild still running %s after %v:\n%s", timeout, sig, e)
		return 0, 0
	}
}

// checkClean asserts an interrupted (or finished) run left nothing behind:
// no mount under its directories, no container in its store, no layer
// mounted, no scratch or temporary files, no process inside its store.
func checkClean(t *testing.T, d runDirs, extra ...string) {
	t.Helper()
	checkCleanProcs(t, d, nil, extra...)
}

// checkCleanProcs is checkClean that also wants every process whose command
// line contains one of markers, or whose PID is in pids, to be gone.
func checkCleanProcs(t *testing.T, d runDirs, markers []string, extra ...string) {
	t.Helper()
	dirs := append([]string{d.root, d.runRoot, d.tmp}, extra...)
	under := func(p string) bool {
		for _, dir := range dirs {
			if p == dir || strings.HasPrefix(p, dir+"/") {
				return true
			}
		}
		return false
	}
	for _, m := range mountsUnder(dirs...) {
		t.Errorf("stray mount: %s", m)
	}
	// Containers (buildah's working containers are store containers): both
	// the persistent and the volatile list, in the root and the run root.
	for _, base := range []string{d.root, d.runRoot} {
		for _, name := range []string{"containers.json", "volatile-containers.json"} {
			p := filepath.Join(base, d.driver+"-containers", name)
			raw, err := os.ReadFile(p)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			var list []json.RawMessage
			if err := json.Unmarshal(raw, &list); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if len(list) != 0 {
				t.Errorf("%d container(s) left in the store (%s): %s", len(list), p, raw)
			}
		}
	}
	mp := filepath.Join(d.runRoot, d.driver+"-layers", "mountpoints.json")
	if raw, err := os.ReadFile(mp); err == nil {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil || len(list) != 0 {
			t.Errorf("layers still mounted (%s): %s", mp, raw)
		}
	}
	if left, _ := os.ReadDir(d.tmp); len(left) != 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("files left in TMPDIR %s: %v", d.tmp, names)
	}
	if scratch, _ := filepath.Glob(filepath.Join(d.runRoot, "mcbuild-*")); len(scratch) != 0 {
		t.Errorf("scratch directories left: %v", scratch)
	}
	// Processes: a RUN step that outlived mcbuild carries the step's marker in
	// its command line, or (in the same mount namespace) has its working
	// directory inside the run's directories. Give the kernel a moment to reap.
	deadline := time.Now().Add(5 * time.Second)
	for {
		stray := strayProcesses(under, markers)
		if len(stray) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("processes left running inside the run's directories: %v", stray)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func strayProcesses(under func(string) bool, markers []string) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var out []string
	for _, p := range procs {
		if p == fmt.Sprintf("/proc/%d", os.Getpid()) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil || len(raw) == 0 { // gone, or a zombie (holds nothing)
			continue
		}
		cmdline := string(bytes.ReplaceAll(raw, []byte{0}, []byte{' '}))
		hit := ""
		for _, m := range markers {
			if strings.Contains(cmdline, m) {
				hit = "runs " + m
			}
		}
		for _, link := range []string{"root", "cwd"} {
			if target, err := os.Readlink(filepath.Join(p, link)); err == nil && under(target) {
				hit = link + " in " + target
			}
		}
		if hit != "" {
			out = append(out, fmt.Sprintf("%s (%s): %q", filepath.Base(p), hit, cmdline))
		}
	}
	return out
}

func randomFile(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// followUp runs a quick build with the same store, as the next Tekton retry
// would: it must work without any manual clean-up.
func followUp(t *testing.T, d runDirs, repoName, tag string) {
	t.Helper()
	ctxDir := testfixture.Context(t, map[string]string{"Containerfile": "FROM scratch\nCOPY hello.txt /hello.txt\n", "hello.txt": "after the interruption\n"})
	args := append([]string{"build", "--tls-verify=false", "--image", repoName + ":" + tag, "--context", ctxDir,
		"--platform", "linux/amd64"}, d.flags()...)
	mustRun(t, d.env(), args...)
	if _, err := testregistry.OpenRepo(t, repoName).Resolve(context.Background(), tag); err != nil {
		t.Errorf("follow-up build did not tag %s: %v", tag, err)
	}
	checkClean(t, d, ctxDir)
}

// TestSignalDuringRun: SIGTERM while a RUN step runs, or just before its
// process starts, stops mcbuild within seconds with exit 143 and
// "interrupted by SIGTERM"; the step's processes (its shell and the shell's
// own child) are killed, no mount, container, temporary file or process is
// left, nothing is tagged, no result is written, and the next run on the
// same store works.
func TestSignalDuringRun(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	for _, tc := range []struct {
		driver string
		late   bool // signal once the step printed, else on its STEP line
	}{{"vfs", true}, {"vfs", false}, {"overlay", true}, {"overlay", false}} {
		when := map[bool]string{true: "running", false: "starting"}[tc.late]
		t.Run(tc.driver+"/"+when, func(t *testing.T) {
			repoName := reg.Repo("e2e/signal-run-" + tc.driver + "-" + when)
			d := newRunDirs(t, tc.driver)
			// The quotes keep "sleeping-now" and "woke-up" out of the STEP
			// line; the nonce finds the step's shell in /proc.
			nonce := fmt.Sprintf("nonce-%d-%d", os.Getpid(), time.Now().UnixNano())
			ctxDir := contextFiles(t, "FROM scratch\nCOPY rootfs/amd64/ /\n"+
				`RUN : `+nonce+`; sleep 30 & echo "sleeping""-now pid=$!"; wait; echo "woke""-up"`+"\n", "amd64")
			resultsDir := t.TempDir()
			args := append([]string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--context", ctxDir,
				"--platform", "linux/amd64", "--results-dir", resultsDir}, d.flags()...)
			p := start(t, d.env(), args...)
			if tc.late {
				p.waitFor(t, "sleeping-now pid=", 90*time.Second)
				// The run's scratch directory (buildah's layer tars, the blob-info
				// cache) is under TMPDIR, like containers/image's big files, and
				// not under the run root, often a small tmpfs.
				inTmp, _ := filepath.Glob(filepath.Join(d.tmp, "mcbuild-*"))
				inRunRoot, _ := filepath.Glob(filepath.Join(d.runRoot, "mcbuild-*"))
				if len(inTmp) != 1 || len(inRunRoot) != 0 {
					t.Errorf("scratch directories: %v under TMPDIR, %v under the run root; want one under TMPDIR", inTmp, inRunRoot)
				}
			} else {
				p.waitFor(t, "STEP 3/3", 90*time.Second)
			}
			code, took := p.signalAndWait(t, syscall.SIGTERM, 20*time.Second)
			_, stderr := p.output()
			t.Logf("exit %d %s after SIGTERM", code, took.Round(time.Millisecond))
			if code != 143 || !strings.Contains(stderr, "interrupted by SIGTERM") {
				t.Errorf("exit %d, want 143 and \"interrupted by SIGTERM\" on stderr:\n%s", code, stderr)
			}
			if strings.Contains(stderr, "woke-up") {
				t.Error("the RUN step ran to completion")
			}
			markers := []string{nonce}
			if _, after, ok := strings.Cut(stderr, "sleeping-now pid="); ok {
				if pid, _, _ := strings.Cut(after, "\n"); pid != "" {
					// The step's sleep, a grandchild of buildah's helper.
					if cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline"); err == nil && bytes.HasPrefix(cmdline, []byte("sleep\x0030")) {
						t.Errorf("the step's sleep (pid %s) is still running", pid)
					}
				}
			}
			checkCleanProcs(t, d, markers, ctxDir)
			if got := tags(t, testregistry.OpenRepo(t, repoName)); len(got) != 0 {
				t.Errorf("tags after an interrupted build: %v", got)
			}
			if files, _ := os.ReadDir(resultsDir); len(files) != 0 {
				t.Errorf("results written by an interrupted build: %v", files)
			}
			followUp(t, d, repoName, "after")
		})
	}
}

// TestSignalDuringPush: SIGINT while a 64 MiB layer is being pushed stops
// mcbuild with exit 130; the tag still points where it pointed before, no
// index or subjects artifact is tagged, nothing is left behind, and the next
// run on the same store works.
func TestSignalDuringPush(t *testing.T) {
	reg := testregistry.StartDistribution(t)
	repoName := reg.Repo("e2e/signal-push")
	d := newRunDirs(t, "overlay")
	repo := testregistry.OpenRepo(t, repoName)

	// The tag exists before the interrupted run.
	followUp(t, d, repoName, "v1")
	before, err := repo.Resolve(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	tagsBefore := tags(t, repo)

	ctxDir := testfixture.Context(t, map[string]string{"Containerfile": "FROM scratch\nCOPY big.bin /big.bin\n"})
	randomFile(t, filepath.Join(ctxDir, "big.bin"), 64<<20)
	resultsDir := t.TempDir()
	args := append([]string{"build", "--tls-verify=false", "--image", repoName + ":v1", "--context", ctxDir,
		"--platform", "linux/amd64", "--results-dir", resultsDir}, d.flags()...)
	p := start(t, d.env(), args...)
	p.waitFor(t, "pushing", 90*time.Second)
	code, took := p.signalAndWait(t, syscall.SIGINT, 20*time.Second)
	_, stderr := p.output()
	t.Logf("exit %d %s after SIGINT", code, took.Round(time.Millisecond))
	if code != 130 || !strings.Contains(stderr, "interrupted by SIGINT") {
		t.Errorf("exit %d, want 130 and \"interrupted by SIGINT\" on stderr:\n%s", code, stderr)
	}
	after, err := repo.Resolve(context.Background(), "v1")
	if err != nil || after.Digest != before.Digest {
		t.Errorf("tag v1 moved from %s to %s (%v) by an interrupted run", before.Digest, after.Digest, err)
	}
	if got := tags(t, repo); strings.Join(got, ",") != strings.Join(tagsBefore, ",") {
		t.Errorf("tags changed by an interrupted run: %v, before %v", got, tagsBefore)
	}
	if files, _ := os.ReadDir(resultsDir); len(files) != 0 {
		t.Errorf("results written by an interrupted run: %v", files)
	}
	checkClean(t, d, ctxDir)
	followUp(t, d, repoName, "v2")
}
