/* src/core/units.h: sizes ("64M", "2G", "1.5K"), durations ("500ms", "2s", "5m") and clocks. */
#ifndef MLCDN_CORE_UNITS_H
#define MLCDN_CORE_UNITS_H

#include <stdint.h>

/* Parses a byte size: digits with an optional fraction and a K/M/G/T suffix (powers of
 * 1024, optional trailing B or iB). Returns 0 or -EINVAL; *out written on success only. */
int units_parse_size(const char *s, uint64_t *out);
/* Parses a duration into milliseconds: a number with us, ms, s, m, h or d; a bare number
 * is seconds. Returns 0 or -EINVAL. */
int units_parse_duration_ms(const char *s, uint64_t *out);
/* Formats a byte count like "64.0M" into buf (size >= 16). Returns buf. */
char *units_format_size(uint64_t bytes, char *buf, unsigned size);

uint64_t units_now_ms(void); /* monotonic */
uint64_t units_now_us(void); /* monotonic */
uint64_t units_now_ns(void); /* monotonic */
int64_t units_wall_s(void);  /* wall clock, seconds since the epoch */
int64_t units_wall_us(void); /* wall clock, microseconds since the epoch */

#endif
