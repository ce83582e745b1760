package zstdchunked

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"go.podman.io/storage/pkg/chunked/compressor"
)

// splits with upstream's RollSum, byte at a time.
func upstreamSplits(p []byte) []int {
	rs := compressor.NewRollSum()
	var out []int
	for i, c := range p {
		rs.Roll(c)
		if rs.OnSplitWithBits(rollsumBits) {
			out = append(out, i+1)
		}
	}
	return out
}

func ourSplits(p []byte, step int) []int {
	var rs rollSum
	rs.reset()
	var out []int
	pos := 0
	for pos < len(p) {
		end := min(len(p), pos+step)
		k, split := rs.scan(p[pos:end])
		pos += k
		if split {
			out = append(out, pos)
		}
	}
	return out
}

func TestRollSumMatchesUpstream(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	p := make([]byte, 3<<20)
	for i := range p {
		p[i] = byte(r.Uint32())
		if i%5000 < 300 {
			p[i] = 0
		}
	}
	want := upstreamSplits(p)
	if len(want) < 10 {
		t.Fatalf("only %d splits", len(want))
	}
	// with and without the vector scan
	defer func(v bool) { haveAVX2 = v }(haveAVX2)
	for _, step := range []int{1, 7, 63, 64, 65, 1000, 1 << 20, -1} {
		if step < 0 {
			haveAVX2, step = false, 1<<20
		}
		got := ourSplits(p, step)
		if len(got) != len(want) {
			t.Fatalf("step %d: %d splits, upstream %d", step, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("step %d: split %d at %d, upstream %d", step, i, got[i], want[i])
			}
		}
	}
}

// Many split points, each somewhere in a 16-byte block of the vector scan.
func TestRollSumManySplits(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	p := make([]byte, 24<<20)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	want := upstreamSplits(p)
	lanes := map[int]bool{}
	for _, w := range want {
		lanes[w%16] = true
	}
	if len(lanes) < 16 {
		t.Fatalf("splits in only %d of 16 positions", len(lanes))
	}
	got := ourSplits(p, 1<<20)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%d splits, upstream %d, or at other offsets", len(got), len(want))
	}
}

func BenchmarkRollSum(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	p := make([]byte, 8<<20)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		ourSplits(p, len(p))
	}
}
