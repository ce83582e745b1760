package zstdchunked

// rollSum is upstream's rolling checksum (bup-style, window 64, char offset
// 31, split when the low 16 bits of s2 are all ones), scanning a slice at a
// time: the byte leaving the window is read from the slice itself once 64
// bytes in, so the inner loop has no ring buffer stores.
type rollSum struct {
	s1, s2 uint32
	hist   [windowSize]byte // the last 64 bytes, oldest first
}

const (
	windowSize  = 64
	charOffset  = 31
	rollsumBits = 16
	splitMask   = 1<<rollsumBits - 1
)

func (r *rollSum) reset() {
	r.s1 = windowSize * charOffset
	r.s2 = windowSize * (windowSize - 1) * charOffset
	r.hist = [windowSize]byte{}
}

// scan rolls p in until a split point; it returns the number of bytes rolled
// in and whether the last of them is a split point.
func (r *rollSum) scan(p []byte) (int, bool) {
	s1, s2 := r.s1, r.s2
	n := len(p)
	i := 0
	split := false
	head := min(n, windowSize)
	for ; i < head; i++ {
		drop := uint32(r.hist[i])
		s1 += uint32(p[i]) - drop
		s2 += s1 - windowSize*(drop+charOffset)
		if s2&splitMask == splitMask {
			i++
			split = true
			goto done
		}
	}
	if i < n {
		cur := p[i:n]
		old := p[i-windowSize : n-windowSize]
		old = old[:len(cur)]
		for j, c := range cur {
			drop := uint32(old[j])
			s1 += uint32(c) - drop
			s2 += s1 - windowSize*(drop+charOffset)
			if uint16(s2) == splitMask {
				i += j + 1
				split = true
				goto done
			}
		}
		i = n
	}
done:
	r.s1, r.s2 = s1, s2
	// the new history: the last 64 bytes of hist ++ p[:i]
	if i >= windowSize {
		copy(r.hist[:], p[i-windowSize:i])
	} else {
		copy(r.hist[:], r.hist[i:])
		copy(r.hist[windowSize-i:], p[:i])
	}
	return i, split
}

// rollZeros rolls n zero bytes in without looking for split points (upstream
// does not look inside holes). After 64 zeros the state no longer changes.
func (r *rollSum) rollZeros(n int64) {
	var z [windowSize]byte
	for n > 0 {
		k := min(n, windowSize)
		s1, s2 := r.s1, r.s2
		for i := range int(k) {
			drop := uint32(r.hist[i])
			s1 -= drop
			s2 += s1 - windowSize*(drop+charOffset)
		}
		r.s1, r.s2 = s1, s2
		copy(r.hist[:], r.hist[k:])
		copy(r.hist[windowSize-k:], z[:k])
		n -= k
		if k == windowSize {
			return
		}
	}
}
