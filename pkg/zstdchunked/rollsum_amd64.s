#include "textflag.h"

// Within a block, in 16-bit lanes k = 0..15 (all sums mod 2^16):
//   E = prefix sums of cur-old, S1 = s1 + E (s1 after byte k),
//   h = S1 - 64*old - 64*31, S2 = s2 + prefix sums of h (s2 after byte k).
// A split is a lane of S2 equal to 0xffff.

// PREFIX turns the 16 words of y into their prefix sums (t is scratch).
#define PREFIX(y, t) \
	VPSLLDQ $2, y, t \
	VPADDW  t, y, y \
	VPSLLDQ $4, y, t \
	VPADDW  t, y, y \
	VPSLLDQ $8, y, t \
	VPADDW  t, y, y \
	VPSHUFB Y13, y, t \
	VPERM2I128 $0x08, t, t, t \
	VPADDW  t, y, y

// BCAST15 sets every word of d to word 15 of y.
#define BCAST15(y, d) \
	VPERMQ  $0xFF, y, d \
	VPSHUFB Y14, d, d

// func rollScan16(cur, old *byte, blocks int, s1, s2 uint32) (done int, s1o, s2o uint32)
TEXT ·rollScan16(SB), NOSPLIT, $0-48
	MOVQ cur+0(FP), SI
	MOVQ old+8(FP), DI
	MOVQ blocks+16(FP), CX
	MOVL s1+24(FP), AX
	MOVL s2+28(FP), BX
	VMOVD AX, X8
	VPBROADCASTW X8, Y8          // S1 before the block
	VMOVD BX, X9
	VPBROADCASTW X9, Y9          // S2 before the block
	VMOVDQU bcastw7<>(SB), Y13
	VMOVDQU bcastw3<>(SB), Y14
	VMOVDQU c1984<>(SB), Y12
	VPCMPEQW Y15, Y15, Y15       // all ones
	XORQ DX, DX

loop:
	CMPQ DX, CX
	JGE  out
	VPMOVZXBW (SI), Y0           // cur
	VPMOVZXBW (DI), Y1           // old
	VPSUBW  Y1, Y0, Y2           // cur - old
	PREFIX(Y2, Y3)               // E
	VPADDW  Y8, Y2, Y2           // S1
	VPSLLW  $6, Y1, Y1
	VPSUBW  Y1, Y2, Y4
	VPSUBW  Y12, Y4, Y4          // h
	PREFIX(Y4, Y3)
	VPADDW  Y9, Y4, Y4           // S2
	VPCMPEQW Y15, Y4, Y5
	VPMOVMSKB Y5, R8
	TESTL R8, R8
	JNZ  out
	BCAST15(Y2, Y8)
	BCAST15(Y4, Y9)
	ADDQ $16, SI
	ADDQ $16, DI
	INCQ DX
	JMP  loop

out:
	SHLQ $4, DX
	MOVQ DX, done+32(FP)
	VMOVD X8, AX
	MOVWLZX AX, AX
	MOVL AX, s1o+40(FP)
	VMOVD X9, BX
	MOVWLZX BX, BX
	MOVL BX, s2o+44(FP)
	VZEROUPPER
	RET

// word 7 of each 128-bit half, in every word of that half
DATA bcastw7<>+0(SB)/8, $0x0f0e0f0e0f0e0f0e
DATA bcastw7<>+8(SB)/8, $0x0f0e0f0e0f0e0f0e
DATA bcastw7<>+16(SB)/8, $0x0f0e0f0e0f0e0f0e
DATA bcastw7<>+24(SB)/8, $0x0f0e0f0e0f0e0f0e
GLOBL bcastw7<>(SB), RODATA|NOPTR, $32

// word 3 of each 128-bit half, in every word of that half
DATA bcastw3<>+0(SB)/8, $0x0706070607060706
DATA bcastw3<>+8(SB)/8, $0x0706070607060706
DATA bcastw3<>+16(SB)/8, $0x0706070607060706
DATA bcastw3<>+24(SB)/8, $0x0706070607060706
GLOBL bcastw3<>(SB), RODATA|NOPTR, $32

// windowSize * charOffset in every word
DATA c1984<>+0(SB)/8, $0x07c007c007c007c0
DATA c1984<>+8(SB)/8, $0x07c007c007c007c0
DATA c1984<>+16(SB)/8, $0x07c007c007c007c0
DATA c1984<>+24(SB)/8, $0x07c007c007c007c0
GLOBL c1984<>(SB), RODATA|NOPTR, $32
