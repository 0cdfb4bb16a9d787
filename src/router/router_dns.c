/* src/router/router_dns.c: DNS wire codec (see router_dns.h).
 *
 * Every read is bounds-checked against the packet length; the parser never trusts a count
 * or a length field. Compression pointers must point strictly backwards from where they
 * are found (a pointer can only refer to bytes already seen, RFC 1035 §4.1.4), which makes
 * loops impossible without a separate hop counter; the counter stays as a second guard.
 * The writer never writes past its buffer: a write that does not fit sets `overflow` and
 * router_dns_finish() turns the message into a truncated (TC) answer. */
#include "router/router_dns.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int router_dns_name_read(const uint8_t *pkt, size_t len, size_t *off, uint8_t *out)
{
    size_t pos = *off, olen = 0;
    int jumped = 0;
    unsigned hops = 0;

    for (;;) {
        if (pos >= len)
            return -1;
        uint8_t c = pkt[pos];
        if ((c & 0xc0) == 0xc0) {
            if (pos + 1 >= len || ++hops > 127)
                return -1;
            size_t ptr = ((size_t)(c & 0x3f) << 8) | pkt[pos + 1];
            if (ptr >= pos)
                return -1; /* forward or self pointer: possible loop */
            if (!jumped)
                *off = pos + 2;
            jumped = 1;
            pos = ptr;
            continue;
        }
        if (c & 0xc0)
            return -1; /* 0x40/0x80: extended label types (RFC 6891 §5) are not supported */
        if (c == 0) {
            if (olen + 1 > DNS_NAME_MAX)
                return -1;
            out[olen++] = 0;
            if (!jumped)
                *off = pos + 1;
            return (int)olen;
        }
        if (pos + 1 + c > len || olen + 1 + c + 1 > DNS_NAME_MAX)
            return -1;
        memcpy(out + olen, pkt + pos, 1 + (size_t)c);
        olen += 1 + (size_t)c;
        pos += 1 + (size_t)c;
    }
}

void router_dns_name_lower(uint8_t *wire, size_t wlen)
{
    size_t i = 0;
    while (i < wlen && wire[i] != 0) {
        size_t l = wire[i];
        for (size_t j = i + 1; j <= i + l && j < wlen; j++)
            if (wire[j] >= 'A' && wire[j] <= 'Z')
                wire[j] = (uint8_t)(wire[j] - 'A' + 'a');
        i += l + 1;
    }
}

int router_dns_name_to_text(const uint8_t *wire, size_t wlen, char *out, size_t outlen)
{
    size_t i = 0, o = 0;

    if (outlen < 2)
        return -E2BIG;
    if (wlen == 0 || wire[0] == 0) {
        out[0] = '.';
        out[1] = 0;
        return 0;
    }
    while (i < wlen && wire[i] != 0) {
        size_t l = wire[i++];
        if (o > 0) {
            if (o + 1 >= outlen)
                return -E2BIG;
            out[o++] = '.';
        }
        for (size_t j = 0; j < l && i < wlen; j++, i++) {
            uint8_t ch = wire[i];
            if (ch > 0x20 && ch < 0x7f && ch != '.' && ch != '\\') {
                if (o + 1 >= outlen)
                    return -E2BIG;
                out[o++] = (char)ch;
            } else {
                if (o + 4 >= outlen)
                    return -E2BIG;
                snprintf(out + o, 5, "\\%03u", ch);
                o += 4;
            }
        }
    }
    out[o] = 0;
    return 0;
}

int router_dns_name_from_text(const char *text, uint8_t *out, size_t outlen)
{
    size_t o = 0;
    const char *p = text;

    if (!strcmp(text, ".") || !*text) {
        if (outlen < 1)
            return -EINVAL;
        out[0] = 0;
        return 1;
    }
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        if (l == 0 || l > 63 || o + 1 + l + 1 > outlen || o + 1 + l + 1 > DNS_NAME_MAX)
            return -EINVAL;
        out[o++] = (uint8_t)l;
        memcpy(out + o, p, l);
        o += l;
        p += l;
        if (*p == '.')
            p++;
    }
    out[o++] = 0;
    return (int)o;
}

/* Skips one resource record at *off (name, fixed part, rdata). */
static int skip_rr(const uint8_t *pkt, size_t len, size_t *off)
{
    uint8_t name[DNS_NAME_MAX];
    if (router_dns_name_read(pkt, len, off, name) < 0 || *off + 10 > len)
        return -1;
    size_t rdlen = rd16(pkt + *off + 8);
    if (*off + 10 + rdlen > len)
        return -1;
    *off += 10 + rdlen;
    return 0;
}

/* RFC 7871 §6: the address must be exactly ceil(source/8) bytes with no bits set past the
 * prefix, and SCOPE must be 0 in a query; anything else is FORMERR. */
static int parse_ecs(const uint8_t *p, size_t n, struct dns_ecs *ecs)
{
    if (ecs->present || n < 4)
        return -1;
    uint16_t family = rd16(p);
    uint8_t source = p[2], scope = p[3];
    size_t maxbits = family == 1 ? 32 : family == 2 ? 128 : 0;
    if (maxbits == 0 || source > maxbits || scope != 0)
        return -1;
    size_t alen = ((size_t)source + 7) / 8;
    if (n - 4 != alen)
        return -1;
    if (alen > 0 && (source % 8) != 0) {
        uint8_t mask = (uint8_t)(0xff >> (source % 8));
        if (p[4 + alen - 1] & mask)
            return -1;
    }
    memset(ecs->addr, 0, sizeof(ecs->addr));
    memcpy(ecs->addr, p + 4, alen);
    ecs->family = family;
    ecs->source = source;
    ecs->scope = 0;
    ecs->present = 1;
    return 0;
}

static int parse_opt(const uint8_t *pkt, size_t rdoff, size_t rdlen, struct dns_query *q)
{
    size_t o = rdoff, end = rdoff + rdlen;
    while (o < end) {
        if (o + 4 > end)
            return -1;
        uint16_t code = rd16(pkt + o), olen = rd16(pkt + o + 2);
        o += 4;
        if (o + olen > end)
            return -1;
        if (code == DNS_OPT_ECS && parse_ecs(pkt + o, olen, &q->ecs) < 0)
            return -1;
        o += olen;
    }
    return 0;
}

int router_dns_parse(const uint8_t *pkt, size_t len, struct dns_query *q)
{
    size_t off = DNS_HDR_LEN;
    int rcode = 0;

    memset(q, 0, offsetof(struct dns_query, qname));
    q->qname_len = 0;
    q->qtype = q->qclass = 0;
    q->edns = 0;
    q->udp_size = 0;
    q->edns_version = 0;
    q->edns_do = 0;
    q->ecs.present = 0;
    if (len < DNS_HDR_LEN)
        return DNS_PARSE_DROP;
    q->id = rd16(pkt);
    q->flags = rd16(pkt + 2);
    if (q->flags & 0x8000)
        return DNS_PARSE_DROP; /* a response: answering could start a loop between servers */
    q->opcode = (uint8_t)((q->flags >> 11) & 0xf);
    uint16_t qd = rd16(pkt + 4), an = rd16(pkt + 6), ns = rd16(pkt + 8), ar = rd16(pkt + 10);
    if (q->opcode != 0)
        return DNS_R_NOTIMP;
    if (qd != 1)
        return DNS_R_FORMERR;
    int nl = router_dns_name_read(pkt, len, &off, q->qname);
    if (nl < 0 || off + 4 > len)
        return DNS_R_FORMERR;
    q->qname_len = (size_t)nl;
    memcpy(q->qname_lc, q->qname, q->qname_len);
    router_dns_name_lower(q->qname_lc, q->qname_len);
    q->qtype = rd16(pkt + off);
    q->qclass = rd16(pkt + off + 2);
    off += 4;
    q->have_question = 1;
    for (unsigned i = 0; i < (unsigned)an + ns; i++)
        if (skip_rr(pkt, len, &off) < 0)
            return DNS_R_FORMERR;
    for (unsigned i = 0; i < ar; i++) {
        uint8_t name[DNS_NAME_MAX];
        int rl = router_dns_name_read(pkt, len, &off, name);
        if (rl < 0 || off + 10 > len)
            return DNS_R_FORMERR;
        uint16_t type = rd16(pkt + off);
        size_t rdlen = rd16(pkt + off + 8);
        if (off + 10 + rdlen > len)
            return DNS_R_FORMERR;
        if (type == DNS_T_OPT) {
            /* RFC 6891 §6.1.1: one OPT, owned by the root. */
            if (q->edns || rl != 1)
                return DNS_R_FORMERR;
            q->edns = 1;
            q->udp_size = rd16(pkt + off + 2);
            uint32_t ttl = rd32(pkt + off + 4);
            q->edns_version = (uint8_t)(ttl >> 16);
            q->edns_do = (ttl & 0x8000) != 0;
            if (parse_opt(pkt, off + 10, rdlen, q) < 0) {
                q->ecs.present = 0;
                return DNS_R_FORMERR;
            }
        }
        off += 10 + rdlen;
    }
    if (off != len)
        return DNS_R_FORMERR; /* trailing garbage */
    if (q->qtype == DNS_T_OPT)
        return DNS_R_FORMERR;
    if (q->edns && q->edns_version != 0)
        rcode = DNS_R_BADVERS; /* RFC 6891 §6.1.3 */
    return rcode;
}

size_t router_dns_udp_limit(const struct dns_query *q, size_t server_max)
{
    if (!q->edns)
        return DNS_UDP_MIN;
    size_t s = q->udp_size < DNS_UDP_MIN ? DNS_UDP_MIN : q->udp_size;
    return s > server_max ? server_max : s;
}

/* ---- writer ---- */

static void w_bytes(struct dns_writer *w, const void *p, size_t n)
{
    if (w->overflow || w->len + n > w->cap) {
        w->overflow = 1;
        return;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void w16(struct dns_writer *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    w_bytes(w, b, 2);
}

static void w32(struct dns_writer *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    w_bytes(w, b, 4);
}

static void w_ptr(struct dns_writer *w, uint16_t off)
{
    w16(w, (uint16_t)(0xc000 | (off & 0x3fff)));
}

static size_t label_len(const char *label)
{
    size_t l = strlen(label);
    return l > 63 ? 63 : l;
}

static void w_label_ptr(struct dns_writer *w, const char *label, uint16_t zone_off)
{
    uint8_t b = (uint8_t)label_len(label);
    w_bytes(w, &b, 1);
    w_bytes(w, label, b);
    w_ptr(w, zone_off);
}

void router_dns_w_begin(struct dns_writer *w, uint8_t *buf, size_t cap, const struct dns_query *q,
                        int aa, int rcode)
{
    uint16_t flags = 0x8000 | (uint16_t)((q->opcode & 0xf) << 11) | (q->flags & 0x0100);
    if (aa)
        flags |= 0x0400;
    flags |= (uint16_t)(rcode & 0xf);
    memset(w, 0, sizeof(*w));
    w->buf = buf;
    w->cap = cap;
    w16(w, q->id);
    w16(w, flags);
    w16(w, 0);
    w16(w, 0);
    w16(w, 0);
    w16(w, 0);
    if (q->have_question) {
        w_bytes(w, q->qname, q->qname_len);
        w16(w, q->qtype);
        w16(w, q->qclass);
        w->counts[0] = 1;
    }
    w->question_end = w->len;
}

static void rr_head(struct dns_writer *w, enum dns_section s, uint16_t owner_off, uint16_t type,
                    uint32_t ttl)
{
    w_ptr(w, owner_off);
    w16(w, type);
    w16(w, DNS_CLASS_IN);
    w32(w, ttl);
    w->counts[s]++;
}

void router_dns_w_a(struct dns_writer *w, enum dns_section s, uint16_t owner_off, uint32_t ttl,
                    const uint8_t addr[4])
{
    rr_head(w, s, owner_off, DNS_T_A, ttl);
    w16(w, 4);
    w_bytes(w, addr, 4);
}

void router_dns_w_aaaa(struct dns_writer *w, enum dns_section s, uint16_t owner_off, uint32_t ttl,
                       const uint8_t addr[16])
{
    rr_head(w, s, owner_off, DNS_T_AAAA, ttl);
    w16(w, 16);
    w_bytes(w, addr, 16);
}

void router_dns_w_ns(struct dns_writer *w, enum dns_section s, uint16_t owner_off, uint32_t ttl,
                     const char *label, uint16_t zone_off)
{
    rr_head(w, s, owner_off, DNS_T_NS, ttl);
    w16(w, (uint16_t)(1 + label_len(label) + 2));
    w_label_ptr(w, label, zone_off);
}

void router_dns_w_soa(struct dns_writer *w, enum dns_section s, uint16_t owner_off, uint32_t ttl,
                      uint16_t zone_off, const char *ns_label, const char *mbox_label,
                      uint32_t serial, uint32_t refresh, uint32_t retry, uint32_t expire,
                      uint32_t minimum)
{
    rr_head(w, s, owner_off, DNS_T_SOA, ttl);
    size_t rdlen = (1 + label_len(ns_label) + 2) + (1 + label_len(mbox_label) + 2) + 20;
    w16(w, (uint16_t)rdlen);
    w_label_ptr(w, ns_label, zone_off);
    w_label_ptr(w, mbox_label, zone_off);
    w32(w, serial);
    w32(w, refresh);
    w32(w, retry);
    w32(w, expire);
    w32(w, minimum);
}

void router_dns_w_opt(struct dns_writer *w, uint16_t udp_size, int rcode, const struct dns_ecs *ecs)
{
    uint8_t root = 0;
    size_t alen = ecs && ecs->present ? ((size_t)ecs->source + 7) / 8 : 0;
    uint16_t rdlen = ecs && ecs->present ? (uint16_t)(4 + 4 + alen) : 0;

    w_bytes(w, &root, 1);
    w16(w, DNS_T_OPT);
    w16(w, udp_size);
    w32(w, (uint32_t)((rcode >> 4) & 0xff) << 24); /* extended rcode, version 0, DO 0 */
    w16(w, rdlen);
    if (ecs && ecs->present) {
        w16(w, DNS_OPT_ECS);
        w16(w, (uint16_t)(4 + alen));
        w16(w, ecs->family);
        uint8_t sp[2] = {ecs->source, ecs->scope};
        w_bytes(w, sp, 2);
        w_bytes(w, ecs->addr, alen);
    }
    w->counts[DNS_SEC_AR]++;
}

size_t router_dns_finish(struct dns_writer *w, size_t limit, uint16_t opt_udp_size, int rcode,
                         const struct dns_ecs *ecs, int have_opt)
{
    if (w->len > limit || w->overflow) {
        /* RFC 2181 §9: a truncated answer drops whole sections; the client retries over
         * TCP. The OPT record stays so the client keeps its EDNS view (RFC 6891 §7). */
        w->len = w->question_end;
        w->overflow = 0;
        w->counts[1] = w->counts[2] = w->counts[3] = 0;
        if (w->len >= 3)
            w->buf[2] |= 0x02;
        if (have_opt)
            router_dns_w_opt(w, opt_udp_size, rcode, ecs);
        if (w->overflow || w->len > limit) {
            w->len = w->question_end;
            w->overflow = 0;
            w->counts[3] = 0;
        }
        if (w->len > limit || w->len < DNS_HDR_LEN)
            return 0;
    }
    for (int i = 0; i < 4; i++) {
        w->buf[4 + 2 * i] = (uint8_t)(w->counts[i] >> 8);
        w->buf[5 + 2 * i] = (uint8_t)w->counts[i];
    }
    return w->len;
}
