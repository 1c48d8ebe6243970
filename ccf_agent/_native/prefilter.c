/* The redaction prefilter's fold and scan, with no Python in it (see prefilter.h): a scalar
 * path, an SSE2 path and an AVX2 one chosen at run time, each with the same answer (tests/native/
 * test_core.py holds each to the Python prefilter on its own; tests/pipeline/test_native.py
 * through the binding). */
#include "prefilter.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1 /* x86-64 with GCC or Clang: AVX2 chosen at run time */
static int have_avx2;
#endif

void ccf_prefilter_init(void)
{
#ifdef HAVE_AVX2_PATH
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2");
#endif
}

static int folded_is(unsigned char want, unsigned char have)
{
    if (want == 0xFF)
        return have == '0' || (have >= 'a' && have <= 'f') || (have >= 'A' && have <= 'F') || have == 1;
    return want == have;
}

static int marker_at(const unsigned char *raw, ccf_ssize n, ccf_ssize k, const ccf_fold *f)
{
    /* The first folded byte after the sentinel picks the suffixes to try; the rest are folded
     * as they ask for them: most candidates ("ba" in "balance", "ke" in "key") fail at once. */
    unsigned char folded[8];
    int m = 0;
    ccf_ssize next = k + 1;
    for (unsigned tries = 1; m < 8 && next < n; next++) {
        if (f->dropped[raw[next]])
            continue;
        folded[m++] = f->table[raw[next]];
        if (m == 1 && (tries = f->starting[folded[0]]) == 0)
            return 0;
        unsigned done = 0; /* suffixes decided by the m bytes so far */
        for (unsigned left = tries; left; left &= left - 1) {
            int s = __builtin_ctz(left);
            if (!folded_is(f->suffix[s][m - 1], folded[m - 1]))
                done |= 1u << s;
            else if (m == f->suffix_len[s])
                return 1;
        }
        tries &= ~done;
        if (tries == 0)
            return 0;
    }
    return 0;
}

/* The count of zeros in the run of zeros-or-dropped bytes around position a reaches `zeros`?
 * Sets *end to the run's end. */
static int zeros_around(const unsigned char *p, ccf_ssize n, ccf_ssize a, const ccf_fold *f, ccf_ssize *end)
{
    ccf_ssize j = a, count = 0;
    while (j > 0 && f->keep[p[j - 1]])
        j--;
    for (; j < n && f->keep[p[j]]; j++)
        count += f->is_zero[p[j]];
    *end = j;
    return count >= f->zeros;
}

/* Is position k inside a string of a JSON line: an odd number of unescaped quotes before it?
 * (A line that turns out not to be a JSON object is prefiltered again without this rule.) */
static int in_string(const unsigned char *p, ccf_ssize k)
{
    int inside = 0;
    for (ccf_ssize j = 0; j < k; j++) {
        if (p[j] == '\\' && inside) {
            j++; /* the escaped byte, a quote or not */
            continue;
        }
        inside ^= p[j] == '"';
    }
    return inside;
}

static int hit_scalar(const unsigned char *p, ccf_ssize n, const ccf_fold *f)
{
    uint32_t run = 0;
    int found = 0;
    for (ccf_ssize k = 0; k < n; k++) {
        unsigned char c = p[k];
        run = (run + f->is_zero[c]) * f->keep[c];
        if (f->zeros > 0 && run == (uint32_t)f->zeros && (!f->json || in_string(p, k)))
            found = 1;
        found |= f->is_needle[c];
    }
    for (ccf_ssize k = 0; !found && k < n; k++) {
        if (!f->is_sentinel[p[k]])
            continue;
        ccf_ssize j = k + 1;
        while (j < n && f->dropped[p[j]])
            j++;
        if (j < n && f->first[f->table[p[j]]])
            found = marker_at(p, n, k, f);
    }
    return found;
}

#if defined(__SSE2__)
/* The widths (most values) of each class on the vector path; more and the scalar path runs. */
#define W_NEEDLE 2
#define W_ZERO 2
#define W_DROPPED 4
#define W_SENTINEL 8
#define W_NEXT 12

static int vector_of(__m128i *v, int *n, int c, int width)
{
    if (*n == width)
        return 0;
    v[(*n)++] = _mm_set1_epi8((char)c);
    for (int k = *n; k < width; k++)
        v[k] = v[0];
    return 1;
}

/* Bytes of the block equal to any of the values: a class has 0 values (never) or is padded to
 * `width` with copies of its first, so the loop has a constant count and unrolls. */
static inline unsigned any_of(__m128i block, const __m128i *values, int n, const int width)
{
    if (n == 0)
        return 0;
    __m128i hit = _mm_cmpeq_epi8(block, values[0]);
    for (int k = 1; k < width; k++)
        hit = _mm_or_si128(hit, _mm_cmpeq_epi8(block, values[k]));
    return (unsigned)_mm_movemask_epi8(hit);
}

/* A card starting at one of `starts` (bit i: position base + i) not yet checked? */
static int card_at(const unsigned char *p, ccf_ssize n, ccf_ssize base, uint64_t starts, const ccf_fold *f,
                   ccf_ssize *checked)
{
    for (; starts; starts &= starts - 1) {
        ccf_ssize a = base + __builtin_ctzll(starts);
        if (a >= *checked && zeros_around(p, n, a, f, checked) && (!f->json || in_string(p, a)))
            return 1;
    }
    return 0;
}

/* A marker at one of `sentinels` (bit i: position base + i)? */
static int marker_in(const unsigned char *p, ccf_ssize n, ccf_ssize base, uint32_t sentinels, const ccf_fold *f)
{
    for (; sentinels; sentinels &= sentinels - 1)
        if (marker_at(p, n, base + __builtin_ctz(sentinels), f))
            return 1;
    return 0;
}

/* Bit i set when bits i .. i+len-1 of w are all set (len <= 63). */
static inline uint64_t runs_of(uint64_t w, ccf_ssize len)
{
    uint64_t acc = ~(uint64_t)0, power = w;
    int acc_len = 0, power_len = 1;
    while (len) {
        if (len & 1) {
            acc &= power >> acc_len;
            acc_len += power_len;
        }
        len >>= 1;
        if (len) {
            power &= power >> power_len;
            power_len <<= 1;
        }
    }
    return acc;
}

/* 16 bytes at a time, with masks: a card can only start where `zeros` bytes in a row are zeros
 * or dropped (checked exactly there), and a marker only at a sentinel whose next byte can
 * begin a suffix (or is dropped). Same answer as hit_scalar. */
static int hit_vector(const unsigned char *p, ccf_ssize n, const ccf_fold *f)
{
    const __m128i below = _mm_set1_epi8('0' - 1), above = _mm_set1_epi8('9' + 1);
    unsigned char pad[32];
    uint32_t prev_keep = 0;
    ccf_ssize checked = 0;
    for (ccf_ssize at = 0; at < n; at += 16) {
        const unsigned char *q = p + at;
        ccf_ssize len = n - at < 16 ? n - at : 16;
        if (n - at < 17) { /* the block and the byte after it, zero-padded: 0 is a breaker */
            memset(pad, 0, sizeof pad);
            memcpy(pad, q, n - at);
            q = pad;
        }
        __m128i block = _mm_loadu_si128((const __m128i *)q);
        unsigned lenmask = 0xFFFFu >> (16 - len);
        if (any_of(block, f->needle_v, f->n_needle, W_NEEDLE) & lenmask)
            return 1;
        if (f->zeros > 0) {
            unsigned digits = (unsigned)_mm_movemask_epi8(
                _mm_and_si128(_mm_cmpgt_epi8(block, below), _mm_cmplt_epi8(block, above)));
            unsigned zmask = (digits | any_of(block, f->zero_extra, f->n_zero_extra, W_ZERO)) & lenmask;
            unsigned kmask = zmask ? zmask | (any_of(block, f->dropped_v, f->n_dropped, W_DROPPED) & lenmask) : 0;
            if (zmask == 0 && prev_keep) /* a run may still continue through dropped bytes */
                kmask = any_of(block, f->dropped_v, f->n_dropped, W_DROPPED) & lenmask;
            if (kmask && card_at(p, n, at - 16, runs_of(prev_keep | kmask << 16, f->zeros), f, &checked))
                return 1;
            prev_keep = kmask;
        }
        unsigned sentinels = any_of(block, f->sentinel_v, f->n_sentinel, W_SENTINEL) & lenmask;
        if (sentinels) {
            __m128i next = _mm_loadu_si128((const __m128i *)(q + 1));
            unsigned nextmask = at + 17 <= n ? 0xFFFFu : 0xFFFFu >> (17 - (n - at));
            sentinels &= any_of(next, f->next_v, f->n_next, W_NEXT) & nextmask;
            if (marker_in(p, n, at, sentinels, f))
                return 1;
        }
    }
    return 0;
}

#ifdef HAVE_AVX2_PATH

enum { C_ZERO, C_DROPPED, C_SENTINEL, C_NEEDLE, C_NEXT };

/* The bytes of the 32 in `block` that are in class `c`: a set of ASCII bytes looked up by
 * nibbles (the low nibble's entry holds one bit per high nibble). */
__attribute__((target("avx2"))) static inline uint32_t class_of(__m256i lo, __m256i hi_bit, const ccf_fold *f, int c)
{
    __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)f->lut[c]));
    __m256i miss = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(lut, lo), hi_bit), _mm256_setzero_si256());
    return ~(uint32_t)_mm256_movemask_epi8(miss);
}

__attribute__((target("avx2"))) static inline void nibbles(__m256i block, __m256i *lo, __m256i *hi_bit)
{
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    /* 1 << high nibble for 0-7; 0 for 8-15 (no class holds a byte over 0x7F) */
    const __m256i bit_of = _mm256_setr_epi8(1, 2, 4, 8, 16, 32, 64, (char)128, 0, 0, 0, 0, 0, 0, 0, 0,
                                            1, 2, 4, 8, 16, 32, 64, (char)128, 0, 0, 0, 0, 0, 0, 0, 0);
    *lo = _mm256_and_si256(block, low4);
    *hi_bit = _mm256_shuffle_epi8(bit_of, _mm256_and_si256(_mm256_srli_epi16(block, 4), low4));
}

/* hit_vector's steps, 32 bytes at a time. Same answer as hit_scalar. */
__attribute__((target("avx2"))) static int hit_avx2(const unsigned char *p, ccf_ssize n, const ccf_fold *f)
{
    unsigned char pad[64];
    uint64_t prev_keep = 0;
    ccf_ssize checked = 0;
    for (ccf_ssize at = 0; at < n; at += 32) {
        const unsigned char *q = p + at;
        ccf_ssize len = n - at < 32 ? n - at : 32;
        if (n - at < 33) { /* the block and the byte after it, zero-padded: 0 is in no class */
            memset(pad, 0, sizeof pad);
            memcpy(pad, q, n - at);
            q = pad;
        }
        uint32_t lenmask = len == 32 ? 0xFFFFFFFFu : (1u << len) - 1;
        __m256i lo, hi_bit;
        nibbles(_mm256_loadu_si256((const __m256i *)q), &lo, &hi_bit);
        if (f->has_needle && (class_of(lo, hi_bit, f, C_NEEDLE) & lenmask))
            return 1;
        if (f->zeros > 0) {
            uint32_t zmask = class_of(lo, hi_bit, f, C_ZERO) & lenmask, kmask = 0;
            if (zmask || prev_keep) /* without zeros, a run may still continue through dropped bytes */
                kmask = zmask | (class_of(lo, hi_bit, f, C_DROPPED) & lenmask);
            if (kmask && card_at(p, n, at - 32, runs_of(prev_keep | (uint64_t)kmask << 32, f->zeros), f, &checked))
                return 1;
            prev_keep = kmask;
        }
        uint32_t sentinels = class_of(lo, hi_bit, f, C_SENTINEL) & lenmask;
        if (sentinels) {
            __m256i nlo, nhi_bit;
            nibbles(_mm256_loadu_si256((const __m256i *)(q + 1)), &nlo, &nhi_bit);
            /* the bytes after each of the block's that are the line's: n - at - 1 of them in the last block
             * (none after a last block of one byte, where a shift by 32 would be undefined) */
            uint32_t nextmask = at + 33 <= n ? 0xFFFFFFFFu : n - at == 1 ? 0 : 0xFFFFFFFFu >> (33 - (n - at));
            sentinels &= class_of(nlo, nhi_bit, f, C_NEXT) & nextmask;
            if (marker_in(p, n, at, sentinels, f))
                return 1;
        }
    }
    return 0;
}

/* The nibble tables of each class; 0 when a class holds a byte over 0x7F (then the SSE2 path). */
static int luts_of(ccf_fold *f)
{
    memset(f->lut, 0, sizeof f->lut);
    for (int c = 0; c < 256; c++) {
        int in[5] = {f->is_zero[c], f->dropped[c], f->is_sentinel[c], f->is_needle[c],
                     f->dropped[c] || f->first[f->table[c]]};
        for (int k = 0; k < 5; k++) {
            if (!in[k])
                continue;
            if (c > 0x7F)
                return 0;
            f->lut[k][c & 0x0F] |= (unsigned char)(1u << (c >> 4));
        }
    }
    for (int c = 0; c < 128; c++)
        f->has_needle |= f->is_needle[c];
    return 1;
}
#endif

static int vectors_of(ccf_fold *f)
{
    f->n_zero_extra = f->n_dropped = f->n_sentinel = f->n_needle = f->n_next = 0;
    if (f->zeros > 31)
        return 0;
    for (int c = 0; c < 256; c++) {
        if (c >= '0' && c <= '9' && !f->is_zero[c] && f->zeros > 0)
            return 0;
        if (f->is_zero[c] && !(c >= '0' && c <= '9') && !vector_of(f->zero_extra, &f->n_zero_extra, c, W_ZERO))
            return 0;
        if (f->dropped[c] && !vector_of(f->dropped_v, &f->n_dropped, c, W_DROPPED))
            return 0;
        if (f->is_sentinel[c] && !vector_of(f->sentinel_v, &f->n_sentinel, c, W_SENTINEL))
            return 0;
        if (f->is_needle[c] && !vector_of(f->needle_v, &f->n_needle, c, W_NEEDLE))
            return 0;
        if ((f->dropped[c] || f->first[f->table[c]]) && !vector_of(f->next_v, &f->n_next, c, W_NEXT))
            return 0;
    }
    return 1;
}
#endif

int ccf_fold_init(ccf_fold *f, const ccf_fold_spec *spec)
{
    if (spec->nsuffix < 0 || spec->nsuffix > CCF_MAX_SUFFIXES)
        return -1;
    memset(f, 0, sizeof *f);
    memcpy(f->table, spec->table, 256);
    f->zeros = spec->zeros;
    f->json = spec->json;
    for (int k = 0; k < spec->nsuffix; k++) {
        if (spec->suffix_len[k] == 0 || spec->suffix_len[k] > 8)
            return -1;
        memcpy(f->suffix[k], spec->suffix[k], spec->suffix_len[k]);
        f->suffix_len[k] = (unsigned char)spec->suffix_len[k];
        for (int c = 0; c < 256; c++)
            if (folded_is(f->suffix[k][0], (unsigned char)c)) {
                f->first[c] = 1;
                f->starting[c] |= (unsigned char)(1u << k);
            }
        f->nsuffix = k + 1;
    }
    for (size_t k = 0; k < spec->ndrop; k++)
        f->dropped[spec->drop[k]] = 1;
    for (int c = 0; c < 256; c++) {
        f->is_zero[c] = f->zeros > 0 && !f->dropped[c] && f->table[c] == '0';
        f->keep[c] = f->dropped[c] || f->is_zero[c]; /* what does not end a run of zeros */
        f->is_sentinel[c] = !f->dropped[c] && f->table[c] == 1;
        f->is_needle[c] = !f->dropped[c] && (long)f->table[c] == spec->needle;
    }
#if defined(__SSE2__)
    f->simd = spec->vector && vectors_of(f);
#ifdef HAVE_AVX2_PATH
    f->avx2 = spec->vector == 1 && have_avx2 && f->zeros <= 31 && luts_of(f);
#endif
#endif
    return 0;
}

int ccf_fold_hit(const unsigned char *p, ccf_ssize n, const ccf_fold *f)
{
#if defined(__SSE2__)
#ifdef HAVE_AVX2_PATH
    return f->avx2 ? hit_avx2(p, n, f) : f->simd ? hit_vector(p, n, f) : hit_scalar(p, n, f);
#else
    return f->simd ? hit_vector(p, n, f) : hit_scalar(p, n, f);
#endif
#else
    return hit_scalar(p, n, f);
#endif
}
