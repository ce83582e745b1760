package stage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"

	"github.com/mcbuild/mcbuild/internal/formats"
)

// Early compresses in a child process (this binary, re-executed) at the
// lowest CPU priority: inside one Go process the build's goroutines and the
// compressors share the same threads evenly, while the kernel gives a
// niced process only the time the build leaves idle.

// childCommand is the name the binary is re-executed under; the program's
// main must call reexec.Init (buildah.InitReexec does) first thing.
const childCommand = "mcbuild-compress-layer"

// childNice is the child's nice value: only idle CPU time, in effect.
const childNice = 19

func init() {
	reexec.Register(childCommand, childMain)
}

// childJob is what the parent sends on the child's stdin. The layer's tar
// is file descriptor 3; the outputs, one per format, follow from 4.
type childJob struct {
	LayerID string           `json:"layer_id"`
	DiffID  digest.Digest    `json:"diff_id"`
	Size    int64            `json:"size"`
	Formats []formats.Format `json:"formats"`
	Level   int              `json:"level"`
	Encoder Encoder          `json:"encoder"`
}

// childResult is what the child answers on stdout: one descriptor per format.
type childResult struct {
	Layers []ocispec.Descriptor `json:"layers"`
}

func childMain() {
	if err := runChild(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild(in io.Reader, out io.Writer) error {
	renice(childNice)
	var job childJob
	if err := json.NewDecoder(in).Decode(&job); err != nil {
		return fmt.Errorf("reading the job: %w", err)
	}
	tar := os.NewFile(3, "layer.tar")
	cs := Settings{Level: job.Level, Encoder: job.Encoder, outFile: func(i int) (*os.File, error) {
		return os.NewFile(uintptr(4+i), "layer."+strconv.Itoa(i)), nil
	}}
	layer := Layer{ID: job.LayerID, DiffID: job.DiffID, Size: job.Size}
	staged, err := compressStream(context.Background(), tar, layer, job.Formats, cs)
	if err != nil {
		return err
	}
	var res childResult
	for _, b := range staged {
		res.Layers = append(res.Layers, b.Desc)
	}
	return json.NewEncoder(out).Encode(res)
}

// renice sets every thread of this process to nice n and the SCHED_IDLE
// policy (on Linux both are per thread; threads started later inherit
// their creator's).
func renice(n int) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, n)
		return
	}
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, n)
			// SCHED_IDLE (kernel >= 2.6.23) runs the thread only when a
			// core has nothing else to run, and never preempts the build's
			// threads when they wake; a kernel or seccomp profile refusing
			// it leaves nice n.
			_ = unix.SchedSetAttr(tid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0)
		}
	}
}

// compressInChild compresses the tar in file tar (positioned at its start)
// in the formats fs, in a niced child process, into new staging files.
func compressInChild(ctx context.Context, tar *os.File, l Layer, fs []formats.Format, cs Settings) (staged []*Blob, err error) {
	outs := make([]*os.File, 0, len(fs))
	defer func() {
		if err != nil {
			for _, f := range outs {
				f.Close()
			}
		}
	}()
	for range fs {
		f, err := stagingFile(cs.TmpDir, "mcbuild-layer-*")
		if err != nil {
			return nil, err
		}
		outs = append(outs, f)
	}
	job, err := json.Marshal(childJob{LayerID: l.ID, DiffID: l.DiffID, Size: l.Size, Formats: fs, Level: cs.Level, Encoder: cs.Encoder})
	if err != nil {
		return nil, err
	}
	cmd := reexec.CommandContext(ctx, childCommand)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(job), &stdout, &stderr
	cmd.ExtraFiles = append([]*os.File{tar}, outs...)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("compressing layer %s in a child process: %w: %s", l, err, bytes.TrimSpace(stderr.Bytes()))
	}
	var res childResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || len(res.Layers) != len(fs) {
		return nil, fmt.Errorf("compressing layer %s in a child process: unreadable answer %q (%v)", l, stdout.Bytes(), err)
	}
	for i, d := range res.Layers {
		staged = append(staged, &Blob{File: outs[i], Desc: d})
	}
	return staged, nil
}
