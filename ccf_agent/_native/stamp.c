/* Winston's two timestamp forms, without Python (see stamp.h). tests/native/test_core.py holds
 * it to datetime.fromisoformat on its own. */
#include "stamp.h"

#include <string.h>

static int digits_at(const char *t, int at, int n, int *out)
{
    int v = 0;
    for (int k = at; k < at + n; k++) {
        if (t[k] < '0' || t[k] > '9')
            return 0;
        v = v * 10 + (t[k] - '0');
    }
    *out = v;
    return 1;
}

static long long days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    int yoe = (int)(y - era * 400);
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int ccf_stamp(const char *t, ccf_ssize len, int local_utc, int iso_z, char iso[24], long long *us)
{
    int y, mo, d, h, mi, sec, ms = 0;
    if (len == 19) {
        if (!local_utc)
            return 0;
    } else if (len == 24) {
        if (!iso_z || t[19] != '.' || !(t[23] == 'Z' || t[23] == 'z') || !digits_at(t, 20, 3, &ms))
            return 0;
    } else {
        return 0;
    }
    if (t[4] != '-' || t[7] != '-' || !(t[10] == ' ' || t[10] == 'T') || t[13] != ':' || t[16] != ':'
        || !digits_at(t, 0, 4, &y) || !digits_at(t, 5, 2, &mo) || !digits_at(t, 8, 2, &d)
        || !digits_at(t, 11, 2, &h) || !digits_at(t, 14, 2, &mi) || !digits_at(t, 17, 2, &sec))
        return 0;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 || mi > 59
        || sec > 59)
        return 0;
    *us = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) * 1000 + ms) * 1000;
    /* Past 2^53 microseconds (before 1685, after 2255) a double no longer holds every count
     * exactly, and us / 1e6 would round twice where Python's division of the integers rounds
     * once: the parser decides those, so both loops give the same epoch seconds. */
    if (*us >= (1LL << 53) || *us <= -(1LL << 53))
        return 0;
    memcpy(iso, t, 19);
    iso[10] = 'T';
    iso[19] = '.';
    iso[20] = (char)('0' + ms / 100);
    iso[21] = (char)('0' + ms / 10 % 10);
    iso[22] = (char)('0' + ms % 10);
    iso[23] = 'Z';
    return 1;
}
