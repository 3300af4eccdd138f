/*
 * cnetpbm: a small shim over libnetpbm's PAM API for the Swift module Netpbm.
 *
 * Every libnetpbm call that can fail runs under a jmp_buf of this shim, so a pm_error() inside libnetpbm
 * becomes a status code plus the message libnetpbm produced, and the process keeps running. libnetpbm
 * never prints: its error and informational messages are captured through pm_setusererrormsgfn() and
 * pm_setusermessagefn(). libnetpbm keeps process-wide state (the jmp_buf, the message hooks), so every
 * entry point below holds one process-wide lock while it calls into the library.
 *
 * This header exposes only standard C types; libnetpbm's own headers stay inside cnetpbm.c.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- process streams and files ------------------------------------------------------------------ */

/* The process's standard input and output (Swift 6 rejects the C globals stdin/stdout). */
FILE *cnp_stdin(void);
FILE *cnp_stdout(void);

/* fopen(path, mode). On failure returns NULL and stores strerror(errno) in message (NUL-terminated). */
FILE *cnp_open(const char *path, const char *mode, char *message, size_t message_capacity);

/* A read-only FILE over a private copy of bytes[0 ..< count] (count may be 0); NULL if out of memory.
 * Close it with cnp_close. */
FILE *cnp_open_memory(const uint8_t *bytes, size_t count);

/* fclose; returns 0 or errno. */
int cnp_close(FILE *file);

/* Sets SIGPIPE to be ignored for the whole process, so that writing to a closed pipe fails with EPIPE
 * instead of killing the process. Returns 0 or errno. */
int cnp_ignore_sigpipe(void);

/* ---- reading ------------------------------------------------------------------------------------- */

typedef enum {
    CNP_OK = 0,
    CNP_END_OF_STREAM = 1, /* no further image: the stream is at EOF (after optional whitespace) */
    CNP_NOT_NETPBM = 2,    /* the next byte is not 'P': cnp_reader_lead gives the first bytes */
    CNP_FAILED = 3         /* libnetpbm (or a read from the FILE) failed; see cnp_reader_message */
} cnp_status;

/* What the header of one image says, as libnetpbm interpreted it. */
typedef struct {
    int width;
    int height;
    int depth;                 /* samples per tuple */
    unsigned long maxval;      /* 1 ... 65535 */
    int format;                /* the magic number as libnetpbm's format code: 'P' * 256 + '1' ... '7' */
    int visual;                /* libnetpbm recognized tuple_type as a visual image type */
    int color_depth;           /* when visual: 1 (black and white, gray) or 3 (RGB); otherwise 0 */
    int have_opacity;          /* when visual: there is an alpha plane ... */
    int opacity_plane;         /* ... and this is its index; otherwise -1 */
} cnp_header;

typedef struct cnp_reader cnp_reader;

/* A reader of the Netpbm stream in file. It does not own file. NULL if out of memory. */
cnp_reader *cnp_reader_new(FILE *file);
void cnp_reader_free(cnp_reader *reader);

/* The message of the last CNP_FAILED, one line, as libnetpbm (or the C library) worded it. */
const char *cnp_reader_message(const cnp_reader *reader);

/* The tuple type of the image whose header was read last: "BLACKANDWHITE", "GRAYSCALE" or "RGB" for
 * PBM, PGM and PPM; the TUPLTYPE line of a PAM (possibly empty). */
const char *cnp_reader_tuple_type(const cnp_reader *reader);

/* After CNP_NOT_NETPBM: copies the first bytes found where an image should start (1 ... 16 of them) to
 * bytes and returns how many were copied. */
size_t cnp_reader_lead(const cnp_reader *reader, uint8_t *bytes, size_t capacity);

/* Positions at the next image and reads its header. Before the first image an empty stream gives
 * CNP_END_OF_STREAM; between images, libnetpbm's pm_nextimage skips whitespace and reports the end.
 * Allocates nothing that scales with the image: the caller checks the dimensions before reading the
 * raster. */
cnp_status cnp_read_header(cnp_reader *reader, cnp_header *header);

/* Reads the raster of the image whose header was just read, row by row, converting each sample s to
 * s / maxval as float:
 *   rgb   (3, height, width): from tuple planes 0, 1, 2 when color_depth is 3; from plane 0 replicated
 *         into all three when color_depth is 1
 *   alpha (height, width): from tuple plane alpha_plane, or pass NULL (alpha_plane is then ignored).
 * Only the raster of the current image is consumed. rows_read receives the number of rows read and
 * converted completely (on failure, the 0-based index of the row that failed). */
cnp_status cnp_read_raster(cnp_reader *reader, int color_depth, int alpha_plane, float *rgb, float *alpha,
                           int *rows_read);

/* ---- writing ------------------------------------------------------------------------------------- */

/* Writes one image with maxval 255 through libnetpbm and flushes file:
 *   rgb   (3, height, width), alpha (height, width) or NULL
 * alpha == NULL gives PPM P6; otherwise PAM with TUPLTYPE RGB_ALPHA. Values v are written as
 * round(v * 255) clamped to 0 ... 255 (NaN gives 0).
 * Returns 0, or an errno value (EPIPE for a closed pipe; EIO when libnetpbm failed without one) with
 * the message in message (NUL-terminated). */
int cnp_write_image(FILE *file, int width, int height, const float *rgb, const float *alpha,
                    char *message, size_t message_capacity);

#ifdef __cplusplus
}
#endif
