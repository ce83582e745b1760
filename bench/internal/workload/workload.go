// Package workload generates the benchmark's build context deterministically:
// a Containerfile of FROM scratch plus one COPY per layer, the files each COPY
// adds, and for every layer a tar of the same files (the encoder floors read
// those). The same spec always gives byte-identical files and tars.
package workload

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Version changes whenever generation changes; a cached workload of another
// version is regenerated.
const Version = 1

const MiB = 1 << 20

// Kind is what a layer's files hold.
type Kind string

const (
	Random Kind = "random" // incompressible bytes
	Text   Kind = "text"   // log-like lines
	Small  Kind = "small"  // many small files, mostly text, some binary
	Mixed  Kind = "mixed"  // alternating random and text files
	// Tree copies real files of this machine (Source) instead of
	// generating them; see tree.go.
	Tree Kind = "tree"
)

// Layer is one COPY instruction: Files files of FileSize bytes each (Small
// draws sizes between MinSize and MaxSize instead) under context/<Dir>,
// copied to /data/<Dir>/. A Tree layer copies Source to Dest instead (see
// tree.go).
type Layer struct {
	Dir      string `json:"dir"`
	Kind     Kind   `json:"kind"`
	Files    int    `json:"files"`
	FileSize int64  `json:"file_size,omitempty"`
	MinSize  int64  `json:"min_size,omitempty"`
	MaxSize  int64  `json:"max_size,omitempty"`
	// Tree only: the directory of this machine copied, where the COPY
	// puts it in the image, and at most how many bytes of file content
	// to take (0: all).
	Source string `json:"source,omitempty"`
	Dest   string `json:"dest,omitempty"`
	Budget int64  `json:"budget,omitempty"`
}

// dest is where the layer's COPY puts its files.
func (l Layer) dest() string {
	if l.Kind == Tree {
		return l.Dest
	}
	return "/data/" + l.Dir
}

// Spec is a whole workload.
type Spec struct {
	Name   string  `json:"name"`
	Seed   uint64  `json:"seed"`
	Layers []Layer `json:"layers"`
	// MinBytes is the least layer tar the workload must come to (Tree
	// layers depend on this machine); generation fails below it.
	MinBytes int64 `json:"min_bytes,omitempty"`
}

// Reference is the workload: 96 MiB random, 96 MiB log-like text and
// 4,000 small files, about 211 MiB of layer tar.
func Reference() Spec {
	return Spec{Name: "ref", Seed: 5, Layers: []Layer{
		{Dir: "random", Kind: Random, Files: 1, FileSize: 96 * MiB},
		{Dir: "logs", Kind: Text, Files: 8, FileSize: 12 * MiB},
		{Dir: "small", Kind: Small, Files: 4000, MinSize: 256, MaxSize: 8160},
	}}
}

// Big is Reference plus a 1 GiB layer (16 files of 64 MiB, random and text
// alternating).
func Big() Spec {
	s := Reference()
	s.Name = "big"
	s.Layers = append(s.Layers, Layer{Dir: "big", Kind: Mixed, Files: 16, FileSize: 64 * MiB})
	return s
}

// Generated describes a workload on disk.
type Generated struct {
	Spec       Spec     `json:"spec"`
	Version    int      `json:"version"`
	Dir        string   `json:"-"`
	Context    string   `json:"-"` // build context, holds the Containerfile
	Tars       []string `json:"tars"`
	TarBytes   []int64  `json:"tar_bytes"`
	TarSHA256  []string `json:"tar_sha256"`
	TotalBytes int64    `json:"total_tar_bytes"`
	// Fingerprint identifies the files Tree layers copy (paths, sizes,
	// modes, times): a change on this machine regenerates the workload.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// Containerfile is the file's path in the context.
func (g *Generated) Containerfile() string { return filepath.Join(g.Context, "Containerfile") }

// TarPaths are the absolute paths of the layer tars.
func (g *Generated) TarPaths() []string {
	out := make([]string, len(g.Tars))
	for i, t := range g.Tars {
		out[i] = filepath.Join(g.Dir, t)
	}
	return out
}

// mtime pins every file's and directory's modification time, so the layers
// buildah creates from the context are the same on every build.
var mtime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Ensure returns the workload under cacheDir/<name>, generating it unless an
// up-to-date one is already there.
func Ensure(cacheDir string, spec Spec, log io.Writer) (*Generated, error) {
	dir := filepath.Join(cacheDir, spec.Name)
	meta := filepath.Join(dir, "workload.json")
	fp, err := fingerprint(spec)
	if err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(meta); err == nil {
		var g Generated
		if json.Unmarshal(b, &g) == nil && g.Version == Version && specEqual(g.Spec, spec) && g.Fingerprint == fp {
			g.Dir, g.Context = dir, filepath.Join(dir, "context")
			return &g, nil
		}
	}
	if log != nil {
		fmt.Fprintf(log, "generating workload %q in %s\n", spec.Name, dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	g, err := Generate(dir, spec)
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return nil, err
	}
	return g, os.WriteFile(meta, append(b, '\n'), 0o644)
}

func specEqual(a, b Spec) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// Generate writes spec into dir (which must not hold an older workload):
// dir/context/Containerfile, dir/context/<layer dir>/..., dir/tars/<n>-<layer dir>.tar.
func Generate(dir string, spec Spec) (*Generated, error) {
	g := &Generated{Spec: spec, Version: Version, Dir: dir, Context: filepath.Join(dir, "context")}
	if err := os.MkdirAll(filepath.Join(dir, "tars"), 0o755); err != nil {
		return nil, err
	}
	var err error
	if g.Fingerprint, err = fingerprint(spec); err != nil {
		return nil, err
	}
	var cf strings.Builder
	cf.WriteString("# generated by bench/internal/workload; do not edit\nFROM scratch\n")
	for i, l := range spec.Layers {
		fmt.Fprintf(&cf, "COPY %s/ %s\n", l.Dir, strings.TrimSuffix(l.dest(), "/")+"/")
		name := filepath.Join("tars", fmt.Sprintf("%d-%s.tar", i+1, l.Dir))
		var n int64
		var sum string
		var err error
		if l.Kind == Tree {
			n, sum, err = writeTree(filepath.Join(g.Context, l.Dir), filepath.Join(dir, name), l)
		} else {
			n, sum, err = writeLayer(filepath.Join(g.Context, l.Dir), filepath.Join(dir, name), l, spec.Seed+uint64(i)*0x9e3779b97f4a7c15)
		}
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Dir, err)
		}
		g.Tars, g.TarBytes, g.TarSHA256 = append(g.Tars, name), append(g.TarBytes, n), append(g.TarSHA256, sum)
		g.TotalBytes += n
	}
	if g.TotalBytes < spec.MinBytes {
		return nil, fmt.Errorf("workload %q: %.1f MiB of layer tar, want at least %.1f MiB (its files come from this machine)", spec.Name, float64(g.TotalBytes)/MiB, float64(spec.MinBytes)/MiB)
	}
	if err := os.WriteFile(g.Containerfile(), []byte(cf.String()), 0o644); err != nil {
		return nil, err
	}
	return g, os.Chtimes(g.Context, mtime, mtime)
}

// file is one file of a layer, in the order it is written.
type file struct {
	rel  string // relative to the layer directory
	size int64
	kind Kind // Random or Text
}

func plan(l Layer, r *rand.Rand) []file {
	var fs []file
	switch l.Kind {
	case Random, Text:
		ext := map[Kind]string{Random: "bin", Text: "log"}[l.Kind]
		for i := range l.Files {
			fs = append(fs, file{rel: fmt.Sprintf("%s-%02d.%s", l.Dir, i, ext), size: l.FileSize, kind: l.Kind})
		}
	case Mixed:
		for i := range l.Files {
			k, ext := Random, "bin"
			if i%2 == 1 {
				k, ext = Text, "log"
			}
			fs = append(fs, file{rel: fmt.Sprintf("part-%02d.%s", i, ext), size: l.FileSize, kind: k})
		}
	case Small:
		// 100 files per directory; a quarter binary, the rest text.
		for i := range l.Files {
			size := l.MinSize + r.Int64N(l.MaxSize-l.MinSize+1)
			k, ext := Text, "txt"
			if r.IntN(4) == 0 {
				k, ext = Random, "dat"
			}
			fs = append(fs, file{rel: fmt.Sprintf("d%02d/f%04d.%s", i/100, i, ext), size: size, kind: k})
		}
	}
	return fs
}

// writeLayer creates the layer's files under dir and the same tree as a tar
// (entries data/<layer dir>/...) at tarPath; it returns the tar's size and sha256.
func writeLayer(dir, tarPath string, l Layer, seed uint64) (int64, string, error) {
	r := rand.New(rand.NewPCG(seed, seed^0x5deece66d))
	var chachaSeed [32]byte
	for i := range chachaSeed {
		chachaSeed[i] = byte(r.Uint32())
	}
	random := rand.NewChaCha8(chachaSeed)
	text := newTextGen(rand.New(rand.NewPCG(seed+1, seed^0xb5ad4eceda1ce2a9)))
	files := plan(l, r)

	tw, err := createTar(tarPath)
	if err != nil {
		return 0, "", err
	}
	defer tw.file.Close()

	dirs := map[string]bool{}
	var dirList []string
	addDir := func(rel string) error {
		if dirs[rel] {
			return nil
		}
		dirs[rel] = true
		dirList = append(dirList, rel)
		if err := os.MkdirAll(filepath.Join(dir, rel), 0o755); err != nil {
			return err
		}
		name := "data/" + l.Dir + "/"
		if rel != "." {
			name += rel + "/"
		}
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX})
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "data/", Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
		return 0, "", err
	}
	if err := addDir("."); err != nil {
		return 0, "", err
	}
	buf := make([]byte, 1<<20)
	for _, f := range files {
		if d := filepath.Dir(f.rel); d != "." {
			if err := addDir(d); err != nil {
				return 0, "", err
			}
		}
		path := filepath.Join(dir, f.rel)
		fh, err := os.Create(path)
		if err != nil {
			return 0, "", err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "data/" + l.Dir + "/" + f.rel, Mode: 0o644, Size: f.size, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			fh.Close()
			return 0, "", err
		}
		w := io.MultiWriter(fh, tw)
		for left := f.size; left > 0; {
			chunk := buf[:min(int64(len(buf)), left)]
			if f.kind == Random {
				_, _ = random.Read(chunk)
			} else {
				text.fill(chunk)
			}
			if _, err := w.Write(chunk); err != nil {
				fh.Close()
				return 0, "", err
			}
			left -= int64(len(chunk))
		}
		if err := fh.Close(); err != nil {
			return 0, "", err
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			return 0, "", err
		}
	}
	for i := len(dirList) - 1; i >= 0; i-- { // children before parents
		if err := os.Chtimes(filepath.Join(dir, dirList[i]), mtime, mtime); err != nil {
			return 0, "", err
		}
	}
	return tw.finish()
}

// tarFile is a layer tar being written; its size and sha256 are counted
// on the way.
type tarFile struct {
	*tar.Writer
	file *os.File
	buf  *bufio.Writer
	hash hash.Hash
	n    *countWriter
}

func createTar(path string) (*tarFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	t := &tarFile{file: f, hash: sha256.New()}
	t.n = &countWriter{w: io.MultiWriter(f, t.hash)}
	t.buf = bufio.NewWriterSize(t.n, 1<<20)
	t.Writer = tar.NewWriter(t.buf)
	return t, nil
}

// finish ends the tar and closes its file; it returns the tar's size and
// sha256.
func (t *tarFile) finish() (int64, string, error) {
	if err := t.Writer.Close(); err != nil {
		return 0, "", err
	}
	if err := t.buf.Flush(); err != nil {
		return 0, "", err
	}
	return t.n.n, hex.EncodeToString(t.hash.Sum(nil)), t.file.Close()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// textGen produces an endless stream of log-like lines: timestamps that move
// forward, a few services and levels, request ids, paths, status codes and
// durations, so it compresses about as well as real service logs.
type textGen struct {
	r       *rand.Rand
	t       time.Time
	buf     []byte // the current line
	pending []byte // its part not yet handed out
}

func newTextGen(r *rand.Rand) *textGen {
	return &textGen{r: r, t: time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)}
}

var (
	services = []string{"api-gateway", "orders", "payments", "inventory", "auth", "search", "notifier", "billing"}
	levels   = []string{"INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"}
	methods  = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	paths    = []string{"/v1/orders/", "/v1/items/", "/v1/users/", "/v2/search?q=", "/healthz", "/v1/carts/", "/metrics", "/v1/invoices/"}
	statuses = []int{200, 200, 200, 200, 201, 204, 301, 400, 404, 500, 503}
	agents   = []string{"curl/8.5.0", "Go-http-client/1.1", "Mozilla/5.0 (X11; Linux x86_64)", "kube-probe/1.30", "python-requests/2.31"}
	messages = []string{"request completed", "cache miss, fetching from upstream", "retrying after backoff", "slow query detected",
		"connection reset by peer", "token refreshed", "rate limit applied", "payload validated"}
)

const hexDigits = "0123456789abcdef"

func (g *textGen) line(b []byte) []byte {
	r := g.r
	g.t = g.t.Add(time.Duration(r.IntN(40_000)) * time.Microsecond)
	b = g.t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, ' ')
	b = append(b, levels[r.IntN(len(levels))]...)
	b = append(b, ' ')
	svc := r.IntN(len(services))
	b = append(b, services[svc]...)
	b = append(b, '[')
	b = strconv.AppendInt(b, int64(1000+svc*37), 10)
	b = append(b, "]: req="...)
	for range 12 {
		b = append(b, hexDigits[r.IntN(16)])
	}
	b = append(b, " method="...)
	b = append(b, methods[r.IntN(len(methods))]...)
	b = append(b, " path="...)
	p := paths[r.IntN(len(paths))]
	b = append(b, p...)
	if strings.HasSuffix(p, "/") || strings.HasSuffix(p, "=") {
		b = strconv.AppendInt(b, int64(r.IntN(100000)), 10)
	}
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(statuses[r.IntN(len(statuses))]), 10)
	b = append(b, " bytes="...)
	b = strconv.AppendInt(b, int64(r.IntN(65536)), 10)
	b = append(b, " dur="...)
	b = strconv.AppendFloat(b, float64(r.IntN(2_000_000))/1000, 'f', 3, 64)
	b = append(b, `ms ua="`...)
	b = append(b, agents[r.IntN(len(agents))]...)
	b = append(b, `" msg="`...)
	b = append(b, messages[r.IntN(len(messages))]...)
	b = append(b, "\"\n"...)
	return b
}

// fill fills p with lines; a line cut at the end of p continues in the next call.
func (g *textGen) fill(p []byte) {
	for len(p) > 0 {
		if len(g.pending) == 0 {
			g.buf = g.line(g.buf[:0])
			g.pending = g.buf
		}
		n := copy(p, g.pending)
		p = p[n:]
		g.pending = g.pending[n:]
	}
}
