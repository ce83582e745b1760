// Package floors holds the layer encoders the benchmark measures alone, on the
// workload's layer tars: what a push can at best achieve per format on these
// cores. `mcbench floor` runs one in a child process (so its CPU and memory
// are measured); floors_test.go has the same encoders as Go benchmarks.
package floors

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"go.podman.io/storage/pkg/chunked/compressor"

	"github.com/mcbuild/mcbuild/internal/stage"
	"github.com/mcbuild/mcbuild/pkg/zstdchunked"
)

// NewFunc starts compressing one layer into w; metadata receives what a
// zstd:chunked encoder would put into the layer's annotations.
type NewFunc func(w io.Writer, metadata map[string]string) (io.WriteCloser, error)

// Encoder is one named encoder.
type Encoder struct {
	Name string
	Doc  string
	New  NewFunc
	// Env is added to the environment of the process that runs it.
	Env []string
}

func chunked(level int) NewFunc {
	return func(w io.Writer, m map[string]string) (io.WriteCloser, error) {
		return compressor.ZstdCompressor(w, m, &level)
	}
}

// Ours is mcbuild's zstd:chunked encoder (pkg/zstdchunked, every core) at
// its default level (stage.DefaultZstdLevel): what `mcbuild build`'s
// default stream publisher pushes with. It is written to produce byte for
// byte containers/storage's output at the same level (pkg/zstdchunked's tests
// compare them), so the size ratio is 1 unless that breaks.
var Ours = Encoder{
	Name: "mcbuild-zstd-chunked",
	Doc:  fmt.Sprintf("mcbuild's zstd:chunked encoder (pkg/zstdchunked, all cores), level %d", stage.DefaultZstdLevel),
	New: func(w io.Writer, m map[string]string) (io.WriteCloser, error) {
		return zstdchunked.NewWriter(w, m, stage.DefaultZstdLevel)
	},
}

// OursOneCPU is Ours limited to one core (GOMAXPROCS=1, so one worker):
// its rate per core, against which Ours' shows how it scales.
var OursOneCPU = Encoder{
	Name: Ours.Name + "-1cpu",
	Doc:  Ours.Doc + ", limited to one core (GOMAXPROCS=1)",
	New:  Ours.New,
	Env:  []string{"GOMAXPROCS=1"},
}

// UpstreamChunkedName is the upstream encoder at Ours' level, for the size target.
var UpstreamChunkedName = fmt.Sprintf("storage-zstd-chunked-%d", stage.DefaultZstdLevel)

// All lists every encoder, by name.
func All() map[string]Encoder {
	encs := []Encoder{
		{Name: "pgzip", Doc: "github.com/klauspost/pgzip at its default level and blocks (containers/image's gzip)", New: func(w io.Writer, _ map[string]string) (io.WriteCloser, error) {
			return pgzip.NewWriter(w), nil
		}},
		{Name: "zstd-3", Doc: "github.com/klauspost/compress/zstd at level 3 (containers/image's plain zstd default)", New: func(w io.Writer, _ map[string]string) (io.WriteCloser, error) {
			return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(3)))
		}},
		{Name: UpstreamChunkedName, Doc: fmt.Sprintf("go.podman.io/storage/pkg/chunked/compressor.ZstdCompressor at level %d", stage.DefaultZstdLevel), New: chunked(stage.DefaultZstdLevel)},
		{Name: "storage-zstd-chunked-10", Doc: "go.podman.io/storage/pkg/chunked/compressor.ZstdCompressor at level 10 (its default)", New: chunked(10)},
		Ours,
		OursOneCPU,
	}
	m := map[string]Encoder{}
	for _, e := range encs {
		m[e.Name] = e
	}
	return m
}

// Names lists the encoders in a stable order.
func Names() []string {
	var ns []string
	for n := range All() {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// Get returns the encoder called name.
func Get(name string) (Encoder, error) {
	e, ok := All()[name]
	if !ok {
		return Encoder{}, fmt.Errorf("encoder %q: valid encoders are %s", name, strings.Join(Names(), ", "))
	}
	return e, nil
}

// Result is one encoder over a set of tars.
type Result struct {
	Encoder  string  `json:"encoder"`
	InBytes  int64   `json:"in_bytes"`
	OutBytes int64   `json:"out_bytes"`
	Seconds  float64 `json:"seconds"`
}

// CompressFiles compresses each tar separately (one encoder per layer, as a
// push does) into a byte counter and returns the totals.
func CompressFiles(e Encoder, tars []string) (Result, error) {
	res := Result{Encoder: e.Name}
	start := time.Now()
	for _, path := range tars {
		in, out, err := compressFile(e, path)
		if err != nil {
			return res, fmt.Errorf("%s over %s: %w", e.Name, path, err)
		}
		res.InBytes += in
		res.OutBytes += out
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

func compressFile(e Encoder, path string) (int64, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var c Counter
	w, err := e.New(&c, map[string]string{})
	if err != nil {
		return 0, 0, err
	}
	in, err := io.Copy(w, f)
	if err != nil {
		return in, c.N, err
	}
	if err := w.Close(); err != nil {
		return in, c.N, err
	}
	return in, c.N, nil
}

// Counter is an io.Writer that only counts.
type Counter struct{ N int64 }

func (c *Counter) Write(p []byte) (int, error) {
	c.N += int64(len(p))
	return len(p), nil
}
