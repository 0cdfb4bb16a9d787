/* src/core/units.c: see units.h. */
#include "core/units.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int parse_number(const char *s, double *v, const char **rest)
{
    char *end;

    if (!s || !isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    *v = strtod(s, &end);
    if (errno || end == s || !isfinite(*v) || *v < 0)
        return -EINVAL;
    *rest = end;
    return 0;
}

int units_parse_size(const char *s, uint64_t *out)
{
    const char *r;
    double v, mul = 1;

    if (parse_number(s, &v, &r))
        return -EINVAL;
    switch (toupper((unsigned char)*r)) {
    case 'K':
        mul = 1024.0;
        r++;
        break;
    case 'M':
        mul = 1024.0 * 1024;
        r++;
        break;
    case 'G':
        mul = 1024.0 * 1024 * 1024;
        r++;
        break;
    case 'T':
        mul = 1024.0 * 1024 * 1024 * 1024;
        r++;
        break;
    default: break;
    }
    if (mul > 1 && (*r == 'i' || *r == 'I'))
        r++;
    if (*r == 'B' || *r == 'b')
        r++;
    if (*r != '\0')
        return -EINVAL;
    v *= mul;
    if (v > 9.0e18)
        return -EINVAL;
    *out = (uint64_t)v;
    return 0;
}

int units_parse_duration_ms(const char *s, uint64_t *out)
{
    const char *r;
    double v, mul;

    if (parse_number(s, &v, &r))
        return -EINVAL;
    if (*r == '\0' || strcmp(r, "s") == 0)
        mul = 1000;
    else if (strcmp(r, "ms") == 0)
        mul = 1;
    else if (strcmp(r, "us") == 0)
        mul = 0.001;
    else if (strcmp(r, "m") == 0)
        mul = 60000;
    else if (strcmp(r, "h") == 0)
        mul = 3600000;
    else if (strcmp(r, "d") == 0)
        mul = 86400000;
    else
        return -EINVAL;
    v *= mul;
    if (v > 9.0e18)
        return -EINVAL;
    *out = (uint64_t)llround(v);
    return 0;
}

char *units_format_size(uint64_t bytes, char *buf, unsigned size)
{
    static const char sfx[] = "BKMGTP";
    double v = (double)bytes;
    int i = 0;

    while (v >= 1024 && i < 5) {
        v /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(buf, size, "%llu", (unsigned long long)bytes);
    else
        snprintf(buf, size, "%.1f%c", v, sfx[i]);
    return buf;
}

uint64_t units_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t units_now_us(void)
{
    return units_now_ns() / 1000u;
}

uint64_t units_now_ms(void)
{
    return units_now_ns() / 1000000u;
}

int64_t units_wall_s(void)
{
    return (int64_t)time(NULL);
}

int64_t units_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
