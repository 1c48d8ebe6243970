/* The two timestamp forms Winston writes, read without Python (stamp.c), as TimestampParser
 * reads them (datetime.fromisoformat): "YYYY-MM-DD HH:MM:SS" (or with T) in the input's zone
 * when that is UTC, and "YYYY-MM-DDTHH:MM:SS.mmmZ". */
#ifndef CCF_STAMP_H
#define CCF_STAMP_H

#include "ccf.h"

/* 1 with the stamp's ISO 8601 UTC form in iso ("YYYY-MM-DDTHH:MM:SS.mmmZ", 24 bytes, no NUL)
 * and its microseconds since the epoch in *us (under 2^53 in magnitude: us / 1e6 is then
 * Python's epoch seconds exactly); 0 for anything else (TimestampParser decides those). local_utc: the input's timezone is UTC and no strptime formats are configured (the
 * first form is then UTC); iso_z: no strptime formats are configured. */
int ccf_stamp(const char *t, ccf_ssize len, int local_utc, int iso_z, char iso[24], long long *us);

#endif
