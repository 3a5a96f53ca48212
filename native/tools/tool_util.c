/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "tool_util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *tool_name = "npp-bpg";

static void vnote(const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", tool_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void tool_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(fmt, ap);
    va_end(ap);
}

_Noreturn void tool_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(fmt, ap);
    va_end(ap);
    exit(1);
}

_Noreturn void tool_bad_option(int c, char **argv, const struct option *longopts)
{
    const char *arg = argv[optind - 1];
    if (c == ':')
        tool_die("option %s needs a value", arg);
    if (optopt > 0 && optopt < 256) /* a short option inside a cluster such as -qz */
        tool_die("unknown option -%c (%s -h lists the options)", optopt, tool_name);
    const char *name = arg + strspn(arg, "-");
    size_t n = strcspn(name, "="), matches = 0;
    char list[256] = "";
    for (const struct option *o = longopts; o->name; o++)
        if (n && !strncmp(o->name, name, n)) {
            size_t used = strlen(list);
            snprintf(list + used, sizeof list - used, "%s-%s", matches++ ? ", " : "", o->name);
        }
    if (matches > 1)
        tool_die("ambiguous option %s (could be %s)", arg, list);
    tool_die("unknown option %s (%s -h lists the options)", arg, tool_name);
}

int tool_int(const char *option, const char *value, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < lo || v > hi)
        tool_die("%s %s: %s must be an integer from %ld to %ld", option, value, what, lo, hi);
    return (int)v;
}

void tool_put_ue7(uint8_t *out, size_t *len, uint32_t v)
{
    int n = 1;
    while (n < 5 && v >> (7 * n))
        n++;
    for (int j = n - 1; j >= 0; j--)
        out[(*len)++] = (uint8_t)(((v >> (7 * j)) & 0x7f) | (j ? 0x80 : 0));
}

uint8_t *tool_read_file(const char *path, size_t max_len, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        if (cap > max_len) {
            free(buf);
            fclose(f);
            errno = EFBIG;
            return NULL;
        }
        uint8_t *nb = realloc(buf, cap *= 2);
        if (!nb)
            free(buf);
        buf = nb;
    }
    int failed = !buf || ferror(f);
    int err = buf ? EIO : ENOMEM;
    fclose(f);
    if (failed) {
        free(buf);
        errno = err;
        return NULL;
    }
    if (n > max_len) {
        free(buf);
        errno = EFBIG;
        return NULL;
    }
    *len = n;
    return buf;
}

static int write_all(int fd, const void *const *parts, const size_t *sizes, int n_parts)
{
    for (int k = 0; k < n_parts; k++) {
        const uint8_t *p = parts[k];
        size_t left = sizes[k];
        while (left) {
            ssize_t w = write(fd, p, left);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return -1;
            }
            p += w;
            left -= (size_t)w;
        }
    }
    return 0;
}

int tool_write_file(const char *path, const void *const *parts, const size_t *sizes,
                    int n_parts)
{
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* a device, pipe or symbolic link: write through it, as fopen would */
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (fd < 0)
            return -1;
        int rc = write_all(fd, parts, sizes, n_parts);
        int e = errno;
        if (close(fd) && !rc)
            return -1;
        errno = e;
        return rc;
    }
    size_t n = strlen(path);
    char *tmp = malloc(n + 16);
    if (!tmp)
        return -1;
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp-XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        free(tmp);
        return -1;
    }
    mode_t mask = umask(0);
    umask(mask);
    int rc = fchmod(fd, 0666 & ~mask);
    if (!rc)
        rc = write_all(fd, parts, sizes, n_parts);
    if (close(fd))
        rc = -1;
    if (!rc)
        rc = rename(tmp, path);
    if (rc) {
        int e = errno;
        unlink(tmp);
        errno = e;
    }
    free(tmp);
    return rc;
}
