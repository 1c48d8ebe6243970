/* The raw JSON scanner (scan.c), with no Python in it: a line's top-level members where they
 * are in its bytes, strictly validated, for the projection and the read-ahead thread; and
 * rawjson.py's two lexer scans (how deep a line nests, how many members it writes). */
#ifndef CCF_SCAN_H
#define CCF_SCAN_H

#include <string.h>

#include "ccf.h"

#define CCF_MAX_MEMBERS 64       /* members of a top-level object the scanner takes */
#define CCF_MAX_DEPTH 64         /* nesting it follows; deeper is for orjson to judge */
#define CCF_RECORD_DEPTH_MAX 200 /* rawjson.MAX_DEPTH: a deeper line is shipped as text */
_Static_assert(CCF_MAX_DEPTH <= CCF_RECORD_DEPTH_MAX, "a line the projection scans is never too deep");

enum { CCF_V_STRING, CCF_V_ESCAPED, CCF_V_NUMBER, CCF_V_TRUE, CCF_V_FALSE, CCF_V_NULL, CCF_V_OTHER };
enum { CCF_SCAN_OK, CCF_SCAN_UNSURE };

/* One member of a scanned object: offsets in its line (ccf_scan_object takes lines under 2 GiB
 * only), kept small since a read-ahead scan holds ~12 per line. */
typedef struct {
    int32_t key, key_end;     /* the key's bytes, between its quotes */
    int32_t value, value_end; /* the value's bytes (a string's with its quotes) */
    int kind;                 /* CCF_V_* */
} ccf_member;

/* A string from its opening quote at i: the index past its closing quote, or -1. *escaped is
 * set when it holds a (simple) escape; a \u escape, a control character or invalid UTF-8 is -1. */
ccf_ssize ccf_scan_string(const unsigned char *p, ccf_ssize i, ccf_ssize n, int *escaped);

/* A number at i (JSON grammar, no exponent): the index past it, or -1. */
ccf_ssize ccf_scan_number(const unsigned char *p, ccf_ssize i, ccf_ssize n);

/* Any value at i, `depth` deep: the index past it, or -1; *kind its CCF_V_*. */
ccf_ssize ccf_scan_value(const unsigned char *p, ccf_ssize i, ccf_ssize n, int depth, int *kind);

/* A top-level object with 1 to CCF_MAX_MEMBERS members, unescaped keys and nothing after it
 * but whitespace: CCF_SCAN_OK with its members in m (room for CCF_MAX_MEMBERS) and *count,
 * else CCF_SCAN_UNSURE (invalid, or not for the scanner to decide). */
int ccf_scan_object(const unsigned char *p, ccf_ssize n, ccf_member *m, int *count);

/* One pass of a JSON lexer: the members the line writes at every depth (its colons outside
 * strings), or -1 as soon as its nesting passes `limit` (when limit >= 0). A string runs from
 * a quote to the next quote not escaped by a backslash, also in a line that is not JSON. */
ccf_ssize ccf_structure(const unsigned char *p, ccf_ssize n, ccf_ssize limit);

/* Nested deeper than CCF_RECORD_DEPTH_MAX (rawjson.too_deep). */
int ccf_too_deep(const unsigned char *p, ccf_ssize n);

/* ------------------------------------------------------------------ hashing
 *
 * The shape of a record is its keys in order, known by their hash; the projection's value
 * cache uses the same mix. A collision only costs speed: the bytes are compared after. */

#define CCF_HASH_MUL 0x9E3779B97F4A7C15ULL

/* The first min(len, 8) bytes at s as a number (the rest zero), with one 8-byte load when the
 * buffer (ending at end) has room: a variable-length memcpy into a stack variable cost a
 * `rep movsb` or a store-forwarding stall per call. */
static inline uint64_t ccf_head8(const unsigned char *s, ccf_ssize len, const unsigned char *end)
{
    uint64_t v = 0;
    if (end - s >= 8) {
        memcpy(&v, s, 8);
        return len >= 8 ? v : len == 0 ? 0 : v & (~(uint64_t)0 >> (64 - 8 * len));
    }
    for (ccf_ssize i = 0; i < len && i < 8; i++)
        v |= (uint64_t)s[i] << (8 * i);
    return v;
}

/* A span's first and last 8 bytes and its length, mixed. The tail and length mix in with their
 * own multiply, off a caller's chain. */
static inline uint64_t ccf_span_mix(const unsigned char *s, ccf_ssize len, const unsigned char *end)
{
    uint64_t tail = 0;
    if (len > 8)
        memcpy(&tail, s + len - 8, 8);
    uint64_t side = (tail + (uint64_t)len) * 0xC2B2AE3D27D4EB4FULL;
    return ccf_head8(s, len, end) ^ (side >> 29 | side << 35);
}

/* The hash of a scanned object's keys in order; *nbytes the bytes they take as a shape keeps
 * them (each key and a separator). */
uint64_t ccf_keys_hash(const unsigned char *p, ccf_ssize n, const ccf_member *m, int count, ccf_ssize *nbytes);

#endif
