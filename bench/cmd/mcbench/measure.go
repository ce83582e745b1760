package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one measured child process.
type proc struct {
	Args      []string `json:"args"`
	Wall      float64  `json:"wall_s"`
	User      float64  `json:"user_s"`
	Sys       float64  `json:"sys_s"`
	MaxRSSMiB float64  `json:"max_rss_mib"` // rusage ru_maxrss: the child and its reaped descendants
	// Mark is the child's state when its stderr first printed a line with
	// the mark prefix (mcbuild's "pushing ...": the publish phase starts).
	Mark *mark `json:"mark,omitempty"`
	// AfterMarkPeakMiB is the child's peak RSS after the mark: its VmHWM is
	// reset at the mark (clear_refs 5) and polled every 100 ms.
	AfterMarkPeakMiB float64 `json:"after_mark_peak_mib,omitempty"`
	Log              string  `json:"log"`
}

type mark struct {
	At      float64 `json:"at_s"`  // since the start
	CPU     float64 `json:"cpu_s"` // user+sys of the child and its reaped children so far
	HWMMiB  float64 `json:"hwm_mib"`
	ResetOK bool    `json:"hwm_reset"`
}

// CPU is user+sys.
func (p *proc) CPU() float64 { return p.User + p.Sys }

// AfterMarkCPU is the CPU time spent after the mark.
func (p *proc) AfterMarkCPU() float64 {
	if p.Mark == nil {
		return 0
	}
	return p.CPU() - p.Mark.CPU
}

// AfterMarkPeak is the best estimate of peak RSS after the mark: the polled
// high-water mark, or the whole run's peak if that exceeds the peak before.
func (p *proc) AfterMarkPeak() float64 {
	peak := p.AfterMarkPeakMiB
	if p.Mark != nil && p.MaxRSSMiB > p.Mark.HWMMiB+1 && p.MaxRSSMiB > peak {
		peak = p.MaxRSSMiB
	}
	return peak
}

type runSpec struct {
	args       []string
	env        []string // added to the harness' environment
	dir        string
	stdout     io.Writer // default: the log
	log        string    // file getting stderr (and stdout unless stdout is set)
	markPrefix string
}

// measure runs s.args and waits for it, measuring wall time, rusage and,
// with a mark prefix, the split at the mark.
func measure(s runSpec) (*proc, error) {
	p := &proc{Args: s.args, Log: s.log}
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "+ %s\n", strings.Join(s.args, " "))
	cmd := exec.Command(s.args[0], s.args[1:]...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout = logf
	if s.stdout != nil {
		cmd.Stdout = s.stdout
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	var mu sync.Mutex
	done := make(chan struct{})
	pollerDone := make(chan struct{})
	marked := make(chan struct{})
	go func() { // after the mark, poll the reset high-water mark
		defer close(pollerDone)
		select {
		case <-marked:
		case <-done:
			return
		}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if hwm, err := statusKiB(pid, "VmHWM"); err == nil {
				mu.Lock()
				p.AfterMarkPeakMiB = max(p.AfterMarkPeakMiB, float64(hwm)/1024)
				mu.Unlock()
			}
			select {
			case <-t.C:
			case <-done:
				return
			}
		}
	}()
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if s.markPrefix != "" && p.Mark == nil && strings.HasPrefix(line, s.markPrefix) {
			m := &mark{At: time.Since(start).Seconds()}
			m.CPU, _ = statCPU(pid)
			if hwm, err := statusKiB(pid, "VmHWM"); err == nil {
				m.HWMMiB = float64(hwm) / 1024
			}
			m.ResetOK = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
			p.Mark = m
			close(marked)
		}
		fmt.Fprintln(logf, line)
	}
	werr := cmd.Wait()
	p.Wall = time.Since(start).Seconds()
	close(done)
	<-pollerDone
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		p.User = tv(ru.Utime)
		p.Sys = tv(ru.Stime)
		p.MaxRSSMiB = float64(ru.Maxrss) / 1024
	}
	if werr != nil {
		return p, fmt.Errorf("%s: %v (log: %s)%s", s.args[0], werr, s.log, tail(s.log))
	}
	return p, nil
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// statCPU is utime+stime+cutime+cstime of /proc/PID/stat in seconds.
func statCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// after the command: state(3) ... utime(14) stime(15) cutime(16) cstime(17)
	if len(f) < 15 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var ticks int64
	for _, k := range []int{11, 12, 13, 14} {
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += v
	}
	const clkTck = 100 // USER_HZ on Linux
	return float64(ticks) / clkTck, nil
}

// statusKiB reads a "Key: N kB" line of /proc/PID/status.
func statusKiB(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", key, pid)
}

// tail returns the last lines of a log for an error message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return "\n    " + strings.Join(lines, "\n    ")
}
