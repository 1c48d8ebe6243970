/* The redaction prefilter's fold and scan (prefilter.c), with no Python in it: per line, could
 * a redaction pattern match there? Redactor.scan's fold (redact.py) is the reference. */
#ifndef CCF_PREFILTER_H
#define CCF_PREFILTER_H

#include "ccf.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define CCF_MAX_SUFFIXES 8
#define CCF_SIMD_VALUES 12

/* What the binding reads from Redactor._fold_args, as plain C: `table` maps each byte (256 of
 * them) and the `ndrop` bytes of `drop` vanish. A line is a hit when its folded text holds a
 * run of `zeros` '0's (a card; 0 = cards off), the `needle` byte (-1: none), or the sentinel
 * (folded 1) followed by one of the suffixes (1 to 8 bytes each; a suffix byte 0xFF matches a
 * folded hex digit of a \uXXXX escape: "0", a-f, A-F or 1). vector: 0 the scalar path, 1 the
 * fastest the CPU has (AVX2, else SSE2), 2 SSE2. json: lines are JSON, so a digit run outside
 * every string is a number, never a card. */
typedef struct {
    const unsigned char *table;
    const unsigned char *drop;
    size_t ndrop;
    ccf_ssize zeros;
    long needle;
    int nsuffix;
    const unsigned char *suffix[CCF_MAX_SUFFIXES];
    size_t suffix_len[CCF_MAX_SUFFIXES];
    long vector;
    int json;
} ccf_fold_spec;

/* The fold built from a spec: its own copy of everything, so it outlives the spec. */
typedef struct {
    unsigned char table[256];
    int nsuffix;
    unsigned char suffix[CCF_MAX_SUFFIXES][8], suffix_len[CCF_MAX_SUFFIXES];
    unsigned char starting[256]; /* per folded byte: the bit set of the suffixes it may begin */
    ccf_ssize zeros;
    int json;
    unsigned char dropped[256], is_zero[256], keep[256], is_sentinel[256], is_needle[256], first[256];
#if defined(__SSE2__)
    int simd, avx2, has_needle, n_zero_extra, n_dropped, n_sentinel, n_needle, n_next;
    /* AVX2: per class, for each low nibble the bit set of the high nibbles (0-7) of its bytes */
    unsigned char lut[5][16];
    __m128i zero_extra[CCF_SIMD_VALUES], dropped_v[CCF_SIMD_VALUES], sentinel_v[CCF_SIMD_VALUES],
        needle_v[CCF_SIMD_VALUES], next_v[CCF_SIMD_VALUES];
#endif
} ccf_fold;

/* Checks the CPU's features: once, before the first ccf_fold_init. */
void ccf_prefilter_init(void);

/* 0, or -1 when the spec has more than CCF_MAX_SUFFIXES suffixes or one outside 1 to 8 bytes. */
int ccf_fold_init(ccf_fold *f, const ccf_fold_spec *spec);

/* Could a pattern match in the line's n bytes? Reads only the fold: threads may share one. */
int ccf_fold_hit(const unsigned char *p, ccf_ssize n, const ccf_fold *f);

#endif
