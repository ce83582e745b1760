package stage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"go.podman.io/storage"

	"github.com/mcbuild/mcbuild/internal/formats"
)

// earlyPollInterval is how often Early looks for layers the build committed.
const earlyPollInterval = 100 * time.Millisecond

// commitTarPollInterval is how often Early looks for the layer tars buildah
// writes while committing: each exists only for the length of its commit.
const commitTarPollInterval = 20 * time.Millisecond

// commitTarGlob matches, under the build's TMPDIR, the tar buildah writes of
// the layer it is committing (buildah 1.45, containerImageRef.NewImageSource:
// buildah<random>/layer, renamed to its sha256 digest once complete, read by
// the copy into storage, then removed). The name is the digest of the
// content, so it can be checked, and Early only ever uses such a file for an
// image layer with that diff ID. Should a later buildah write them elsewhere,
// Early reads every layer back from storage, as it does for pulled layers.
const commitTarGlob = "buildah*/sha256:*"

// maxQueuedTarBytes bounds the commit tars Early holds open while they wait
// for the worker (buildah has removed their names, so the disk space is
// Early's): a build committing faster than the idle CPU compresses leaves
// the rest to the stager rather than filling $TMPDIR.
const maxQueuedTarBytes = 2 << 30

// maxEarlyStagedBytes bounds the compressed layers Early keeps for the stager:
// layers of other stages are compressed in vain and stay on disk until
// the stager drops them, so past this Early stops and leaves the rest to the stager.
const maxEarlyStagedBytes = 4 << 30

// errEarlyFull marks a job Early skipped at maxEarlyStagedBytes.
var errEarlyFull = errors.New("early compression stopped: its staged layers reached the limit")

// Early compresses layers while the build that makes them is still running.
// A build commits one layer per instruction and often leaves cores idle
// (it waits on many small file system calls); Early compresses each layer
// committed, in every format, in a child process at the lowest CPU priority
// (child.go), so the publish that follows finds most layers ready and only
// uploads them. On the 2-vCPU reference machine the whole run took
// 0.87-0.98x the time; mcbuild still leaves it off by default, because
// under a CPU quota the idle cores' time is the build's too.
//
// Given the build's TMPDIR, it opens the tar buildah writes of each layer it
// commits (commitTarGlob) the moment it appears, and compresses that: the
// layer is read once more by nobody, and compression starts while buildah
// is still copying the tar into storage. Otherwise (a layer pulled for FROM,
// or a commit too quick to see) it copies the layer's tar out of storage to
// a temporary file, holding storage's lock (which blocks the build) only for
// the copy. Layers that do not end up in the image (those of other stages)
// are compressed in vain; the stager (Stager.Load) drops what its image does not use.
// Nothing is pushed before the publish runs.
//
// A nil *Early is valid and does nothing.
type Early struct {
	store       storage.Store
	buildTmpDir string // where buildah writes the tars of the layers it commits; "" if unknown
	fs          []formats.Format
	cs          Settings
	ctx         context.Context
	cancel      context.CancelFunc
	done        sync.WaitGroup
	stop        chan struct{} // closed by StopWatching
	watched     chan struct{} // closed when the watcher has returned
	wake        chan struct{}

	seenTars       map[string]bool // commit tars looked at (only the watcher uses it)
	maxQueuedBytes int64           // maxQueuedTarBytes but in tests
	maxStaged      int64           // maxEarlyStagedBytes but in tests

	mu      sync.Mutex
	known   map[string]bool             // layer IDs present at the start or queued since
	pending []*earlyJob                 // waiting for the worker, in commit order
	jobs    map[digest.Digest]*earlyJob // by diff ID
	busy    []interval                  // when the worker was compressing
	staged  int64                       // bytes of compressed layers not yet taken or dropped
	stopped time.Time                   // when StopWatching was called (the build ended)
}

// earlyJob is one layer compressed (or to be compressed) early.
type earlyJob struct {
	layer  Layer
	tar    *os.File // the tar buildah committed, open; nil: read it from storage
	cancel context.CancelFunc
	done   chan struct{} // closed when staged/err are final
	staged []*Blob
	err    error
}

// StartEarly starts watching store for layers committed from now on and
// compressing them in the formats fs with opts' settings. buildTmpDir is the
// TMPDIR the build runs with (build.Options.TmpDir), where Early picks up the
// tars of the layers buildah commits; "" reads every layer back from
// storage. Call StopWatching when the build is done, and Close after the publish.
func StartEarly(ctx context.Context, store storage.Store, fs []formats.Format, s Settings, buildTmpDir string) (*Early, error) {
	layers, err := store.Layers()
	if err != nil {
		return nil, fmt.Errorf("listing storage layers: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	e := &Early{
		store: store, buildTmpDir: buildTmpDir, fs: slices.Clone(fs), cs: s.withDefaults(), ctx: ctx, cancel: cancel,
		stop: make(chan struct{}), watched: make(chan struct{}), wake: make(chan struct{}, 1),
		seenTars: map[string]bool{}, maxQueuedBytes: maxQueuedTarBytes, maxStaged: maxEarlyStagedBytes, known: map[string]bool{}, jobs: map[digest.Digest]*earlyJob{},
	}
	for _, l := range layers {
		e.known[l.ID] = true
	}
	e.done.Add(1)
	go e.watch()
	go e.work()
	return e, nil
}

// watch queues the tar of every layer buildah commits and every new image
// layer in the store (one with a content digest: complete, and not a
// container's read-write layer) whose tar it did not see, until StopWatching.
func (e *Early) watch() {
	defer close(e.watched)
	t := time.NewTicker(earlyPollInterval)
	defer t.Stop()
	var tarTick <-chan time.Time
	if e.buildTmpDir != "" {
		tt := time.NewTicker(commitTarPollInterval)
		defer tt.Stop()
		tarTick = tt.C
	}
	for {
		last := false
		select {
		case <-e.stop:
			last = true // one more look: the build's last layer may be minutes old or just committed
		case <-e.ctx.Done():
			return
		case <-tarTick:
			e.queueCommitTars()
			continue
		case <-t.C:
		}
		e.queueCommitTars() // first: a layer whose tar is still there need not be read back
		layers, err := e.store.Layers()
		if err != nil && last {
			return
		}
		if err != nil {
			continue // the next tick tries again; the stager compresses what is missed
		}
		e.mu.Lock()
		for _, l := range layers {
			if e.known[l.ID] || l.UncompressedDigest == "" {
				continue
			}
			e.known[l.ID] = true
			if e.jobs[l.UncompressedDigest] != nil {
				continue // its commit tar is queued
			}
			j := &earlyJob{
				layer: Layer{ID: l.ID, DiffID: l.UncompressedDigest, Size: l.UncompressedSize},
				done:  make(chan struct{}),
			}
			if j.layer.Size <= 0 {
				j.layer.Size = -1
			}
			e.queue(j)
		}
		e.mu.Unlock()
		if last {
			return
		}
	}
}

// queueCommitTars opens and queues the commit tars (commitTarGlob) not seen
// before. A tar removed before it could be opened, or one that would take the
// tars waiting for the worker over maxQueuedBytes, is read back from storage
// once its layer shows up there, when the worker gets to it.
func (e *Early) queueCommitTars() {
	paths, _ := filepath.Glob(filepath.Join(e.buildTmpDir, commitTarGlob))
	for _, p := range paths {
		if e.seenTars[p] {
			continue
		}
		e.seenTars[p] = true
		d, err := digest.Parse(filepath.Base(p))
		if err != nil {
			continue
		}
		f, err := os.Open(p) // kept open: buildah removes the name after its commit
		if err != nil {
			continue
		}
		fi, err := f.Stat()
		e.mu.Lock()
		if err != nil || e.jobs[d] != nil || e.queuedTarBytes()+fi.Size() > e.maxQueuedBytes {
			e.mu.Unlock()
			f.Close()
			continue
		}
		e.queue(&earlyJob{layer: Layer{DiffID: d, Size: fi.Size()}, tar: f, done: make(chan struct{})})
		e.mu.Unlock()
	}
}

// queuedTarBytes is the size of the commit tars waiting for the worker.
// Called with e.mu held.
func (e *Early) queuedTarBytes() int64 {
	var n int64
	for _, j := range e.pending {
		if j.tar != nil {
			n += j.layer.Size
		}
	}
	return n
}

// queue adds j for the worker. Called with e.mu held.
func (e *Early) queue(j *earlyJob) {
	e.pending = append(e.pending, j)
	e.jobs[j.layer.DiffID] = j
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// work compresses queued layers one at a time, in commit order.
func (e *Early) work() {
	defer e.done.Done()
	for {
		j, jctx := e.next()
		if j == nil {
			select {
			case <-e.wake:
				continue
			case <-e.ctx.Done():
				return
			}
		}
		if jctx == nil {
			continue // skipped: the staged limit is reached
		}
		start := time.Now()
		staged, err := e.compress(jctx, j)
		j.cancel() // done: nothing left to stop
		e.mu.Lock()
		e.busy = append(e.busy, interval{start, time.Now()})
		j.staged, j.err = staged, err
		e.staged += stagedSize(staged)
		close(j.done)
		e.mu.Unlock()
	}
}

// next takes the first pending job, with the context it runs under (keep
// cancels it when the image turns out not to need the layer). At the staged
// limit it ends the job at once (errEarlyFull) and returns no context.
func (e *Early) next() (*earlyJob, context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.pending) == 0 {
		return nil, nil
	}
	var j *earlyJob
	j, e.pending = e.pending[0], e.pending[1:]
	if e.staged >= e.maxStaged {
		j.discard()
		j.err = errEarlyFull
		close(j.done)
		return j, nil
	}
	var jctx context.Context
	jctx, j.cancel = context.WithCancel(e.ctx)
	return j, jctx
}

// compress compresses j's commit tar, or else a copy of its layer's tar
// taken from storage (releasing the storage lock at once).
func (e *Early) compress(ctx context.Context, j *earlyJob) ([]*Blob, error) {
	l, tmp := j.layer, j.tar
	if tmp == nil {
		var err error
		if tmp, err = e.copyOut(l); err != nil {
			return nil, err
		}
	}
	defer tmp.Close()
	// In a niced child process: the build keeps priority on every core.
	if staged, err := compressInChild(ctx, tmp, l, e.fs, e.cs); err == nil || ctx.Err() != nil {
		return staged, err
	}
	// The child failed (no /proc/self/exe, say): one format after the other,
	// each on one core, in this process.
	staged := make([]*Blob, 0, len(e.fs))
	cs := e.cs
	cs.oneCore = true
	for _, f := range e.fs {
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			CloseAll(staged)
			return nil, err
		}
		one, err := compressStream(ctx, tmp, l, []formats.Format{f}, cs)
		if err != nil {
			CloseAll(staged)
			return nil, err
		}
		staged = append(staged, one...)
	}
	return staged, nil
}

// copyOut copies layer l's tar from storage to a temporary file, positioned
// at its start.
func (e *Early) copyOut(l Layer) (*os.File, error) {
	tmp, err := stagingFile(e.cs.TmpDir, "mcbuild-tar-*")
	if err != nil {
		return nil, err
	}
	rc, err := readLayer(e.store, l.ID)
	if err != nil {
		tmp.Close()
		return nil, err
	}
	_, err = io.Copy(tmp, rc)
	rc.Close()
	if err != nil {
		tmp.Close()
		return nil, fmt.Errorf("reading layer %s from storage: %w", l.ID, err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		tmp.Close()
		return nil, err
	}
	return tmp, nil
}

// StopWatching stops looking for new layers (the build is over), after one
// last look that queues the layers the build committed since the previous
// one, and returns once no more will be queued; queued layers are still
// compressed.
func (e *Early) StopWatching() {
	if e == nil {
		return
	}
	select {
	case <-e.stop:
	default:
		e.mu.Lock()
		e.stopped = time.Now()
		e.mu.Unlock()
		close(e.stop)
	}
	<-e.watched
}

// keep drops every queued or compressed layer whose diff ID is not in diffIDs.
func (e *Early) keep(diffIDs []digest.Digest) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for d, j := range e.jobs {
		if slices.Contains(diffIDs, d) {
			continue
		}
		delete(e.jobs, d)
		if i := slices.Index(e.pending, j); i >= 0 {
			e.pending = slices.Delete(e.pending, i, i+1)
			j.discard()
			continue
		}
		if j.cancel != nil { // nil: skipped at the staged limit
			j.cancel()
		}
		go func() { // under way or done: its files go once it ends
			<-j.done
			e.release(j.staged)
		}()
	}
}

// discard closes what a job that never started holds.
func (j *earlyJob) discard() {
	if j.tar != nil {
		j.tar.Close()
	}
}

// Stage is Early's side of Source: layer l compressed in Early's formats
// and settings if the worker has it or is working on it (waiting for it
// then), and nil if the stager should compress it itself (never queued,
// still queued, failed early, or made for other formats or settings). Each
// blob's Origin says whether it came from buildah's commit tar.
func (e *Early) Stage(ctx context.Context, l Layer, fs []formats.Format, s Settings) ([]*Blob, error) {
	if e == nil || !slices.Equal(e.fs, fs) || e.cs.Level != s.Level || e.cs.Encoder != s.Encoder {
		return nil, nil
	}
	e.mu.Lock()
	j := e.jobs[l.DiffID]
	if j != nil {
		delete(e.jobs, l.DiffID)
		if i := slices.Index(e.pending, j); i >= 0 { // not started: quicker to do it now
			e.pending = slices.Delete(e.pending, i, i+1)
			j.discard()
			j = nil
		}
	}
	e.mu.Unlock()
	if j == nil {
		return nil, nil
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		go func() { <-j.done; e.release(j.staged) }()
		return nil, ctx.Err()
	}
	if j.err != nil {
		e.release(j.staged)
		return nil, nil // compressed again by the stager, which reports any error
	}
	e.mu.Lock()
	e.staged -= stagedSize(j.staged) // the stager's now
	e.mu.Unlock()
	origin := OriginEarlyStorage
	if j.tar != nil {
		origin = OriginCommitTar
	}
	for _, b := range j.staged {
		b.Origin = origin
	}
	return j.staged, nil
}

// release closes staged, compressed by the worker and no longer wanted.
func (e *Early) release(staged []*Blob) {
	e.mu.Lock()
	e.staged -= stagedSize(staged)
	e.mu.Unlock()
	CloseAll(staged)
}

func stagedSize(staged []*Blob) int64 {
	var n int64
	for _, b := range staged {
		n += b.Desc.Size
	}
	return n
}

// Busy is the wall time spent compressing while the build ran (until
// StopWatching): the compression that overlapped the build. What the worker
// did after that is part of the publish.
func (e *Early) Busy() time.Duration {
	if e == nil {
		return 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var d time.Duration
	for _, iv := range e.busy {
		end := iv.end
		if !e.stopped.IsZero() && e.stopped.Before(end) {
			end = e.stopped
		}
		d += max(end.Sub(iv.start), 0)
	}
	return d
}

type interval struct{ start, end time.Time }

// Close stops Early and discards every layer the stager did not take.
func (e *Early) Close() {
	if e == nil {
		return
	}
	e.StopWatching()
	e.cancel()
	e.done.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	for d, j := range e.jobs {
		delete(e.jobs, d)
		select {
		case <-j.done:
			CloseAll(j.staged)
		default: // never started
			j.discard()
		}
	}
	e.pending = nil
}
