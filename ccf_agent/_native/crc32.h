/* zlib's crc32 over a buffer, with no Python in it (crc32.c). */
#ifndef CCF_CRC32_H
#define CCF_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Fills the tables and picks the CPU's fastest path: once, before the first ccf_crc32. */
void ccf_crc32_init(void);

/* zlib.crc32(data) of n bytes. */
uint32_t ccf_crc32(const void *data, size_t n);

/* 1: ccf_crc32 runs the carry-less multiply path (PCLMULQDQ and SSE4.1). */
extern int ccf_have_clmul;

#endif
