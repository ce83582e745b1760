package zstdchunked

import (
	"archive/tar"
	"fmt"
	"io"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// mixedTar is about 64 MiB: a 24 MiB random file, 24 MiB of log-like text
// in 3 files, and ~16 MiB of small files (three quarters text).
func mixedTar(b *testing.B) []byte {
	r := rand.New(rand.NewPCG(7, 8))
	es := []entry{{hdr: tar.Header{Name: "random", Typeflag: tar.TypeReg}, data: randBytes(r, 24<<20)}}
	for i := range 3 {
		es = append(es, entry{hdr: tar.Header{Name: fmt.Sprintf("log%d", i), Typeflag: tar.TypeReg}, data: textBytes(r, 8<<20)})
	}
	for total, i := 0, 0; total < 16<<20; i++ {
		n := 256 + r.IntN(8<<10)
		d := textBytes(r, n)
		if i%4 == 3 {
			d = randBytes(r, n)
		}
		es = append(es, entry{hdr: tar.Header{Name: fmt.Sprintf("small/%d/%d", i%40, i), Typeflag: tar.TypeReg}, data: d})
		total += n
	}
	return mkTar(b, es)
}

func BenchmarkEncode(b *testing.B) {
	tarball := mixedTar(b)
	for _, c := range []struct {
		name string
		new  func(io.Writer, map[string]string) (io.WriteCloser, error)
	}{
		{"ours", func(w io.Writer, m map[string]string) (io.WriteCloser, error) { return NewWriter(w, m, 3) }},
		{"upstream", func(w io.Writer, m map[string]string) (io.WriteCloser, error) { return NewUpstreamWriter(w, m, 3) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(tarball)))
			var out int64
			cpu0 := cpuTime()
			for b.Loop() {
				var cw countingWriter
				cw.w = io.Discard
				w, err := c.new(&cw, map[string]string{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := w.Write(tarball); err != nil {
					b.Fatal(err)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				out = cw.n
			}
			b.ReportMetric(float64(len(tarball))/(1<<20)/(b.Elapsed().Seconds()/float64(b.N)), "MiB/s")
			b.ReportMetric(float64(out)/float64(len(tarball)), "out/in")
			// CPU matters as much as wall time: in production the encoder
			// shares the cores with other work.
			b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
		})
	}
}
