package build

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func alive(pid int) bool {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// TestKillRunsOnCancel: after cancellation, a step-like process tree in its
// own mount namespace dies, including the grandchild its shell started; a
// child in our mount namespace (a credential helper, runc) is left alone.
func TestKillRunsOnCancel(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and unshare(1)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := killRunsOnCancel(ctx)

	step := exec.Command("unshare", "--mount", "sh", "-c", "sleep 60 & echo $!; wait")
	out, err := step.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := step.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	grandchild, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	helper := exec.Command("sleep", "60")
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = helper.Process.Kill(); _ = helper.Wait() }()

	time.Sleep(2 * sweepInterval)
	if !alive(grandchild) || !alive(step.Process.Pid) {
		t.Fatal("the step died before cancellation")
	}
	cancel()
	stop()
	waited := make(chan error, 1)
	go func() { waited <- step.Wait() }()
	select {
	case err := <-waited:
		if ws, ok := step.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Errorf("step ended with %v, want SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the step is still running after cancellation")
	}
	// SIGKILL is delivered asynchronously: on a loaded machine the process
	// can show as running for a moment after kill(2) returned.
	for deadline := time.Now().Add(5 * time.Second); alive(grandchild) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(grandchild) {
		t.Errorf("the step's grandchild %d is still running 5s after cancellation", grandchild)
	}
	if !alive(helper.Process.Pid) {
		t.Error("a child in our own mount namespace was killed")
	}
}

// TestKillRunsOnCancelSubreaper: the process is a child subreaper only while
// a build runs, cancelled or not.
func TestKillRunsOnCancelSubreaper(t *testing.T) {
	if isSubreaper() {
		t.Fatal("a subreaper before any build")
	}
	for _, cancelled := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		stop := killRunsOnCancel(ctx)
		if !isSubreaper() {
			t.Error("not a subreaper while the build runs")
		}
		if cancelled {
			cancel()
		}
		stop()
		cancel()
		if isSubreaper() {
			t.Errorf("still a subreaper after the build (cancelled: %v)", cancelled)
		}
	}
}
