package publish

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"

	"github.com/mcbuild/mcbuild/internal/formats"
)

// layerTar writes a small tar to an unlinked file and returns it (at its
// start) with its digest and size.
func layerTar(t *testing.T) (*os.File, digest.Digest, int64) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := range 20 {
		body := strings.Repeat(fmt.Sprintf("line %d of a text file\n", i), 500*(i+1))
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d/f%d.txt", i), Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := stagingFile(t.TempDir(), "tar-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	return f, digest.FromBytes(buf.Bytes()), int64(buf.Len())
}

// TestCompressInChild: the re-executed child writes what this process
// would, and reports a damaged input as such.
func TestCompressInChild(t *testing.T) {
	ctx := context.Background()
	fs := []formats.Format{formats.Gzip, formats.ZstdChunked}
	cs := compressSettings{level: DefaultZstdLevel, tmpDir: t.TempDir()}
	f, d, size := layerTar(t)
	l := sourceLayer{id: "layer1", diffID: d, size: size}

	inChild, err := compressInChild(ctx, f, l, fs, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStaged(inChild)
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	here, err := compressStream(ctx, f, l, fs, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStaged(here)
	for i := range fs {
		if !reflect.DeepEqual(inChild[i].desc, here[i].desc) {
			t.Errorf("%s: child wrote %+v, this process %+v", fs[i], inChild[i].desc, here[i].desc)
		}
		st, err := inChild[i].file.Stat()
		if err != nil || st.Size() != inChild[i].desc.Size {
			t.Errorf("%s: the child's file holds %v bytes (%v), its descriptor says %d", fs[i], st.Size(), err, inChild[i].desc.Size)
		}
	}

	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	bad := l
	bad.diffID = digest.FromString("something else")
	if _, err := compressInChild(ctx, f, bad, fs, cs); err == nil || !strings.Contains(err.Error(), "the store is damaged") {
		t.Errorf("child on a tar that does not match its diff ID: err = %v", err)
	}
}

// TestEarlyTakeSettings: a layer compressed early is only used by a publish
// with the same formats, level and encoder.
func TestEarlyTakeSettings(t *testing.T) {
	fs := []formats.Format{formats.Gzip, formats.ZstdChunked}
	cs := compressSettings{level: 3, encoder: EncoderParallel}
	l := sourceLayer{id: "l", diffID: digest.FromString("l")}
	for _, tc := range []struct {
		name string
		fs   []formats.Format
		cs   compressSettings
		want bool
	}{
		{"same", fs, cs, true},
		{"other level", fs, compressSettings{level: 5, encoder: EncoderParallel}, false},
		{"other encoder", fs, compressSettings{level: 3, encoder: EncoderUpstream}, false},
		{"other formats", fs[:1], cs, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			close(done)
			job := &earlyJob{layer: l, done: done, staged: []*stagedBlob{{}, {}}}
			e := &Early{fs: fs, cs: cs, jobs: map[digest.Digest]*earlyJob{l.diffID: job}}
			got, _, err := e.take(context.Background(), l, tc.fs, tc.cs)
			if err != nil || (got != nil) != tc.want {
				t.Errorf("take = %v, %v; want a result: %v", got, err, tc.want)
			}
		})
	}
}

// reniceReport is a re-executed test child: it lowers its priority as the
// compressing child does, starts more threads, and prints the nice value
// and scheduling policy of each of its threads.
const reniceReport = "mcbuild-test-renice-report"

func init() {
	reexec.Register(reniceReport, func() {
		renice(childNice)
		var wg sync.WaitGroup
		release := make(chan struct{})
		for range 4 { // threads started after renice must inherit it
			wg.Add(1)
			go func() {
				runtime.LockOSThread()
				wg.Done()
				<-release
			}()
		}
		wg.Wait()
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, t := range tasks {
			stat, err := os.ReadFile("/proc/self/task/" + t.Name() + "/stat")
			if err != nil {
				continue
			}
			// Fields after the command (which is in parentheses): nice is the
			// 19th field of the line, policy the 41st.
			f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
			fmt.Printf("%s nice=%s policy=%s\n", t.Name(), f[16], f[38])
		}
		close(release)
		os.Exit(0)
	})
}

// TestRenice: every thread of the compressing child, including those
// started later, runs at nice 19 under SCHED_IDLE (policy 5).
func TestRenice(t *testing.T) {
	out, err := reexec.Command(reniceReport).Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 5 {
		t.Fatalf("the child reported %d threads, want at least 5:\n%s", len(lines), out)
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, fmt.Sprintf(" nice=%d policy=%d", childNice, unix.SCHED_IDLE)) {
			t.Errorf("thread %q, want nice %d and policy SCHED_IDLE (%d)", l, childNice, unix.SCHED_IDLE)
		}
	}
}

// TestEarlyQueuedTarBound: Early holds at most maxQueuedBytes of commit
// tars waiting for its worker; the others are left where they are.
func TestEarlyQueuedTarBound(t *testing.T) {
	dir := t.TempDir()
	var names []string
	for i := range 3 {
		body := bytes.Repeat([]byte{byte('a' + i)}, 60)
		d := digest.FromBytes(body)
		p := filepath.Join(dir, "buildah123", d.String())
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		names = append(names, d.String())
	}
	// A file that is not named by a digest is not a commit tar.
	if err := os.WriteFile(filepath.Join(dir, "buildah123", "sha256:layer"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &Early{buildTmpDir: dir, seenTars: map[string]bool{}, maxQueuedBytes: 130,
		jobs: map[digest.Digest]*earlyJob{}, wake: make(chan struct{}, 1)}
	defer func() {
		for _, j := range e.jobs {
			j.discard()
		}
	}()
	e.queueCommitTars()
	if len(e.pending) != 2 {
		t.Fatalf("%d tars queued, want 2 (120 of at most 130 bytes)", len(e.pending))
	}
	for _, j := range e.pending {
		if j.tar == nil || !slices.Contains(names, j.layer.diffID.String()) || j.layer.size != 60 {
			t.Errorf("queued %+v", j.layer)
		}
	}
	e.pending = e.pending[1:] // the worker took one
	e.queueCommitTars()
	if len(e.pending) != 1 {
		t.Errorf("%d tars queued after a second look, want 1: a tar not taken the first time stays with storage", len(e.pending))
	}
}

// TestEarlyStagedBound: once the compressed layers Early holds for Publish
// reach its limit, it compresses no more (Publish does the rest); a layer
// Publish takes no longer counts.
func TestEarlyStagedBound(t *testing.T) {
	dir := t.TempDir()
	fs := []formats.Format{formats.Gzip}
	e := &Early{buildTmpDir: dir, fs: fs, cs: compressSettings{level: DefaultZstdLevel, tmpDir: t.TempDir()},
		seenTars: map[string]bool{}, maxQueuedBytes: maxQueuedTarBytes, maxStaged: 1,
		jobs: map[digest.Digest]*earlyJob{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), watched: make(chan struct{})}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	close(e.watched) // no watcher: the test looks for the tars itself
	e.done.Add(1)
	go e.work()
	defer e.Close()

	var diffIDs []digest.Digest
	for i := range 2 {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		body := strings.Repeat(fmt.Sprintf("layer %d\n", i), 1000)
		if err := tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil || tw.Close() != nil {
			t.Fatal(err)
		}
		d := digest.FromBytes(buf.Bytes())
		p := filepath.Join(dir, "buildah1", d.String())
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		diffIDs = append(diffIDs, d)
	}
	e.queueCommitTars()
	e.mu.Lock()
	jobs := []*earlyJob{e.jobs[diffIDs[0]], e.jobs[diffIDs[1]]}
	e.mu.Unlock()
	if jobs[0] == nil || jobs[1] == nil {
		t.Fatalf("queued %d tars, want 2", len(e.jobs))
	}
	<-jobs[0].done
	<-jobs[1].done
	first, second := jobs[0], jobs[1]
	if first.err != nil { // the worker took them in either order
		first, second = second, first
	}
	if first.err != nil || len(first.staged) != 1 {
		t.Fatalf("a layer: %v, %d staged; want one compressed", first.err, len(first.staged))
	}
	if !errors.Is(second.err, errEarlyFull) {
		t.Errorf("the other layer: err = %v, want it left to Publish (%v)", second.err, errEarlyFull)
	}
	staged, fromCommit, err := e.take(context.Background(), first.layer, fs, e.cs)
	if err != nil || len(staged) != 1 || !fromCommit {
		t.Fatalf("take = %d staged, fromCommit %v, %v", len(staged), fromCommit, err)
	}
	closeStaged(staged)
	if got, _, _ := e.take(context.Background(), second.layer, fs, e.cs); got != nil {
		t.Error("take returned the layer Early skipped")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.staged != 0 {
		t.Errorf("Early still counts %d staged bytes after Publish took them", e.staged)
	}
}

// TestCompressStreamErrors: a tar a compressor cannot take fails naming the
// layer and the format; a tar that does not match its diff ID is reported
// as that, even when a compressor choked on it first (the mismatch is the
// cause), and the tar is read to its end to know.
func TestCompressStreamErrors(t *testing.T) {
	ctx := context.Background()
	fs := []formats.Format{formats.Gzip, formats.ZstdChunked}
	cs := compressSettings{level: DefaultZstdLevel, tmpDir: t.TempDir()}
	f, d, size := layerTar(t)
	good, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	// a tar cut inside a file's payload, then 1 MiB that is not a tar
	broken := append(bytes.Clone(good[:20000]), bytes.Repeat([]byte("x"), 1<<20)...)
	for _, tc := range []struct {
		name   string
		in     []byte
		diffID digest.Digest
		size   int64
		want   []string
	}{
		{"fine", good, d, size, nil},
		{"compressor fails", broken, digest.FromBytes(broken), int64(len(broken)),
			[]string{"layer layer1: compressing as zstd:chunked"}},
		{"diff ID mismatch first", broken, d, -1,
			[]string{"layer layer1 in storage reads as " + digest.FromBytes(broken).String(), fmt.Sprintf("(%d bytes)", len(broken)), "the store is damaged", "sparse files"}},
		{"size mismatch", good, d, size + 1,
			[]string{fmt.Sprintf("reads as %d bytes, storage recorded %d", size, size+1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := sourceLayer{id: "layer1", diffID: tc.diffID, size: tc.size}
			staged, err := compressStream(ctx, bytes.NewReader(tc.in), l, fs, cs)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				closeStaged(staged)
				return
			}
			if err == nil {
				closeStaged(staged)
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v\nwant it to contain %q", err, w)
				}
			}
			if tc.name == "diff ID mismatch first" && strings.Contains(err.Error(), "compressing") {
				t.Errorf("err = %v: the compressor's failure hides the mismatch", err)
			}
		})
	}
}
