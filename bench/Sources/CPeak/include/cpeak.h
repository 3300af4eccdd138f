/*
 * cpeak: the arithmetic peak of one core, for pamstyle-bench's fraction-of-peak figures.
 *
 * Each function runs `rounds` rounds of independent multiply-add chains in registers (enough chains to cover the
 * latency of the unit on current x86-64 cores), reads nothing from memory, and returns the floating-point operations
 * it did (a multiply-add counts as two), so that the caller divides them by the time it measured. A function whose
 * instructions the processor lacks returns 0 without running them.
 */
#ifndef CPEAK_H
#define CPEAK_H

/* Single-precision fused multiply-adds on 512-bit vectors (AVX-512F). */
double cpeak_fma512(long rounds);

/* Single-precision fused multiply-adds on 256-bit vectors (AVX2 and FMA). */
double cpeak_fma256(long rounds);

/* BF16 dot products into single precision on 512-bit vectors (AVX512_BF16's vdpbf16ps): each instruction does 32
 * products and 32 additions. */
double cpeak_bf16dot512(long rounds);

/* Half-precision fused multiply-adds on 512-bit vectors (AVX512_FP16's vfmadd231ph): 32 lanes an instruction, their
 * sums in half precision too. */
double cpeak_fp16fma512(long rounds);

#endif
