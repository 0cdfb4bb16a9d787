/* src/http/http_date.c: HTTP-date parsing (the three formats of RFC 9110 §5.6.7) and
 * IMF-fixdate formatting. Pure arithmetic on the proleptic Gregorian calendar, no
 * locale, no timegm(), no time zone: HTTP dates are always GMT. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "http/http_cache.h"

static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const long_days[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                         "Thursday", "Friday", "Saturday"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days since 1970-01-01 of a civil date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int digits(const char *s, size_t n, int *out)
{
    size_t i;
    int v = 0;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int month_of(const char *s)
{
    int i;

    for (i = 0; i < 12; i++)
        if (memcmp(s, months[i], 3) == 0)
            return i + 1;
    return -1;
}

static int day_of(const char *s, size_t n)
{
    int i;

    for (i = 0; i < 7; i++) {
        if (n == 3 && memcmp(s, days[i], 3) == 0)
            return i;
        if (n > 3 && strlen(long_days[i]) == n && memcmp(s, long_days[i], n) == 0)
            return i;
    }
    return -1;
}

/* "HH:MM:SS" */
static int hms(const char *s, int *h, int *mi, int *sec)
{
    if (s[2] != ':' || s[5] != ':')
        return -1;
    if (digits(s, 2, h) || digits(s + 3, 2, mi) || digits(s + 6, 2, sec))
        return -1;
    /* 60 allows a leap second (RFC 9110 §5.6.7 allows it in the grammar). */
    if (*h > 23 || *mi > 59 || *sec > 60)
        return -1;
    return 0;
}

static int finish(int64_t y, int m, int d, int h, int mi, int sec, int64_t *out)
{
    static const unsigned char mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    if (m < 1 || d < 1 || d > mdays[m - 1] || (m == 2 && d == 29 && !leap))
        return -EINVAL;
    *out = days_from_civil(y, (unsigned)m, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec;
    return 0;
}

int http_date_parse(const char *s, size_t len, int64_t *out)
{
    int d, m, y, h, mi, sec;
    const char *comma;

    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (len == 29 && s[3] == ',') {
        if (day_of(s, 3) < 0 || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
            s[25] != ' ' || memcmp(s + 26, "GMT", 3) != 0)
            return -EINVAL;
        if (digits(s + 5, 2, &d) || (m = month_of(s + 8)) < 0 || digits(s + 12, 4, &y) ||
            hms(s + 17, &h, &mi, &sec))
            return -EINVAL;
        return finish(y, m, d, h, mi, sec, out);
    }
    /* asctime: "Sun Nov  6 08:49:37 1994" */
    if (len == 24 && s[3] == ' ') {
        if (day_of(s, 3) < 0 || s[7] != ' ' || s[10] != ' ' || s[19] != ' ')
            return -EINVAL;
        if ((m = month_of(s + 4)) < 0)
            return -EINVAL;
        if (s[8] == ' ') {
            if (digits(s + 9, 1, &d))
                return -EINVAL;
        } else if (digits(s + 8, 2, &d)) {
            return -EINVAL;
        }
        if (hms(s + 11, &h, &mi, &sec) || digits(s + 20, 4, &y))
            return -EINVAL;
        return finish(y, m, d, h, mi, sec, out);
    }
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    comma = memchr(s, ',', len < 10 ? len : 10);
    if (comma != NULL) {
        size_t dn = (size_t)(comma - s);
        const char *r = comma + 1;

        if (day_of(s, dn) < 0 || dn < 6 || len - dn != 24)
            return -EINVAL;
        if (r[0] != ' ' || r[3] != '-' || r[7] != '-' || r[10] != ' ' || r[19] != ' ' ||
            memcmp(r + 20, "GMT", 3) != 0)
            return -EINVAL;
        if (digits(r + 1, 2, &d) || (m = month_of(r + 4)) < 0 || digits(r + 8, 2, &y) ||
            hms(r + 11, &h, &mi, &sec))
            return -EINVAL;
        /* RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is in the
         * past century. Pivoting at 70 is that rule for any date before 2020+50. */
        y += y < 70 ? 2000 : 1900;
        return finish(y, m, d, h, mi, sec, out);
    }
    return -EINVAL;
}

size_t http_date_format(int64_t t, char *buf)
{
    int64_t z = t >= 0 ? t / 86400 : -((-t + 86399) / 86400), y;
    int64_t rem = t - z * 86400;
    unsigned m, d;
    int wd = (int)((z % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
    int i;

    civil_from_days(z, &y, &m, &d);
    if (y < 0)
        y = 0;
    if (y > 9999)
        y = 9999;
    memcpy(buf, days[wd], 3);
    buf[3] = ',';
    buf[4] = ' ';
    buf[5] = (char)('0' + d / 10);
    buf[6] = (char)('0' + d % 10);
    buf[7] = ' ';
    memcpy(buf + 8, months[m - 1], 3);
    buf[11] = ' ';
    for (i = 3; i >= 0; i--) {
        buf[12 + i] = (char)('0' + y % 10);
        y /= 10;
    }
    buf[16] = ' ';
    buf[17] = (char)('0' + rem / 36000);
    buf[18] = (char)('0' + rem / 3600 % 10);
    buf[19] = ':';
    buf[20] = (char)('0' + rem % 3600 / 600);
    buf[21] = (char)('0' + rem % 3600 / 60 % 10);
    buf[22] = ':';
    buf[23] = (char)('0' + rem % 60 / 10);
    buf[24] = (char)('0' + rem % 10);
    memcpy(buf + 25, " GMT", 5);
    return 29;
}
