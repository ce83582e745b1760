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
		// s1 biased by -windowSize*charOffset folds the constant out of
		// the s2 update; unrolled by 8 without bounds checks, since this
		// loop is most of the producer's time.
		j := 0
		if haveAVX2 && len(cur) >= 16 {
			// 16 bytes a step up to the block with the next split
			j, s1, s2 = rollScan16(&cur[0], &old[0], len(cur)/16, s1, s2)
		}
		s1 -= windowSize * charOffset
		for ; j+8 <= len(cur); j += 8 {
			c := cur[j : j+8 : j+8]
			d := old[j : j+8 : j+8]
			s1 += uint32(c[0]) - uint32(d[0])
			s2 += s1 - uint32(d[0])<<6
			if uint16(s2) == splitMask {
				j += 1
				goto found
			}
			s1 += uint32(c[1]) - uint32(d[1])
			s2 += s1 - uint32(d[1])<<6
			if uint16(s2) == splitMask {
				j += 2
				goto found
			}
			s1 += uint32(c[2]) - uint32(d[2])
			s2 += s1 - uint32(d[2])<<6
			if uint16(s2) == splitMask {
				j += 3
				goto found
			}
			s1 += uint32(c[3]) - uint32(d[3])
			s2 += s1 - uint32(d[3])<<6
			if uint16(s2) == splitMask {
				j += 4
				goto found
			}
			s1 += uint32(c[4]) - uint32(d[4])
			s2 += s1 - uint32(d[4])<<6
			if uint16(s2) == splitMask {
				j += 5
				goto found
			}
			s1 += uint32(c[5]) - uint32(d[5])
			s2 += s1 - uint32(d[5])<<6
			if uint16(s2) == splitMask {
				j += 6
				goto found
			}
			s1 += uint32(c[6]) - uint32(d[6])
			s2 += s1 - uint32(d[6])<<6
			if uint16(s2) == splitMask {
				j += 7
				goto found
			}
			s1 += uint32(c[7]) - uint32(d[7])
			s2 += s1 - uint32(d[7])<<6
			if uint16(s2) == splitMask {
				j += 8
				goto found
			}
		}
		for ; j < len(cur); j++ {
			s1 += uint32(cur[j]) - uint32(old[j])
			s2 += s1 - uint32(old[j])<<6
			if uint16(s2) == splitMask {
				j++
				goto found
			}
		}
		s1 += windowSize * charOffset
		i = n
		goto done
	found:
		s1 += windowSize * charOffset
		i += j
		split = true
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
