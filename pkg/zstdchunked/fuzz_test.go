package zstdchunked

import (
	"archive/tar"
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// randomTar builds a tar from a seed: regular files (empty, small, zero
// runs around the hole threshold, occasionally over a megabyte), dirs,
// symlinks, hardlinks, long names, PAX xattrs, devices and fifos.
func randomTar(t testing.TB, seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var es []entry
	var regs []string
	for i := range n {
		name := fmt.Sprintf("d%d/f%d", r.IntN(4), i)
		if r.IntN(8) == 0 {
			name = strings.Repeat("long-component-", 1+r.IntN(20)) + name
		}
		h := tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Uid: r.IntN(3), Gid: r.IntN(3)}
		var data []byte
		switch k := r.IntN(10); {
		case k == 0:
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, name+"/", 0o755
		case k == 1:
			h.Typeflag, h.Linkname = tar.TypeSymlink, "../target"
		case k == 2 && len(regs) > 0:
			h.Typeflag, h.Linkname = tar.TypeLink, regs[r.IntN(len(regs))]
		case k == 3:
			h.Typeflag = []byte{tar.TypeChar, tar.TypeBlock, tar.TypeFifo}[r.IntN(3)]
			h.Devmajor, h.Devminor = int64(r.IntN(10)), int64(r.IntN(10))
		default:
			size := []int{0, 1, 100, 1023, 1024, 4096, 70_000, 300_000}[r.IntN(8)]
			if r.IntN(40) == 0 {
				size = 1<<20 + r.IntN(3<<20)
			}
			switch r.IntN(3) {
			case 0:
				data = randBytes(r, size)
			case 1:
				data = textBytes(r, size)
			default:
				data = withHoles(r, size)
			}
			regs = append(regs, name)
		}
		if r.IntN(6) == 0 {
			h.Format = tar.FormatPAX
			h.PAXRecords = map[string]string{"SCHILY.xattr.user.k": string(randBytes(r, r.IntN(40)))}
		}
		es = append(es, entry{hdr: h, data: data})
	}
	return mkTar(t, es)
}

func FuzzMatchesUpstream(f *testing.F) {
	for _, s := range []uint64{1, 2, 3, 42} {
		f.Add(s, uint8(10), uint8(2))
	}
	f.Fuzz(func(t *testing.T, seed uint64, n, workers uint8) {
		tarball := randomTar(t, seed, int(n%40))
		level := []int{1, 3, 5}[seed%3]
		ours, omd := encode(t, tarball, true, level, WithWorkers(int(workers%4)+1), WithMaxInflight(int64(seed%(4<<20))))
		up, umd := encode(t, tarball, false, level)
		if !bytes.Equal(ours, up) || fmt.Sprint(omd) != fmt.Sprint(umd) {
			t.Fatalf("differs from upstream: %d vs %d bytes, annotations %v vs %v", len(ours), len(up), omd, umd)
		}
		dec, _ := zstd.NewReader(nil)
		plain, err := dec.DecodeAll(ours, nil)
		if err != nil || !bytes.Equal(plain, tarball) {
			t.Fatalf("plain zstd decode: %v", err)
		}
		readTOC(t, ours, omd)
	})
}
