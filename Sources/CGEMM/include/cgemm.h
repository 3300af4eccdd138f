/*
 * cgemm: the single-precision matrix product of the Winograd convolutions, on operands stored in the panels
 * its inner loop reads, with AVX-512 when the processor has it.
 *
 * OpenBLAS packs both operands of every product into such panels itself; the Winograd transforms can write them
 * in that order directly, which saves the copies, and the AVX-512 loop does twice the work per cycle of the
 * AVX2 loop that OpenBLAS uses when OPENBLAS_CORETYPE names an AVX2 core.
 *
 * Layouts (row-major float32 throughout):
 *   A, an m × k matrix with m and k multiples of CGEMM_PANEL_ROWS, in one of two orders:
 *     rows:       panels of CGEMM_PANEL_ROWS rows, (m / 8, k, 8): A[i][j] at (i / 8)·8k + 8j + i % 8;
 *     transposed: A is the transpose of a k × m matrix stored in rows order, (k / 8, m, 8):
 *                 A[i][j] at (j / 8)·8m + 8i + j % 8.
 *   B, a k × n matrix, in panels of CGEMM_PANEL_COLUMNS columns, each stored row by row: B[j][l] at
 *     (l / 48)·48k + w·j + l % 48, where w = min(48, n − 48·(l / 48)) is the width of l's panel (the last panel
 *     holds the columns that remain).
 *   C, an m × n matrix with ldc floats between rows.
 */
#ifndef CGEMM_H
#define CGEMM_H

#include <stddef.h>

#define CGEMM_PANEL_ROWS 8
#define CGEMM_PANEL_COLUMNS 48

/* 1 when cgemm_panels runs on this processor (it has AVX-512F and the system saves its registers), else 0. */
int cgemm_available(void);

/* C = alpha · A · B on one thread, with A in rows order (transposedA = 0) or transposed order (transposedA = 1).
 * m and k must be positive multiples of CGEMM_PANEL_ROWS and n positive; only when cgemm_available(). */
void cgemm_panels(int m, int n, int k, float alpha, const float *a, int transposedA, const float *b, float *c,
                  ptrdiff_t ldc);

#endif
