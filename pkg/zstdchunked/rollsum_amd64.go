package zstdchunked

import "golang.org/x/sys/cpu"

var haveAVX2 = cpu.X86.HasAVX2

// rollScan16 rolls blocks of 16 bytes (cur[i] in, old[i] out) into the
// sums s1, s2 until a block holds a split point; it returns the bytes rolled
// in (a multiple of 16, excluding that block) and the sums after them (only
// their low 16 bits, all that a split depends on).
//
//go:noescape
func rollScan16(cur, old *byte, blocks int, s1, s2 uint32) (done int, s1o, s2o uint32)
