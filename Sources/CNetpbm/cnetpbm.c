/*
 * cnetpbm: libnetpbm behind a jmp_buf. See include/cnetpbm.h for the contract.
 *
 * How a libnetpbm failure is caught: pm_error() formats its message, hands it to the hook installed
 * with pm_setusererrormsgfn() (our captureError, which keeps it instead of printing it), then
 * longjmps to the jmp_buf registered with pm_setjmpbufsave(). Each GUARDED call below registers a
 * jmp_buf of its own before calling into libnetpbm and restores the previous one afterwards.
 */
#include "cnetpbm.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stddef.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <netpbm/pam.h>

/* ---- libnetpbm's process-wide state ------------------------------------------------------------- */

/* One lock for every use of libnetpbm: its jmp_buf pointer and message hooks are process-wide. */
static pthread_mutex_t libraryLock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t libraryInit = PTHREAD_ONCE_INIT;

/* The message and errno of the last pm_error(); written by captureError under libraryLock. */
static char lastError[1024];
static int lastErrno;

/* Copies message into buffer as one printable line: runs of spaces, tabs and line breaks become one
 * space, other control characters and bytes outside ASCII \xNN; a trailing period is dropped. */
static void
copyLine(char * const buffer, size_t const capacity, const char * const message) {
    size_t n = 0;
    if (capacity == 0)
        return;
    for (const unsigned char * p = (const unsigned char *)message; *p != '\0' && n + 5 < capacity; ++p) {
        if (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') {
            if (n > 0 && buffer[n - 1] != ' ')
                buffer[n++] = ' ';
        } else if (*p < 0x20 || *p >= 0x7f) {
            static const char hex[] = "0123456789abcdef";
            buffer[n++] = '\\';
            buffer[n++] = 'x';
            buffer[n++] = hex[*p >> 4];
            buffer[n++] = hex[*p & 0xf];
        } else {
            buffer[n++] = (char)*p;
        }
    }
    while (n > 0 && buffer[n - 1] == ' ')
        --n;
    if (n > 0 && buffer[n - 1] == '.')
        --n;
    buffer[n] = '\0';
}

static void
captureError(const char * const message) {
    lastErrno = errno;
    copyLine(lastError, sizeof(lastError), message);
}

static void
discardMessage(const char * const message) {
    (void)message;
}

static void
initLibrary(void) {
    pm_init("pamstyle", 0);
    pm_setusererrormsgfn(captureError);
    pm_setusermessagefn(discardMessage);
}

static void
lockLibrary(void) {
    pthread_once(&libraryInit, initLibrary);
    pthread_mutex_lock(&libraryLock);
    lastError[0] = '\0';
    lastErrno = 0;
}

static void
unlockLibrary(void) {
    pthread_mutex_unlock(&libraryLock);
}

/* Runs STATEMENT (calls into libnetpbm) with a jmp_buf of our own registered, under libraryLock.
 * FAILED becomes 1 if libnetpbm called pm_error(); the message is then in lastError.
 * The jmp_buf is registered before setjmp(), so nothing local changes between setjmp() and longjmp(). */
#define GUARDED(FAILED, STATEMENT)                                                                     \
    do {                                                                                               \
        jmp_buf jumpBuffer;                                                                            \
        jmp_buf * previousJumpBuffer;                                                                  \
        pm_setjmpbufsave(&jumpBuffer, &previousJumpBuffer);                                            \
        if (setjmp(jumpBuffer) == 0) {                                                                 \
            STATEMENT;                                                                                 \
            (FAILED) = 0;                                                                              \
        } else {                                                                                       \
            (FAILED) = 1;                                                                              \
        }                                                                                              \
        pm_setjmpbuf(previousJumpBuffer);                                                              \
    } while (0)

/* ---- process streams and files ------------------------------------------------------------------ */

FILE *
cnp_stdin(void) {
    return stdin;
}

FILE *
cnp_stdout(void) {
    return stdout;
}

FILE *
cnp_open(const char * const path, const char * const mode, char * const message, size_t const capacity) {
    FILE * const file = fopen(path, mode);
    if (file == NULL)
        copyLine(message, capacity, strerror(errno));
    return file;
}

FILE *
cnp_open_memory(const uint8_t * const bytes, size_t const count) {
    /* With a NULL buffer fmemopen owns (and frees at fclose) a buffer of its own; in mode "w+" the
     * readable size is what has been written. Size 0 is not portable, hence the spare byte. */
    FILE * const file = fmemopen(NULL, count + 1, "w+");
    if (file == NULL)
        return NULL;
    if ((count > 0 && fwrite(bytes, 1, count, file) != count) || fflush(file) != 0) {
        fclose(file);
        return NULL;
    }
    rewind(file);
    return file;
}

int
cnp_close(FILE * const file) {
    return fclose(file) == 0 ? 0 : errno;
}

int
cnp_ignore_sigpipe(void) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = SIG_IGN;
    sigemptyset(&action.sa_mask);
    return sigaction(SIGPIPE, &action, NULL) == 0 ? 0 : errno;
}

/* ---- reading ------------------------------------------------------------------------------------- */

struct cnp_reader {
    FILE * file;
    struct pam pam;          /* the header of the current image, as libnetpbm read it */
    int started;             /* a header has been read from this stream before */
    int rasterPending;       /* the header of the current image is read, its raster not yet */
    char message[1024];      /* the message of the last CNP_FAILED */
    uint8_t lead[16];        /* after CNP_NOT_NETPBM: the first bytes where an image should start */
    size_t leadCount;
};

cnp_reader *
cnp_reader_new(FILE * const file) {
    cnp_reader * const reader = calloc(1, sizeof(*reader));
    if (reader != NULL)
        reader->file = file;
    return reader;
}

void
cnp_reader_free(cnp_reader * const reader) {
    free(reader);
}

const char *
cnp_reader_message(const cnp_reader * const reader) {
    return reader->message;
}

const char *
cnp_reader_tuple_type(const cnp_reader * const reader) {
    return reader->pam.tuple_type;
}

size_t
cnp_reader_lead(const cnp_reader * const reader, uint8_t * const bytes, size_t const capacity) {
    size_t const count = reader->leadCount < capacity ? reader->leadCount : capacity;
    memcpy(bytes, reader->lead, count);
    return count;
}

static cnp_status
failWithLibraryMessage(cnp_reader * const reader) {
    copyLine(reader->message, sizeof(reader->message),
             lastError[0] != '\0' ? lastError : "libnetpbm failed without a message");
    return CNP_FAILED;
}

static cnp_status
failWithErrno(cnp_reader * const reader, const char * const what, int const error) {
    snprintf(reader->message, sizeof(reader->message), "%s: %s", what,
             error != 0 ? strerror(error) : "unknown error");
    return CNP_FAILED;
}

/* Reads the first byte of the next image without consuming it. 'P' goes on to libnetpbm; anything
 * else cannot start a Netpbm image, and its first bytes are kept for the caller to name the format. */
static cnp_status
peekMagic(cnp_reader * const reader) {
    int const first = getc(reader->file);
    if (first == EOF) {
        if (ferror(reader->file))
            return failWithErrno(reader, "cannot read", errno);
        return CNP_END_OF_STREAM;
    }
    if (first == 'P') {
        if (ungetc(first, reader->file) == EOF)
            return failWithErrno(reader, "cannot put back the first byte", errno);
        return CNP_OK;
    }
    reader->lead[0] = (uint8_t)first;
    reader->leadCount = 1 + fread(reader->lead + 1, 1, sizeof(reader->lead) - 1, reader->file);
    return CNP_NOT_NETPBM;
}

cnp_status
cnp_read_header(cnp_reader * const reader, cnp_header * const header) {
    memset(header, 0, sizeof(*header));
    reader->message[0] = '\0';
    reader->rasterPending = 0;
    reader->leadCount = 0;

    if (reader->started) {
        int failed;
        int eof = 0;
        lockLibrary();
        GUARDED(failed, pm_nextimage(reader->file, &eof));
        cnp_status const status = failed ? failWithLibraryMessage(reader) : CNP_OK;
        unlockLibrary();
        if (status != CNP_OK)
            return status;
        if (eof)
            return CNP_END_OF_STREAM;
    }
    cnp_status const peeked = peekMagic(reader);
    if (peeked != CNP_OK)
        return peeked;
    reader->started = 1;

    /* comment_p NULL: libnetpbm skips header comments without keeping them. */
    memset(&reader->pam, 0, sizeof(reader->pam));
    reader->pam.comment_p = NULL;
    int failed;
    lockLibrary();
    GUARDED(failed, pnm_readpaminit(reader->file, &reader->pam, sizeof(reader->pam)));
    cnp_status const status = failed ? failWithLibraryMessage(reader) : CNP_OK;
    unlockLibrary();
    if (status != CNP_OK)
        return status;

    struct pam const * const pam = &reader->pam;
    header->width = pam->width;
    header->height = pam->height;
    header->depth = (int)pam->depth;
    header->maxval = pam->maxval;
    header->format = pam->format;
    reader->pam.tuple_type[sizeof(reader->pam.tuple_type) - 1] = '\0';
    /* libnetpbm leaves the color and opacity fields unset for tuple types it does not know. */
    header->visual = pam->visual != 0;
    header->color_depth = header->visual ? (int)pam->color_depth : 0;
    header->have_opacity = header->visual && pam->have_opacity;
    header->opacity_plane = header->have_opacity ? (int)pam->opacity_plane : -1;
    reader->rasterPending = 1;
    return CNP_OK;
}

/* Reads one row into tupleRow; 0 or -1 with reader->message set. */
static int
readRow(cnp_reader * const reader, tuple * const tupleRow) {
    int failed;
    lockLibrary();
    GUARDED(failed, pnm_readpamrow(&reader->pam, tupleRow));
    if (failed)
        failWithLibraryMessage(reader);
    unlockLibrary();
    return failed ? -1 : 0;
}

cnp_status
cnp_read_raster(cnp_reader * const reader, int const color_depth, int const alpha_plane,
                float * const rgb, float * const alpha, int * const rows_read) {
    struct pam const * const pam = &reader->pam;
    *rows_read = 0;
    if (!reader->rasterPending) {
        snprintf(reader->message, sizeof(reader->message), "no image header has been read");
        return CNP_FAILED;
    }
    reader->rasterPending = 0;
    if ((color_depth != 1 && color_depth != 3) || (unsigned int)color_depth > pam->depth ||
        (alpha != NULL && (alpha_plane < 0 || (unsigned int)alpha_plane >= pam->depth))) {
        snprintf(reader->message, sizeof(reader->message),
                 "cannot take %d color planes and alpha plane %d from tuples of depth %u",
                 color_depth, alpha != NULL ? alpha_plane : -1, pam->depth);
        return CNP_FAILED;
    }

    tuple * tupleRow = NULL;   /* (width, depth) samples */
    int failed;
    lockLibrary();
    GUARDED(failed, tupleRow = pnm_allocpamrow(pam));
    cnp_status status = failed ? failWithLibraryMessage(reader) : CNP_OK;
    unlockLibrary();
    if (status != CNP_OK)
        return status;

    size_t const width = (size_t)pam->width;
    size_t const planeSize = width * (size_t)pam->height;
    float const maxval = (float)pam->maxval;   /* at most 65535: exact, and so is every sample */
    for (size_t row = 0; row < (size_t)pam->height && status == CNP_OK; ++row) {
        if (readRow(reader, tupleRow) != 0) {
            status = CNP_FAILED;
            break;
        }
        float * const red = rgb + row * width;
        float * const green = red + planeSize;
        float * const blue = green + planeSize;
        for (size_t col = 0; col < width; ++col) {
            sample const * const t = tupleRow[col];
            /* libnetpbm 11 refuses such samples itself; older releases passed them on. */
            for (unsigned int plane = 0; plane < pam->depth; ++plane) {
                if (t[plane] > pam->maxval) {
                    snprintf(reader->message, sizeof(reader->message),
                             "sample value %lu exceeds the maxval %lu (row %zu, column %zu, plane %u)",
                             t[plane], pam->maxval, row, col, plane);
                    status = CNP_FAILED;
                    break;
                }
            }
            if (status != CNP_OK)
                break;
            if (color_depth == 3) {
                red[col] = (float)t[0] / maxval;
                green[col] = (float)t[1] / maxval;
                blue[col] = (float)t[2] / maxval;
            } else {
                float const gray = (float)t[0] / maxval;
                red[col] = gray;
                green[col] = gray;
                blue[col] = gray;
            }
            if (alpha != NULL)
                alpha[row * width + col] = (float)t[alpha_plane] / maxval;
        }
        if (status == CNP_OK)
            *rows_read = (int)row + 1;
    }
    pnm_freepamrow(tupleRow);
    return status;
}

/* ---- writing ------------------------------------------------------------------------------------- */

static sample
quantize255(float const v) {
    float const scaled = v * 255.0f;
    if (!(scaled > 0.0f))    /* also NaN */
        return 0;
    if (scaled >= 255.0f)
        return 255;
    return (sample)(scaled + 0.5f);
}

/* Writes the header and rows through libnetpbm; on pm_error, longjmps out of it. */
static void
writeRaster(struct pam * const pam, tuple * const tupleRow, const float * const rgb,
            const float * const alpha) {
    size_t const width = (size_t)pam->width;
    size_t const planeSize = width * (size_t)pam->height;
    pnm_writepaminit(pam);
    for (size_t row = 0; row < (size_t)pam->height; ++row) {
        const float * const red = rgb + row * width;
        const float * const green = red + planeSize;
        const float * const blue = green + planeSize;
        for (size_t col = 0; col < width; ++col) {
            tupleRow[col][PAM_RED_PLANE] = quantize255(red[col]);
            tupleRow[col][PAM_GRN_PLANE] = quantize255(green[col]);
            tupleRow[col][PAM_BLU_PLANE] = quantize255(blue[col]);
            if (alpha != NULL)
                tupleRow[col][PAM_TRN_PLANE] = quantize255(alpha[row * width + col]);
        }
        pnm_writepamrow(pam, tupleRow);
    }
}

int
cnp_write_image(FILE * const file, int const width, int const height, const float * const rgb,
                const float * const alpha, char * const message, size_t const capacity) {
    struct pam pam;
    memset(&pam, 0, sizeof(pam));
    pam.size = sizeof(pam);
    pam.len = offsetof(struct pam, comment_p) + sizeof(pam.comment_p);   /* PAM_STRUCT_SIZE, without UB */
    pam.file = file;
    pam.format = alpha != NULL ? PAM_FORMAT : RPPM_FORMAT;
    pam.plainformat = 0;
    pam.width = width;
    pam.height = height;
    pam.depth = alpha != NULL ? 4 : 3;
    pam.maxval = 255;
    pam.bytes_per_sample = 1;
    pam.allocation_depth = 0;
    pam.comment_p = NULL;
    strcpy(pam.tuple_type, alpha != NULL ? PAM_PPM_ALPHA_TUPLETYPE : PAM_PPM_TUPLETYPE);

    int failed;
    int error = 0;
    lockLibrary();
    tuple * tupleRow = NULL;   /* (width, depth) samples */
    GUARDED(failed, tupleRow = pnm_allocpamrow(&pam));
    if (!failed) {
        errno = 0;
        GUARDED(failed, writeRaster(&pam, tupleRow, rgb, alpha));
        pnm_freepamrow(tupleRow);
    }
    if (failed) {
        error = lastErrno != 0 ? lastErrno : EIO;
        copyLine(message, capacity, lastError[0] != '\0' ? lastError : "libnetpbm failed without a message");
    }
    unlockLibrary();
    if (failed)
        return error;

    if (fflush(file) != 0 || ferror(file)) {
        error = errno != 0 ? errno : EIO;
        copyLine(message, capacity, strerror(error));
        return error;
    }
    return 0;
}
