/* SPDX-License-Identifier: GPL-2.0-or-later
 * What npp-bpgenc and npp-bpgdec share: one-line errors, strict integer options, the BPG
 * header's ue7 integers, and writing an output file whole or not at all. */
#ifndef NPP_TOOL_UTIL_H
#define NPP_TOOL_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The library's limits (bpg_internal.h): checked before an image is allocated. */
#define TOOL_MAX_DIM 65535
#define TOOL_MAX_PIXELS (1u << 28)

/* The program name in messages ("npp-bpgenc"); set by main. */
extern const char *tool_name;

/* Print "<tool_name>: <message>" on one line to stderr and exit 1 (bpgenc's status for
 * every error). */
_Noreturn void tool_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same line without exiting. */
void tool_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct option;
/* Die for the option getopt_long_only just refused (it returned '?' or ':', opterr = 0):
 * unknown, ambiguous (listing the candidates) or missing its value. */
_Noreturn void tool_bad_option(int c, char **argv, const struct option *longopts);

/* `value` as a whole decimal number in lo..hi, or die naming `option` and `what`. */
int tool_int(const char *option, const char *value, long lo, long hi, const char *what);

/* Appends v to out[*len] as BPG's byte-aligned integer (FORMAT.md section 2; at most 5
 * bytes). The tools read them with the library's read_ue7 (bpg_internal.h). */
void tool_put_ue7(uint8_t *out, size_t *len, uint32_t v);

/* The whole file in memory (*len bytes, free() it), or NULL with errno set. Refuses files
 * above max_len bytes (errno EFBIG). */
uint8_t *tool_read_file(const char *path, size_t max_len, size_t *len);

/* Write the n_parts buffers as the file `path`, replacing it only once everything is
 * written (a temporary file beside it, then rename), so a failure leaves no half-written
 * output and keeps what was there. Non-regular targets (/dev/stdout, a pipe) are written
 * in place. Returns 0, or -1 with errno set. */
int tool_write_file(const char *path, const void *const *parts, const size_t *sizes,
                    int n_parts);

#endif /* NPP_TOOL_UTIL_H */
