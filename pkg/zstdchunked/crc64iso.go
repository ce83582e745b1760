package zstdchunked

import (
	"encoding/binary"
	"hash/crc64"
)

// tar-split sums each payload with CRC-64/ISO (hash/crc64's ISO table).
// Its polynomial, x^64 + x^4 + x^3 + x + 1, is sparse, so multiplying by
// x^64 modulo it is a few shifts and XORs: eight bytes at a time without
// tables, faster than hash/crc64's slicing-by-8.

var isoTable = crc64.MakeTable(crc64.ISO)

// crc64ISO is crc64.Update(crc, crc64.MakeTable(crc64.ISO), p).
func crc64ISO(crc uint64, p []byte) uint64 {
	crc = ^crc
	// 16 bytes a step: (crc^w0)*x^128 + w1*x^64, the second product off
	// the dependency chain through crc.
	for len(p) >= 16 {
		w0 := binary.LittleEndian.Uint64(p)
		w1 := binary.LittleEndian.Uint64(p[8:])
		crc = mulX128(crc^w0) ^ mulX64(w1)
		p = p[16:]
	}
	if len(p) >= 8 {
		crc = mulX64(crc ^ binary.LittleEndian.Uint64(p))
		p = p[8:]
	}
	for _, b := range p {
		crc = isoTable[byte(crc)^b] ^ crc>>8
	}
	return ^crc
}

// In the reflected representation (bit i is the coefficient of x^(63-i)),
// a times x^k shifts right by k. x^64 = x^4+x^3+x+1 (mod P), and
// x^128 = (x^4+x^3+x+1)^2 = x^8+x^6+x^2+1. The bits a product pushes past
// x^0 are o times x^64; reducing o the same way pushes nothing out again,
// since o has only its top few bits set.

// mulX64 is a*x^64 mod P.
func mulX64(a uint64) uint64 {
	o := a<<63 ^ a<<61 ^ a<<60
	return a ^ a>>1 ^ a>>3 ^ a>>4 ^ o ^ o>>1 ^ o>>3 ^ o>>4
}

// mulX128 is a*x^128 mod P.
func mulX128(a uint64) uint64 {
	o := a<<62 ^ a<<58 ^ a<<56
	return a ^ a>>2 ^ a>>6 ^ a>>8 ^ o ^ o>>1 ^ o>>3 ^ o>>4
}
