// OpenBLAS's CBLAS interface (Debian libopenblas-dev), including openblas_set_num_threads.
#include <cblas.h>
#include <stddef.h>

// LAPACK's symmetric eigensolver (divide and conquer), which Debian's OpenBLAS exports with the Fortran calling
// convention: every argument by reference, and a hidden length after the others for each character argument.
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
             const int *lwork, int *iwork, const int *liwork, int *info, size_t jobz_length, size_t uplo_length);
