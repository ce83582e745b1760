package stage

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
	"time"

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
	cs := Settings{Level: DefaultZstdLevel, TmpDir: t.TempDir()}
	f, d, size := layerTar(t)
	l := Layer{ID: "layer1", DiffID: d, Size: size}

	inChild, err := compressInChild(ctx, f, l, fs, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(inChild)
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	here, err := compressStream(ctx, f, l, fs, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(here)
	for i := range fs {
		if !reflect.DeepEqual(inChild[i].Desc, here[i].Desc) {
			t.Errorf("%s: child wrote %+v, this process %+v", fs[i], inChild[i].Desc, here[i].Desc)
		}
		st, err := inChild[i].File.Stat()
		if err != nil || st.Size() != inChild[i].Desc.Size {
			t.Errorf("%s: the child's file holds %v bytes (%v), its descriptor says %d", fs[i], st.Size(), err, inChild[i].Desc.Size)
		}
	}

	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	bad := l
	bad.DiffID = digest.FromString("something else")
	if _, err := compressInChild(ctx, f, bad, fs, cs); err == nil || !strings.Contains(err.Error(), "the store is damaged") {
		t.Errorf("child on a tar that does not match its diff ID: err = %v", err)
	}
}

// TestEarlyStageSettings: a layer compressed early is only used by a stager
// with the same formats, level and encoder.
func TestEarlyStageSettings(t *testing.T) {
	fs := []formats.Format{formats.Gzip, formats.ZstdChunked}
	cs := Settings{Level: 3, Encoder: EncoderParallel}
	l := Layer{ID: "l", DiffID: digest.FromString("l")}
	for _, tc := range []struct {
		name string
		fs   []formats.Format
		cs   Settings
		want bool
	}{
		{"same", fs, cs, true},
		{"other level", fs, Settings{Level: 5, Encoder: EncoderParallel}, false},
		{"other encoder", fs, Settings{Level: 3, Encoder: EncoderUpstream}, false},
		{"other formats", fs[:1], cs, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			close(done)
			job := &earlyJob{layer: l, done: done, staged: []*Blob{{}, {}}}
			e := &Early{fs: fs, cs: cs, jobs: map[digest.Digest]*earlyJob{l.DiffID: job}}
			got, err := e.Stage(context.Background(), l, tc.fs, tc.cs)
			if err != nil || (got != nil) != tc.want {
				t.Errorf("Stage = %v, %v; want a result: %v", got, err, tc.want)
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
		if j.tar == nil || !slices.Contains(names, j.layer.DiffID.String()) || j.layer.Size != 60 {
			t.Errorf("queued %+v", j.layer)
		}
	}
	e.pending = e.pending[1:] // the worker took one
	e.queueCommitTars()
	if len(e.pending) != 1 {
		t.Errorf("%d tars queued after a second look, want 1: a tar not taken the first time stays with storage", len(e.pending))
	}
}

// TestEarlyStagedBound: once the compressed layers Early holds for the stager
// reach its limit, it compresses no more (the stager does the rest); a layer
// the stager takes no longer counts.
func TestEarlyStagedBound(t *testing.T) {
	dir := t.TempDir()
	fs := []formats.Format{formats.Gzip}
	e := &Early{buildTmpDir: dir, fs: fs, cs: Settings{Level: DefaultZstdLevel, TmpDir: t.TempDir()},
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
		t.Errorf("the other layer: err = %v, want it left to the stager (%v)", second.err, errEarlyFull)
	}
	staged, err := e.Stage(context.Background(), first.layer, fs, e.cs)
	if err != nil || len(staged) != 1 || staged[0].Origin != OriginCommitTar {
		t.Fatalf("Stage = %d staged (%v), want 1 from the commit tar", len(staged), err)
	}
	CloseAll(staged)
	if got, _ := e.Stage(context.Background(), second.layer, fs, e.cs); got != nil {
		t.Error("Stage returned the layer Early skipped")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.staged != 0 {
		t.Errorf("Early still counts %d staged bytes after the stager took them", e.staged)
	}
}

// TestCompressStreamErrors: a tar a compressor cannot take fails naming the
// layer and the format; a tar that does not match its diff ID is reported
// as that, even when a compressor choked on it first (the mismatch is the
// cause), and the tar is read to its end to know.
func TestCompressStreamErrors(t *testing.T) {
	ctx := context.Background()
	fs := []formats.Format{formats.Gzip, formats.ZstdChunked}
	cs := Settings{Level: DefaultZstdLevel, TmpDir: t.TempDir()}
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
			l := Layer{ID: "layer1", DiffID: tc.diffID, Size: tc.size}
			staged, err := compressStream(ctx, bytes.NewReader(tc.in), l, fs, cs)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				CloseAll(staged)
				return
			}
			if err == nil {
				CloseAll(staged)
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

// TestCompressStreamNoLeak: when staging a later format cannot start (its
// file cannot be created), the compressors already started end with it: no
// goroutine outlives the failed layer.
func TestCompressStreamNoLeak(t *testing.T) {
	f, d, size := layerTar(t)
	l := Layer{ID: "layer1", DiffID: d, Size: size}
	fs := []formats.Format{formats.ZstdChunked, formats.Zstd, formats.Gzip}
	before := runtime.NumGoroutine()
	for range 20 {
		cs := Settings{Level: DefaultZstdLevel, Encoder: EncoderParallel, outFile: func(i int) (*os.File, error) {
			if i == len(fs)-1 {
				return nil, errors.New("no room for the last format")
			}
			return stagingFile(t.TempDir(), "out-*")
		}}
		if _, err := compressStream(context.Background(), f, l, fs, cs); err == nil || !strings.Contains(err.Error(), "no room") {
			t.Fatalf("err = %v, want the staging failure", err)
		}
	}
	// Goroutines that are ending may take a moment to be gone.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after 20 failed layers, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestStagerSources: a source's blobs are used for the formats it has and
// the stager compresses only the rest from storage; the layer's own
// annotations are merged into every blob.
func TestStagerSources(t *testing.T) {
	f, d, size := layerTar(t)
	l := Layer{ID: "layer1", DiffID: d, Size: size, Annotations: map[string]string{"org.example": "kept"}}
	fs := []formats.Format{formats.Gzip, formats.ZstdChunked}
	s := Settings{TmpDir: t.TempDir()}.withDefaults()
	want, err := compressStream(context.Background(), f, l, fs, s)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(want)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{blob: &Blob{File: f, Desc: want[0].Desc, Origin: "fake"}, format: formats.Gzip}
	st := NewStager(nil, fs, s, src)
	st.read = func(Layer) (io.ReadCloser, error) { return io.NopCloser(f), nil }
	got, err := st.Stage(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Origin != "fake" || got[1].Origin != OriginStorage {
		t.Errorf("origins %q, %q; want fake, %q", got[0].Origin, got[1].Origin, OriginStorage)
	}
	if !reflect.DeepEqual(src.asked, []formats.Format{formats.Gzip, formats.ZstdChunked}) {
		t.Errorf("the source was asked for %v", src.asked)
	}
	if got[1].Desc.Digest != want[1].Desc.Digest {
		t.Errorf("zstd:chunked compressed by the stager: %s, want %s", got[1].Desc.Digest, want[1].Desc.Digest)
	}
	for i, b := range got {
		if b.Desc.Annotations["org.example"] != "kept" {
			t.Errorf("%s: annotations %v lack the layer's own", fs[i], b.Desc.Annotations)
		}
	}
}

// fakeSource has one format of every layer.
type fakeSource struct {
	blob   *Blob
	format formats.Format
	asked  []formats.Format
}

func (s *fakeSource) Stage(_ context.Context, _ Layer, fs []formats.Format, _ Settings) ([]*Blob, error) {
	s.asked = append(s.asked, fs...)
	out := make([]*Blob, len(fs))
	for i, f := range fs {
		if f == s.format {
			out[i] = s.blob
		}
	}
	return out, nil
}
