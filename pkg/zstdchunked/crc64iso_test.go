package zstdchunked

import (
	"hash/crc64"
	"math/rand/v2"
	"testing"

	"github.com/vbatts/tar-split/tar/storage"
)

func TestCRC64ISO(t *testing.T) {
	if *storage.CRCTable != *crc64.MakeTable(crc64.ISO) {
		t.Fatal("tar-split no longer sums with CRC-64/ISO")
	}
	r := rand.New(rand.NewPCG(5, 6))
	p := randBytes(r, 1<<16)
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 1000, 1 << 16} {
		for _, split := range []int{0, 1, 5, 8, n / 2} {
			if split > n {
				continue
			}
			want := crc64.Update(0, crc64.MakeTable(crc64.ISO), p[:n])
			got := crc64ISO(crc64ISO(0, p[:split]), p[split:n])
			if got != want {
				t.Fatalf("n %d split %d: %x, want %x", n, split, got, want)
			}
		}
	}
	// all ones and zeros, where a wrong reduction shows
	for _, b := range []byte{0, 0xff} {
		q := make([]byte, 4096)
		for i := range q {
			q[i] = b
		}
		if got, want := crc64ISO(0, q), crc64.Checksum(q, crc64.MakeTable(crc64.ISO)); got != want {
			t.Fatalf("%#x bytes: %x, want %x", b, got, want)
		}
	}
}

func BenchmarkCRC64ISO(b *testing.B) {
	p := make([]byte, 1<<20)
	b.Run("ours", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			crc64ISO(0, p)
		}
	})
	b.Run("hash/crc64", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		tab := crc64.MakeTable(crc64.ISO)
		for b.Loop() {
			crc64.Update(0, tab, p)
		}
	})
}
