package build

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// When a build is cancelled, buildah stops a RUN step only if the process
// itself received SIGINT or SIGTERM while that step's process was running:
// it forwards the signal, and its chroot helper SIGKILLs the step's shell.
// That leaves two holes, both seen with `RUN sleep 30 & ...; wait`:
//
//   - a cancellation that arrives before the step's process starts (between
//     steps, while the step is being set up, or by a context cancelled
//     without a signal) is not noticed until the step ends on its own, which
//     for a long compile is past any grace period;
//   - the shell's own children (the `sleep`, a compiler) are orphaned, not
//     killed, and keep running after mcbuild has exited.
//
// killRunsOnCancel closes both: while a build runs, this process is a child
// subreaper (so orphaned step processes are re-parented to it and stay its
// descendants), and once ctx is cancelled every descendant that lives in
// another mount namespace (RUN steps always do: buildah's chroot helper and
// OCI runtimes unshare it; credential helpers and `runc` itself do not) is
// SIGKILLed, again every sweepInterval until the build returns, then until
// none is left. Only processes this process started are touched.
const sweepInterval = 100 * time.Millisecond

// killRunsOnCancel starts the watcher; the returned func stops it and, if
// ctx was cancelled, waits (up to a few seconds) until every step process is
// gone.
func killRunsOnCancel(ctx context.Context) func() {
	wasSubreaper := isSubreaper()
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		tick := time.NewTicker(sweepInterval)
		defer tick.Stop()
		for {
			killStepProcesses()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		if ctx.Err() != nil {
			for deadline := time.Now().Add(5 * time.Second); killStepProcesses() > 0 && time.Now().Before(deadline); {
				time.Sleep(sweepInterval / 2)
			}
		}
		if !wasSubreaper { // the build is over: orphans are no longer ours to watch
			_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
		}
	}
}

// isSubreaper reports whether this process is a child subreaper now.
func isSubreaper() bool {
	var v int32
	err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&v)), 0, 0, 0)
	return err == nil && v != 0
}

// killStepProcesses SIGKILLs every live descendant of this process that is
// in another mount namespace and returns how many it found.
func killStepProcesses() int {
	self := os.Getpid()
	ourNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return 0
	}
	n := 0
	for _, pid := range descendants(self) {
		ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
		if err != nil || ns == ourNS {
			continue
		}
		if unix.Kill(pid, unix.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// descendants lists the live (not zombie) processes below pid, from /proc.
func descendants(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	children := map[int][]int{}
	for _, p := range stats {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
		s := string(raw)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		child, err1 := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		ppid, err2 := strconv.Atoi(f[1])
		if err1 == nil && err2 == nil {
			children[ppid] = append(children[ppid], child)
		}
	}
	var out []int
	queue := children[pid]
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		out = append(out, c)
		queue = append(queue, children[c]...)
	}
	return out
}
