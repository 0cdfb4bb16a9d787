/* src/router/router_dns.h: DNS wire codec for the GeoDNS router. Pure: no I/O, no allocation.
 *
 * router_dns_parse() reads one query (RFC 1035 §4.1) with its EDNS(0) OPT record
 * (RFC 6891) and EDNS Client Subnet option (RFC 7871) into a struct dns_query that owns
 * copies of everything it needs (the packet may be reused afterwards). Names are kept in
 * wire form with their case preserved (the answer echoes them) plus a lower-cased copy for
 * matching. Compression pointers are followed only strictly backwards, so a hostile packet
 * cannot loop. The writer (struct dns_writer) builds a response into a caller buffer with a
 * hard size limit; router_dns_finish() applies the client's size limit and sets TC when the
 * answer does not fit (RFC 1035 §4.2.1, RFC 6891 §7). */
#ifndef MLCDN_ROUTER_ROUTER_DNS_H
#define MLCDN_ROUTER_ROUTER_DNS_H

#include <stddef.h>
#include <stdint.h>

#define DNS_HDR_LEN 12
#define DNS_NAME_MAX 255  /* wire form, including the root label */
#define DNS_UDP_MIN 512   /* RFC 1035 limit without EDNS */
#define DNS_MSG_MAX 65535 /* TCP */

enum dns_type {
    DNS_T_A = 1,
    DNS_T_NS = 2,
    DNS_T_CNAME = 5,
    DNS_T_SOA = 6,
    DNS_T_PTR = 12,
    DNS_T_MX = 15,
    DNS_T_TXT = 16,
    DNS_T_AAAA = 28,
    DNS_T_OPT = 41,
    DNS_T_IXFR = 251,
    DNS_T_AXFR = 252,
    DNS_T_ANY = 255,
};

enum dns_rcode {
    DNS_R_NOERROR = 0,
    DNS_R_FORMERR = 1,
    DNS_R_SERVFAIL = 2,
    DNS_R_NXDOMAIN = 3,
    DNS_R_NOTIMP = 4,
    DNS_R_REFUSED = 5,
    DNS_R_BADVERS = 16, /* extended: upper 8 bits in the OPT TTL */
};

#define DNS_CLASS_IN 1
#define DNS_OPT_ECS 8

/* What the parser asks the caller to do when it cannot accept the packet. */
#define DNS_PARSE_DROP (-1) /* not worth an answer: too short, or a response (QR=1) */

struct dns_ecs {
    int present;
    uint16_t family;  /* 1 = IPv4, 2 = IPv6 */
    uint8_t source;   /* SOURCE PREFIX-LENGTH */
    uint8_t scope;    /* SCOPE PREFIX-LENGTH (0 in queries; set by the server for answers) */
    uint8_t addr[16]; /* address bits beyond `source` are zero */
};

struct dns_query {
    uint16_t id;
    uint16_t flags; /* header flags as received */
    uint8_t opcode;
    int have_question;              /* question parsed (also meaningful on FORMERR/BADVERS) */
    uint8_t qname[DNS_NAME_MAX];    /* wire form, case preserved, uncompressed */
    uint8_t qname_lc[DNS_NAME_MAX]; /* same, ASCII lower-cased */
    size_t qname_len;
    uint16_t qtype;
    uint16_t qclass;
    int edns;          /* an OPT record was present and parsed */
    uint16_t udp_size; /* requestor's payload size (as sent; see router_dns_udp_limit) */
    uint8_t edns_version;
    int edns_do;
    struct dns_ecs ecs;
};

/* Parses a query of `len` bytes. Returns 0 for a valid query, DNS_PARSE_DROP when no answer
 * must be sent, or a positive rcode (FORMERR, NOTIMP, BADVERS, REFUSED) to answer with; in
 * that case q->id/flags and, when have_question / edns are set, the question and OPT data are
 * valid for building the error answer. */
int router_dns_parse(const uint8_t *pkt, size_t len, struct dns_query *q);

/* Largest UDP answer for this query: 512 without EDNS, else the advertised size clamped
 * to [512, server_max] (RFC 6891 §6.2.5). */
size_t router_dns_udp_limit(const struct dns_query *q, size_t server_max);

/* Reads a (possibly compressed) name at *off into out (wire form, at most 255 bytes),
 * advancing *off past the name's bytes at that position. Returns the length or -1.
 * Exposed for tests and the fuzz target. */
int router_dns_name_read(const uint8_t *pkt, size_t len, size_t *off, uint8_t *out);

/* Text form of a wire name ("www.example.test", "." for the root); unprintable bytes and
 * dots inside labels are escaped as \DDD. Returns 0 or -E2BIG. */
int router_dns_name_to_text(const uint8_t *wire, size_t wlen, char *out, size_t outlen);
/* Wire form of a text name (a trailing dot is optional). Returns the length or -EINVAL. */
int router_dns_name_from_text(const char *text, uint8_t *out, size_t outlen);
/* Lower-cases the ASCII letters of a wire name in place. */
void router_dns_name_lower(uint8_t *wire, size_t wlen);

/* ---- response writer ---- */
struct dns_writer {
    uint8_t *buf;
    size_t cap; /* hard limit of buf (never written past) */
    size_t len;
    size_t question_end; /* offset after the question: where truncation cuts */
    uint16_t counts[4];  /* QD, AN, NS, AR */
    int overflow;        /* a write did not fit into cap */
};

enum dns_section { DNS_SEC_AN = 1, DNS_SEC_NS = 2, DNS_SEC_AR = 3 };

/* Starts a response to q: header (QR, AA as given, RD copied, rcode low 4 bits) and the
 * question when q has one. */
void router_dns_w_begin(struct dns_writer *w, uint8_t *buf, size_t cap, const struct dns_query *q,
                        int aa, int rcode);
/* Offset of the question name in the response (for compression pointers): always 12. */
#define DNS_QNAME_OFF 12
/* Resource records; `owner_off` is the offset of the owner name already in the message (the
 * question name or one of its suffixes), written as a compression pointer. */
void router_dns_w_a(struct dns_writer *w, enum dns_section s, uint16_t owner_off, uint32_t ttl,
                    const uint8_t addr[4]);
void router_dns_w_aaaa(struct dns_writer *w, enum dns_section s, uint16_t owner_off, uint32_t ttl,
                       const uint8_t addr[16]);
/* NS with target `label`.<name at zone_off>. */
void router_dns_w_ns(struct dns_writer *w, enum dns_section s, uint16_t owner_off, uint32_t ttl,
                     const char *label, uint16_t zone_off);
/* SOA: mname ns_label.zone, rname mbox_label.zone. */
void router_dns_w_soa(struct dns_writer *w, enum dns_section s, uint16_t owner_off, uint32_t ttl,
                      uint16_t zone_off, const char *ns_label, const char *mbox_label,
                      uint32_t serial, uint32_t refresh, uint32_t retry, uint32_t expire,
                      uint32_t minimum);
/* The OPT record (only when the query had one): our payload size, the extended rcode's
 * upper bits and the ECS option when ecs->present. */
void router_dns_w_opt(struct dns_writer *w, uint16_t udp_size, int rcode,
                      const struct dns_ecs *ecs);

/* Finishes: writes the counts into the header. If the message exceeds `limit` (or a write
 * overflowed cap), cuts it after the question, sets TC and re-appends the OPT record given
 * (when opt_udp_size != 0). Returns the message length (0 if even that does not fit). */
size_t router_dns_finish(struct dns_writer *w, size_t limit, uint16_t opt_udp_size, int rcode,
                         const struct dns_ecs *ecs, int have_opt);

#endif
