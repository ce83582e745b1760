package floors

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// tarsDir is where the benchmarks look for layer tars: $BENCH_TARS, else the
// reference workload `make bench` generates.
func tars(b *testing.B) ([]string, int64) {
	dir := os.Getenv("BENCH_TARS")
	if dir == "" {
		dir = filepath.Join("..", "..", ".cache", "workload", "ref", "tars")
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.tar"))
	if len(paths) == 0 {
		b.Skipf("no layer tars in %s: run `make bench` (or bench/bin/mcbench gen) first, or set BENCH_TARS", dir)
	}
	var total int64
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			b.Fatal(err)
		}
		total += fi.Size()
	}
	return paths, total
}

// BenchmarkEncoders: go test -tags "containers_image_openpgp exclude_graphdriver_btrfs"
// -run '^$' -bench . -benchtime 2x ./bench/internal/floors
func BenchmarkEncoders(b *testing.B) {
	paths, total := tars(b)
	for _, name := range Names() {
		e := All()[name]
		b.Run(name, func(b *testing.B) {
			if len(e.Env) > 0 {
				b.Skipf("needs its own process environment %v (mcbench floor sets it; here, run %s with -cpu 1)", e.Env, Ours.Name)
			}
			b.SetBytes(total)
			var r Result
			for b.Loop() {
				var err error
				if r, err = CompressFiles(e, paths); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(r.OutBytes)/float64(r.InBytes), "out/in")
		})
	}
}

func TestCompressFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.tar")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	data := bytes.Repeat([]byte("a log line that repeats\n"), 40000)
	if err := tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(data)
	_ = tw.Close()
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range Names() {
		r, err := CompressFiles(All()[name], []string{p})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.InBytes != int64(buf.Len()) || r.OutBytes <= 0 || r.OutBytes >= r.InBytes {
			t.Errorf("%s: %+v", name, r)
		}
	}
}
