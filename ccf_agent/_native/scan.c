/* The raw JSON scanner, with no Python in it (see scan.h). What it is not sure of (an escape
 * \uXXXX, an exponent, deep nesting, ...) it calls unsure, and the caller takes the orjson path:
 * so the projection's documents and ids are those of the orjson path exactly. Tested on its own
 * against Python's json (tests/native/test_core.py) and, through the binding, against the
 * orjson loop (tests/pipeline/test_native.py). */
#include "scan.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static inline ccf_ssize skip_ws(const unsigned char *p, ccf_ssize i, ccf_ssize n)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* A string from its opening quote at i: the index past its closing quote, or -1. *escaped is
 * set when it holds a (simple) escape; a \u escape, a control character or invalid UTF-8 is -1. */
ccf_ssize ccf_scan_string(const unsigned char *p, ccf_ssize i, ccf_ssize n, int *escaped)
{
    i++;
    while (i < n) {
#if defined(__SSE2__)
        /* Skip 16 plain bytes at a time: none a quote, a backslash, a control byte or non-ASCII
         * (a signed compare below 0x20 catches both of the last two). */
        while (i + 16 <= n) {
            __m128i block = _mm_loadu_si128((const __m128i *)(p + i));
            unsigned special = (unsigned)_mm_movemask_epi8(_mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(block, _mm_set1_epi8('"')), _mm_cmpeq_epi8(block, _mm_set1_epi8('\\'))),
                _mm_cmplt_epi8(block, _mm_set1_epi8(0x20))));
            if (special) {
                i += __builtin_ctz(special);
                break;
            }
            i += 16;
        }
        if (i >= n)
            break;
#endif
        unsigned char c = p[i];
        if (c == '"')
            return i + 1;
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            if (i + 1 >= n)
                return -1;
            unsigned char e = p[i + 1];
            if (!(e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't'))
                return -1; /* \u (surrogates are orjson's to judge) or an invalid escape */
            *escaped = 1;
            i += 2;
            continue;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        /* UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF */
        if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (p[i + 1] & 0xC0) != 0x80)
                return -1;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= n || (p[i + 1] & 0xC0) != 0x80 || (p[i + 2] & 0xC0) != 0x80)
                return -1;
            if ((c == 0xE0 && p[i + 1] < 0xA0) || (c == 0xED && p[i + 1] > 0x9F))
                return -1;
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= n || (p[i + 1] & 0xC0) != 0x80 || (p[i + 2] & 0xC0) != 0x80 || (p[i + 3] & 0xC0) != 0x80)
                return -1;
            if ((c == 0xF0 && p[i + 1] < 0x90) || (c == 0xF4 && p[i + 1] > 0x8F))
                return -1;
            i += 4;
        } else {
            return -1;
        }
    }
    return -1;
}

/* A number at i (JSON grammar, no exponent): the index past it, or -1. */
ccf_ssize ccf_scan_number(const unsigned char *p, ccf_ssize i, ccf_ssize n)
{
    if (i < n && p[i] == '-')
        i++;
    if (i >= n)
        return -1;
    if (p[i] == '0') {
        i++;
    } else if (p[i] >= '1' && p[i] <= '9') {
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    } else {
        return -1;
    }
    if (i < n && p[i] == '.') {
        i++;
        ccf_ssize digits = i;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
        if (i == digits)
            return -1;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E'))
        return -1; /* an exponent may overflow to infinity, which orjson refuses: let it judge */
    return i;
}

/* Any value at i: the index past it, or -1. */
ccf_ssize ccf_scan_value(const unsigned char *p, ccf_ssize i, ccf_ssize n, int depth, int *kind)
{
    int escaped = 0;
    if (i >= n)
        return -1;
    switch (p[i]) {
    case '"': {
        ccf_ssize j = ccf_scan_string(p, i, n, &escaped);
        *kind = escaped ? CCF_V_ESCAPED : CCF_V_STRING;
        return j;
    }
    case 't':
        *kind = CCF_V_TRUE;
        return i + 4 <= n && memcmp(p + i, "true", 4) == 0 ? i + 4 : -1;
    case 'f':
        *kind = CCF_V_FALSE;
        return i + 5 <= n && memcmp(p + i, "false", 5) == 0 ? i + 5 : -1;
    case 'n':
        *kind = CCF_V_NULL;
        return i + 4 <= n && memcmp(p + i, "null", 4) == 0 ? i + 4 : -1;
    case '{':
    case '[': {
        if (depth >= CCF_MAX_DEPTH)
            return -1;
        unsigned char close = p[i] == '{' ? '}' : ']';
        int object = close == '}', inner;
        *kind = CCF_V_OTHER;
        i = skip_ws(p, i + 1, n);
        if (i < n && p[i] == close)
            return i + 1;
        for (;;) {
            if (object) {
                if (i >= n || p[i] != '"' || (i = ccf_scan_string(p, i, n, &escaped)) < 0)
                    return -1;
                i = skip_ws(p, i, n);
                if (i >= n || p[i] != ':')
                    return -1;
                i = skip_ws(p, i + 1, n);
            }
            if ((i = ccf_scan_value(p, i, n, depth + 1, &inner)) < 0)
                return -1;
            i = skip_ws(p, i, n);
            if (i < n && p[i] == ',') {
                i = skip_ws(p, i + 1, n);
                continue;
            }
            return i < n && p[i] == close ? i + 1 : -1;
        }
    }
    default:
        *kind = CCF_V_NUMBER;
        return ccf_scan_number(p, i, n);
    }
}

/* A top-level object with 1 to CCF_MAX_MEMBERS members, unescaped keys and nothing after it but
 * whitespace: CCF_SCAN_OK with its members, else CCF_SCAN_UNSURE (invalid or not for us to decide). */
int ccf_scan_object(const unsigned char *p, ccf_ssize n, ccf_member *m, int *count)
{
    ccf_ssize i = skip_ws(p, 0, n);
    int k = 0;
    if (i >= n || p[i] != '{' || n > INT32_MAX)
        return CCF_SCAN_UNSURE;
    i = skip_ws(p, i + 1, n);
    for (;;) {
        int escaped = 0;
        if (k == CCF_MAX_MEMBERS || i >= n || p[i] != '"')
            return CCF_SCAN_UNSURE;
        m[k].key = i + 1;
        if ((i = ccf_scan_string(p, i, n, &escaped)) < 0 || escaped)
            return CCF_SCAN_UNSURE;
        m[k].key_end = i - 1;
        i = skip_ws(p, i, n);
        if (i >= n || p[i] != ':')
            return CCF_SCAN_UNSURE;
        i = skip_ws(p, i + 1, n);
        m[k].value = i;
        if ((i = ccf_scan_value(p, i, n, 1, &m[k].kind)) < 0)
            return CCF_SCAN_UNSURE;
        m[k].value_end = i;
        k++;
        i = skip_ws(p, i, n);
        if (i < n && p[i] == ',') {
            i = skip_ws(p, i + 1, n);
            continue;
        }
        if (i >= n || p[i] != '}')
            return CCF_SCAN_UNSURE;
        if (skip_ws(p, i + 1, n) != n)
            return CCF_SCAN_UNSURE;
        *count = k;
        return CCF_SCAN_OK;
    }
}


/* See scan.h. */
uint64_t ccf_keys_hash(const unsigned char *p, ccf_ssize n, const ccf_member *m, int count, ccf_ssize *nbytes)
{
    uint64_t h = (uint64_t)count;
    ccf_ssize total = 0;
    for (int k = 0; k < count; k++) { /* one multiply per key in the chain */
        ccf_ssize len = m[k].key_end - m[k].key;
        h = (h ^ ccf_span_mix(p + m[k].key, len, p + n)) * CCF_HASH_MUL;
        total += len + 1;
    }
    *nbytes = total;
    return h ^ (h >> 29);
}

/* The count of c in p[0..n), counting no further than most + 1. */
static ccf_ssize count_upto(const char *p, ccf_ssize n, char c, ccf_ssize most)
{
    ccf_ssize count = 0;
    const char *end = p + n;
    while (count <= most && p < end && (p = memchr(p, c, end - p)) != NULL) {
        count++;
        p++;
    }
    return count;
}

/* One pass of a JSON lexer: the members the line writes at every depth (its colons outside
 * strings), or -1 as soon as its nesting passes `limit` (when limit >= 0). */
ccf_ssize ccf_structure(const unsigned char *p, ccf_ssize n, ccf_ssize limit)
{
    ccf_ssize members = 0, depth = 0;
    int in_string = 0;
    for (ccf_ssize i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > limit && limit >= 0)
                return -1;
        } else if (c == '}' || c == ']') {
            depth--;
        } else {
            members += c == ':';
        }
    }
    return members;
}

/* Nested deeper than CCF_RECORD_DEPTH_MAX. Only a line of more than 2 x CCF_RECORD_DEPTH_MAX bytes
 * with more than CCF_RECORD_DEPTH_MAX opening brackets can be: the common line costs a compare,
 * a long one two memchr runs. */
int ccf_too_deep(const unsigned char *p, ccf_ssize n)
{
    if (n <= 2 * CCF_RECORD_DEPTH_MAX)
        return 0;
    ccf_ssize opens = count_upto((const char *)p, n, '{', CCF_RECORD_DEPTH_MAX);
    if (opens + count_upto((const char *)p, n, '[', CCF_RECORD_DEPTH_MAX - opens) <= CCF_RECORD_DEPTH_MAX)
        return 0;
    return ccf_structure(p, n, CCF_RECORD_DEPTH_MAX) < 0;
}
