/* The pipeline's per-line loop for Winston JSON, in C.
 *
 * Same steps, same order and same results as the loop in process.py (tests/pipeline/
 * test_fast.py holds them equal on the corpus and on generated lines): parse with orjson,
 * look the record's shape up, redact through the Python redactor when it has to, splice
 * @timestamp and the constant enrichment into the raw bytes, make the deterministic id.
 * What it saves is the interpreter's work per line (~60 bytecodes), which was half of the
 * agent's CPU time; every decision that is not the common case stays in Python, called back.
 *
 * Also here: the redaction prefilter's fold-and-scan over a batch's lines, one pass per line.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ------------------------------------------------------------------ crc32 (zlib's, slice-by-8) */

static uint32_t crc_table[8][256];

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc_table[0][n];
        for (int t = 1; t < 8; t++) {
            c = crc_table[0][c & 0xff] ^ (c >> 8);
            crc_table[t][n] = c;
        }
    }
}

static uint32_t crc32_of(const unsigned char *p, Py_ssize_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + 4, 4);
        a ^= c; /* little-endian: the build targets x86-64 and arm64 */
        c = crc_table[7][a & 0xff] ^ crc_table[6][(a >> 8) & 0xff] ^ crc_table[5][(a >> 16) & 0xff]
            ^ crc_table[4][a >> 24] ^ crc_table[3][b & 0xff] ^ crc_table[2][(b >> 8) & 0xff]
            ^ crc_table[1][(b >> 16) & 0xff] ^ crc_table[0][b >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static PyObject *py_crc32(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    uint32_t c = crc32_of(view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

/* ------------------------------------------------------------------ helpers */

static int all_space(const char *p, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = p[i];
        if (!(c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c'))
            return 0;
    }
    return 1;
}

/* reserved.isdisjoint(rec): 1, 0, or -1 on error */
static int disjoint(PyObject *reserved, PyObject *rec)
{
    if (PySet_GET_SIZE(reserved) > PyDict_GET_SIZE(rec)) {
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        while (PyDict_Next(rec, &pos, &key, &value)) {
            int has = PySet_Contains(reserved, key);
            if (has != 0)
                return has < 0 ? -1 : 0;
        }
        return 1;
    }
    PyObject *it = PyObject_GetIter(reserved), *key;
    if (it == NULL)
        return -1;
    while ((key = PyIter_Next(it)) != NULL) {
        int has = PyDict_Contains(rec, key);
        Py_DECREF(key);
        if (has != 0) {
            Py_DECREF(it);
            return has < 0 ? -1 : 0;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 1;
}

static char *put(char *w, const char *s, Py_ssize_t n)
{
    memcpy(w, s, n);
    return w + n;
}

/* A (doc, stamp) or (doc, stamp, rec) tuple from a Python callback, checked. */
static int unpack_doc(PyObject *got, Py_ssize_t size, PyObject **doc, PyObject **stamp, PyObject **rec)
{
    if (!PyTuple_Check(got) || PyTuple_GET_SIZE(got) != size) {
        PyErr_SetString(PyExc_TypeError, "pipeline callback returned an unexpected value");
        return -1;
    }
    *doc = PyTuple_GET_ITEM(got, 0);
    *stamp = PyTuple_GET_ITEM(got, 1);
    if (rec != NULL)
        *rec = PyTuple_GET_ITEM(got, 2);
    return 0;
}

static int append_event(PyObject *records, PyObject *docs, PyObject *ids, PyObject *stamps,
                        PyObject *times, PyObject *rec, PyObject *doc, PyObject *id, PyObject *stamp)
{
    if (!PyTuple_Check(stamp) || PyTuple_GET_SIZE(stamp) != 2) {
        PyErr_SetString(PyExc_TypeError, "a stamp is (iso bytes, epoch seconds)");
        return -1;
    }
    if (PyList_Append(records, rec) < 0 || PyList_Append(docs, doc) < 0 || PyList_Append(ids, id) < 0
        || PyList_Append(stamps, PyTuple_GET_ITEM(stamp, 0)) < 0
        || PyList_Append(times, PyTuple_GET_ITEM(stamp, 1)) < 0)
        return -1;
    return 0;
}

static const char HEX[] = "0123456789abcdef";

/* b"%d" % v into out (24 bytes): its length */
static int decimal(char *out, long long v)
{
    char rev[24];
    int r = 0, n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        rev[r++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[n++] = '-';
    while (r)
        out[n++] = rev[--r];
    return n;
}

/* sid + b"%x-%08x" % (lo, crc) */
static PyObject *make_id(PyObject *sid, long long lo, uint32_t crc)
{
    char tail[32];
    int n = 0;
    char rev[20];
    int r = 0;
    unsigned long long v = (unsigned long long)lo;
    do {
        rev[r++] = HEX[v & 15];
        v >>= 4;
    } while (v);
    while (r)
        tail[n++] = rev[--r];
    tail[n++] = '-';
    for (int k = 7; k >= 0; k--)
        tail[n++] = HEX[(crc >> (4 * k)) & 15];
    Py_ssize_t ns = PyBytes_GET_SIZE(sid);
    PyObject *id = PyBytes_FromStringAndSize(NULL, ns + n);
    if (id == NULL)
        return NULL;
    char *w = PyBytes_AS_STRING(id);
    memcpy(w, PyBytes_AS_STRING(sid), ns);
    memcpy(w + ns, tail, n);
    return id;
}

/* ------------------------------------------------------------------ masking top-level fields */

/* A str whose JSON encoding is its own characters between quotes (as orjson writes it). */
static int verbatim(PyObject *s)
{
    if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_ASCII(s))
        return 0;
    const Py_UCS1 *p = PyUnicode_1BYTE_DATA(s);
    for (Py_ssize_t k = 0, n = PyUnicode_GET_LENGTH(s); k < n; k++)
        if (p[k] < 0x20 || p[k] == '"' || p[k] == '\\' || p[k] == 0x7f)
            return 0;
    return 1;
}

static Py_ssize_t count_of(const char *hay, Py_ssize_t n, const char *needle, Py_ssize_t m)
{
    Py_ssize_t count = 0;
    const char *p = hay, *end = hay + n;
    while (p + m <= end) {
        const char *f = memmem(p, end - p, needle, m);
        if (f == NULL)
            break;
        count++;
        p = f + m;
    }
    return count;
}

/* Redactor.top_level_names for the common case: every sensitive key is masked (none dropped),
 * and each key and string value is written verbatim, once, in the raw line. Returns the new
 * line (the record is then masked too), Py_None when every value already is the mask, or NULL
 * with no exception set when Python must decide (nothing was changed then). */
static PyObject *mask_fast(PyObject *line, PyObject *rec, PyObject *keys, PyObject *mask, PyObject *mask_json,
                           long long *fields)
{
    Py_ssize_t nkeys = PyTuple_GET_SIZE(keys);
    if (nkeys > 16)
        return NULL;
    int masked[16] = {0};
    PyObject *out = Py_NewRef(line);
    int changed = 0;
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *key = PyTuple_GET_ITEM(keys, k);
        PyObject *value = PyDict_GetItemWithError(rec, key);
        if (value == NULL || !verbatim(key) || !PyUnicode_CheckExact(value))
            goto python;
        int same = PyUnicode_Compare(value, mask);
        if (same == -1 && PyErr_Occurred())
            goto python;
        if (same == 0)
            continue;
        if (!verbatim(value))
            goto python;
        Py_ssize_t nk = PyUnicode_GET_LENGTH(key), nv = PyUnicode_GET_LENGTH(value);
        Py_ssize_t nhead = nk + 3, nneedle = nhead + nv + 2;
        char stack[512];
        char *needle = nneedle <= (Py_ssize_t)sizeof stack ? stack : PyMem_Malloc(nneedle);
        if (needle == NULL)
            goto python;
        needle[0] = '"';
        memcpy(needle + 1, PyUnicode_1BYTE_DATA(key), nk);
        memcpy(needle + 1 + nk, "\":\"", 3);
        memcpy(needle + nhead + 1, PyUnicode_1BYTE_DATA(value), nv);
        needle[nneedle - 1] = '"';
        const char *text = PyBytes_AS_STRING(out);
        Py_ssize_t n = PyBytes_GET_SIZE(out);
        const char *at = memmem(text, n, needle, nneedle);
        int ok = at != NULL && count_of(text, n, needle, nhead) == 1;
        Py_ssize_t i = ok ? at - text : 0, j = i + nneedle;
        ok = ok && j < n && (text[j] == ',' || text[j] == '}');
        if (needle != stack)
            PyMem_Free(needle);
        if (!ok)
            goto python;
        Py_ssize_t nm = PyBytes_GET_SIZE(mask_json);
        PyObject *spliced = PyBytes_FromStringAndSize(NULL, i + nhead + nm + (n - j));
        if (spliced == NULL)
            goto python;
        char *w = PyBytes_AS_STRING(spliced);
        w = put(w, text, i + nhead);
        w = put(w, PyBytes_AS_STRING(mask_json), nm);
        put(w, text + j, n - j);
        Py_SETREF(out, spliced);
        masked[k] = 1;
        changed++;
    }
    if (!changed) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    for (Py_ssize_t k = 0; k < nkeys; k++)
        if (masked[k] && PyDict_SetItem(rec, PyTuple_GET_ITEM(keys, k), mask) < 0) {
            Py_DECREF(out);
            return NULL; /* an exception is set: the caller fails */
        }
    *fields += changed;
    return out;
python:
    PyErr_Clear();
    Py_DECREF(out);
    return NULL;
}

/* ------------------------------------------------------------------ the loop */

enum {
    A_LINES, A_START, A_SID, A_PATH_PART, A_END, A_HITS, A_SHAPES, A_NEW_SHAPE, A_RESERVED,
    A_TS_FIELD, A_TS_CACHE, A_PARSE_TS, A_PARSE_ANY, A_DEFAULT_STAMP, A_REDACT, A_MASK_TOP, A_NAMES,
    A_MASK, A_MASK_JSON, A_DICT_DOC, A_BAD_TS, A_ODD, A_LOADS, A_DECODE_ERROR,
    A_RECORDS, A_DOCS, A_IDS, A_STAMPS, A_TIMES, N_ARGS
};

static const char TS_HEAD[] = ",\"@timestamp\":\"";

static PyObject *json_lines(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != N_ARGS) {
        PyErr_Format(PyExc_TypeError, "json_lines takes %d arguments", N_ARGS);
        return NULL;
    }
    PyObject *lines = args[A_LINES], *sid = args[A_SID], *path_part = args[A_PATH_PART], *end = args[A_END];
    PyObject *hits = args[A_HITS], *shapes = args[A_SHAPES], *new_shape = args[A_NEW_SHAPE];
    PyObject *reserved = args[A_RESERVED], *ts_field = args[A_TS_FIELD], *ts_cache = args[A_TS_CACHE];
    PyObject *parse_ts = args[A_PARSE_TS], *parse_any = args[A_PARSE_ANY];
    PyObject *default_stamp = args[A_DEFAULT_STAMP], *redact = args[A_REDACT], *mask_top = args[A_MASK_TOP];
    PyObject *mask = args[A_MASK], *mask_json = args[A_MASK_JSON];
    PyObject *dict_doc = args[A_DICT_DOC], *bad_ts = args[A_BAD_TS], *odd = args[A_ODD];
    PyObject *loads = args[A_LOADS], *decode_error = args[A_DECODE_ERROR];
    PyObject *records = args[A_RECORDS], *docs = args[A_DOCS], *ids = args[A_IDS];
    PyObject *stamps = args[A_STAMPS], *times = args[A_TIMES];
    if (!PyList_CheckExact(lines) || !PyBytes_CheckExact(sid) || !PyBytes_CheckExact(path_part)
        || !PyBytes_CheckExact(end) || !PyAnySet_Check(hits) || !PyDict_CheckExact(shapes)
        || !PyAnySet_Check(reserved) || !PyUnicode_CheckExact(ts_field) || !PyDict_CheckExact(ts_cache)
        || !PyList_CheckExact(records) || !PyList_CheckExact(docs) || !PyList_CheckExact(ids)
        || !PyList_CheckExact(stamps) || !PyList_CheckExact(times)
        || (redact != Py_None && (!PyUnicode_CheckExact(mask) || !PyBytes_CheckExact(mask_json)))) {
        PyErr_SetString(PyExc_TypeError, "json_lines: argument of the wrong type");
        return NULL;
    }
    long long offset = PyLong_AsLongLong(args[A_START]);
    if (offset == -1 && PyErr_Occurred())
        return NULL;
    int names = PyObject_IsTrue(args[A_NAMES]);
    if (names < 0)
        return NULL;
    int redacting = redact != Py_None;
    int any_hits = PySet_GET_SIZE(hits) > 0;
    Py_ssize_t n_ts_head = sizeof(TS_HEAD) - 1;
    Py_ssize_t n_lines = PyList_GET_SIZE(lines);
    long long masked_records = 0, masked_fields = 0;

    for (Py_ssize_t i = 0; i < n_lines; i++) {
        PyObject *raw = PyList_GET_ITEM(lines, i);
        if (!PyBytes_CheckExact(raw)) {
            PyErr_SetString(PyExc_TypeError, "json_lines: lines must be bytes");
            return NULL;
        }
        Py_ssize_t n = PyBytes_GET_SIZE(raw);
        long long lo = offset;
        offset += n + 1;
        if (n == 0 || all_space(PyBytes_AS_STRING(raw), n))
            continue;

        PyObject *rec = NULL, *line = NULL, *doc = NULL, *stamp = NULL, *got = NULL, *id = NULL;
        PyObject *shape_keys = NULL, *redacted = NULL, *hit_obj = NULL;
        int hit = 0;
        if (any_hits) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL)
                return NULL;
            hit = PySet_Contains(hits, index);
            Py_DECREF(index);
            if (hit < 0)
                return NULL;
        }
        hit_obj = hit ? Py_True : Py_False;
        Py_INCREF(raw);
        line = raw;

        rec = PyObject_Vectorcall(loads, &raw, 1, NULL);
        if (rec == NULL) {
            if (!PyErr_ExceptionMatches(decode_error))
                goto error;
            PyErr_Clear();
            rec = Py_NewRef(Py_None);
        }
        if (PyDict_CheckExact(rec) && PyDict_GET_SIZE(rec) > 0) {
            int plain;
            PyObject *sensitive = NULL; /* borrowed from the shape */
            PyObject *shape = NULL;
            if (!redacting) {
                plain = disjoint(reserved, rec);
                if (plain < 0)
                    goto error;
            } else {
                shape_keys = PyTuple_New(PyDict_GET_SIZE(rec));
                if (shape_keys == NULL)
                    goto error;
                {
                    PyObject *key, *value;
                    Py_ssize_t pos = 0, k = 0;
                    while (PyDict_Next(rec, &pos, &key, &value))
                        PyTuple_SET_ITEM(shape_keys, k++, Py_NewRef(key));
                }
                shape = PyDict_GetItemWithError(shapes, shape_keys);
                if (shape != NULL) {
                    Py_INCREF(shape);
                } else {
                    if (PyErr_Occurred())
                        goto error;
                    shape = PyObject_CallOneArg(new_shape, shape_keys);
                    if (shape == NULL)
                        goto error;
                }
                if (!PyTuple_Check(shape) || PyTuple_GET_SIZE(shape) != 3
                    || !PyTuple_Check(PyTuple_GET_ITEM(shape, 1))) {
                    Py_DECREF(shape);
                    PyErr_SetString(PyExc_TypeError, "a shape is (plain, sensitive keys, all masked)");
                    goto error;
                }
                plain = PyObject_IsTrue(PyTuple_GET_ITEM(shape, 0));
                sensitive = PyTuple_GET_ITEM(shape, 1);
                int all_mask = PyTuple_GET_ITEM(shape, 2) == Py_True;
                /* keep the shape alive while `sensitive` is used: hold it in shape_keys' place */
                Py_SETREF(shape_keys, shape);
                if (plain < 0)
                    goto error;
                int nested = 0;
                if (names) {
                    const char *p = PyBytes_AS_STRING(line);
                    for (Py_ssize_t k = n - 1; k > 0 && !nested; k--)
                        nested = p[k] == '{';
                }
                if (hit || nested) {
                    PyObject *call[4] = {line, rec, hit_obj, sensitive};
                    redacted = PyObject_Vectorcall(redact, call, 4, NULL);
                } else if (PyTuple_GET_SIZE(sensitive) > 0) {
                    redacted = all_mask ? mask_fast(line, rec, sensitive, mask, mask_json, &masked_fields) : NULL;
                    if (redacted != NULL && redacted != Py_None) {
                        masked_records++;
                    } else if (redacted == NULL) {
                        if (PyErr_Occurred())
                            goto error;
                        PyObject *call[3] = {line, rec, sensitive};
                        redacted = PyObject_Vectorcall(mask_top, call, 3, NULL);
                    }
                } else {
                    redacted = Py_NewRef(Py_None);
                }
                if (redacted == NULL)
                    goto error;
                if (redacted != Py_None) {
                    if (!PyBytes_CheckExact(redacted)) {
                        PyErr_SetString(PyExc_TypeError, "redaction must return bytes or None");
                        goto error;
                    }
                    Py_SETREF(line, Py_NewRef(redacted));
                    if (plain) {
                        plain = PyDict_GET_SIZE(rec) > 0 ? disjoint(reserved, rec) : 0;
                        if (plain < 0)
                            goto error;
                    }
                }
            }
            Py_ssize_t ln = PyBytes_GET_SIZE(line);
            if (plain && ln > 0 && PyBytes_AS_STRING(line)[ln - 1] == '}') {
                PyObject *ts = PyDict_GetItemWithError(rec, ts_field);
                if (ts == NULL || ts == Py_None) {
                    if (PyErr_Occurred())
                        goto error;
                    stamp = Py_NewRef(default_stamp);
                } else if (PyUnicode_CheckExact(ts)) {
                    stamp = PyDict_GetItemWithError(ts_cache, ts);
                    if (stamp != NULL)
                        Py_INCREF(stamp);
                    else if (PyErr_Occurred())
                        goto error;
                    else if ((stamp = PyObject_CallOneArg(parse_ts, ts)) == NULL)
                        goto error;
                } else if ((stamp = PyObject_CallOneArg(parse_any, ts)) == NULL) {
                    goto error;
                }
                if (stamp == Py_None) {
                    Py_CLEAR(stamp);
                    PyObject *lo_obj = PyLong_FromLongLong(lo);
                    if (lo_obj == NULL)
                        goto error;
                    PyObject *call[2] = {rec, lo_obj};
                    got = PyObject_Vectorcall(bad_ts, call, 2, NULL);
                    Py_DECREF(lo_obj);
                    if (got == NULL || unpack_doc(got, 2, &doc, &stamp, NULL) < 0)
                        goto error;
                    Py_INCREF(doc);
                    Py_INCREF(stamp);
                } else {
                    if (!PyTuple_Check(stamp) || PyTuple_GET_SIZE(stamp) != 2
                        || !PyBytes_Check(PyTuple_GET_ITEM(stamp, 0))) {
                        PyErr_SetString(PyExc_TypeError, "a stamp is (iso bytes, epoch seconds)");
                        goto error;
                    }
                    PyObject *iso = PyTuple_GET_ITEM(stamp, 0);
                    char num[24];
                    int nnum = decimal(num, lo);
                    Py_ssize_t size = (ln - 1) + n_ts_head + PyBytes_GET_SIZE(iso) + PyBytes_GET_SIZE(path_part)
                                      + nnum + PyBytes_GET_SIZE(end);
                    doc = PyBytes_FromStringAndSize(NULL, size);
                    if (doc == NULL)
                        goto error;
                    char *w = PyBytes_AS_STRING(doc);
                    w = put(w, PyBytes_AS_STRING(line), ln - 1);
                    w = put(w, TS_HEAD, n_ts_head);
                    w = put(w, PyBytes_AS_STRING(iso), PyBytes_GET_SIZE(iso));
                    w = put(w, PyBytes_AS_STRING(path_part), PyBytes_GET_SIZE(path_part));
                    w = put(w, num, nnum);
                    put(w, PyBytes_AS_STRING(end), PyBytes_GET_SIZE(end));
                }
            } else {
                PyObject *lo_obj = PyLong_FromLongLong(lo);
                if (lo_obj == NULL)
                    goto error;
                PyObject *call[2] = {rec, lo_obj};
                got = PyObject_Vectorcall(dict_doc, call, 2, NULL);
                Py_DECREF(lo_obj);
                if (got == NULL || unpack_doc(got, 2, &doc, &stamp, NULL) < 0)
                    goto error;
                Py_INCREF(doc);
                Py_INCREF(stamp);
            }
        } else {
            PyObject *lo_obj = PyLong_FromLongLong(lo);
            if (lo_obj == NULL)
                goto error;
            PyObject *call[4] = {rec, line, lo_obj, hit_obj};
            got = PyObject_Vectorcall(odd, call, 4, NULL);
            Py_DECREF(lo_obj);
            if (got == NULL)
                goto error;
            if (got == Py_None) { /* dropped by a rule */
                Py_DECREF(got);
                Py_DECREF(rec);
                Py_DECREF(line);
                continue;
            }
            PyObject *new_rec;
            if (unpack_doc(got, 3, &doc, &stamp, &new_rec) < 0)
                goto error;
            Py_INCREF(doc);
            Py_INCREF(stamp);
            Py_SETREF(rec, Py_NewRef(new_rec));
        }
        id = make_id(sid, lo, crc32_of((const unsigned char *)PyBytes_AS_STRING(raw), n));
        if (id == NULL || append_event(records, docs, ids, stamps, times, rec, doc, id, stamp) < 0)
            goto error;
        Py_DECREF(id);
        Py_DECREF(doc);
        Py_DECREF(stamp);
        Py_XDECREF(got);
        Py_XDECREF(redacted);
        Py_XDECREF(shape_keys);
        Py_DECREF(rec);
        Py_DECREF(line);
        continue;
    error:
        Py_XDECREF(id);
        Py_XDECREF(doc);
        Py_XDECREF(stamp);
        Py_XDECREF(got);
        Py_XDECREF(redacted);
        Py_XDECREF(shape_keys);
        Py_XDECREF(rec);
        Py_XDECREF(line);
        return NULL;
    }
    return Py_BuildValue("(LL)", masked_records, masked_fields);
}

/* ------------------------------------------------------------------ redaction prefilter */

/* Redactor.scan's fold, per line: `table` maps each byte and bytes in `drop` vanish. A line is
 * a hit when its folded text holds a run of `zeros` '0's (a card; 0 = cards off), the `needle`
 * byte (-1: none), or the sentinel (folded 1) followed by one of `suffixes` (at most 8 bytes;
 * a suffix byte 0xFF matches a folded hex digit of a \uXXXX escape: "0", a-f, A-F or 1). */
typedef struct {
    const unsigned char *table;
    PyObject *suffixes;
    Py_ssize_t zeros;
    unsigned char dropped[256], is_zero[256], keep[256], is_sentinel[256], is_needle[256], first[256];
#if defined(__SSE2__)
#define SIMD_VALUES 12
    int simd, n_zero_extra, n_dropped, n_sentinel, n_needle, n_next;
    __m128i zero_extra[SIMD_VALUES], dropped_v[SIMD_VALUES], sentinel_v[SIMD_VALUES], needle_v[SIMD_VALUES],
        next_v[SIMD_VALUES];
#endif
} Fold;

static int marker_at(const unsigned char *raw, Py_ssize_t n, Py_ssize_t k, const Fold *f)
{
    unsigned char folded[8];
    int m = 0;
    for (Py_ssize_t j = k + 1; j < n && m < 8; j++)
        if (!f->dropped[raw[j]])
            folded[m++] = f->table[raw[j]];
    for (Py_ssize_t s = 0; s < PyTuple_GET_SIZE(f->suffixes); s++) {
        PyObject *suffix = PyTuple_GET_ITEM(f->suffixes, s);
        Py_ssize_t ns = PyBytes_GET_SIZE(suffix);
        const unsigned char *sp = (const unsigned char *)PyBytes_AS_STRING(suffix);
        if (ns > m)
            continue;
        Py_ssize_t j = 0;
        for (; j < ns; j++) {
            unsigned char want = sp[j], have = folded[j];
            if (want == 0xFF) {
                if (!(have == '0' || (have >= 'a' && have <= 'f') || (have >= 'A' && have <= 'F') || have == 1))
                    break;
            } else if (want != have) {
                break;
            }
        }
        if (j == ns)
            return 1;
    }
    return 0;
}

/* The count of zeros in the run of zeros-or-dropped bytes around position a reaches `zeros`?
 * Sets *end to the run's end. */
static int zeros_around(const unsigned char *p, Py_ssize_t n, Py_ssize_t a, const Fold *f, Py_ssize_t *end)
{
    Py_ssize_t j = a, count = 0;
    while (j > 0 && f->keep[p[j - 1]])
        j--;
    for (; j < n && f->keep[p[j]]; j++)
        count += f->is_zero[p[j]];
    *end = j;
    return count >= f->zeros;
}

static int hit_scalar(const unsigned char *p, Py_ssize_t n, const Fold *f)
{
    uint32_t run = 0;
    int found = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        unsigned char c = p[k];
        run = (run + f->is_zero[c]) * f->keep[c];
        found |= f->zeros > 0 && run >= (uint32_t)f->zeros;
        found |= f->is_needle[c];
    }
    for (Py_ssize_t k = 0; !found && k < n; k++) {
        if (!f->is_sentinel[p[k]])
            continue;
        Py_ssize_t j = k + 1;
        while (j < n && f->dropped[p[j]])
            j++;
        if (j < n && f->first[f->table[p[j]]])
            found = marker_at(p, n, k, f);
    }
    return found;
}

#if defined(__SSE2__)
static int vector_of(__m128i *v, int *n, int c)
{
    if (*n == SIMD_VALUES)
        return 0;
    v[(*n)++] = _mm_set1_epi8((char)c);
    return 1;
}

static inline unsigned any_of(__m128i block, const __m128i *values, int n)
{
    __m128i hit = _mm_setzero_si128();
    for (int k = 0; k < n; k++)
        hit = _mm_or_si128(hit, _mm_cmpeq_epi8(block, values[k]));
    return (unsigned)_mm_movemask_epi8(hit);
}

/* Bit i set when bits i .. i+len-1 of w are all set (len <= 31). */
static inline uint32_t runs_of(uint32_t w, Py_ssize_t len)
{
    uint32_t acc = 0xFFFFFFFFu, power = w;
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
static int hit_vector(const unsigned char *p, Py_ssize_t n, const Fold *f)
{
    const __m128i below = _mm_set1_epi8('0' - 1), above = _mm_set1_epi8('9' + 1);
    unsigned char pad[32];
    uint32_t prev_keep = 0;
    Py_ssize_t checked = 0;
    for (Py_ssize_t at = 0; at < n; at += 16) {
        const unsigned char *q = p + at;
        Py_ssize_t len = n - at < 16 ? n - at : 16;
        if (n - at < 17) { /* the block and the byte after it, zero-padded: 0 is a breaker */
            memset(pad, 0, sizeof pad);
            memcpy(pad, q, n - at);
            q = pad;
        }
        __m128i block = _mm_loadu_si128((const __m128i *)q);
        unsigned lenmask = 0xFFFFu >> (16 - len);
        if (any_of(block, f->needle_v, f->n_needle) & lenmask)
            return 1;
        if (f->zeros > 0) {
            unsigned digits = (unsigned)_mm_movemask_epi8(
                _mm_and_si128(_mm_cmpgt_epi8(block, below), _mm_cmplt_epi8(block, above)));
            unsigned zmask = (digits | any_of(block, f->zero_extra, f->n_zero_extra)) & lenmask;
            unsigned kmask = zmask ? zmask | (any_of(block, f->dropped_v, f->n_dropped) & lenmask) : 0;
            if (zmask == 0 && prev_keep) /* a run may still continue through dropped bytes */
                kmask = any_of(block, f->dropped_v, f->n_dropped) & lenmask;
            uint32_t starts = kmask ? runs_of(prev_keep | kmask << 16, f->zeros) : 0;
            while (starts) {
                Py_ssize_t a = at - 16 + __builtin_ctz(starts);
                starts &= starts - 1;
                if (a < checked)
                    continue;
                if (zeros_around(p, n, a, f, &checked))
                    return 1;
            }
            prev_keep = kmask;
        }
        unsigned sentinels = any_of(block, f->sentinel_v, f->n_sentinel) & lenmask;
        if (sentinels) {
            __m128i next = _mm_loadu_si128((const __m128i *)(q + 1));
            unsigned nextmask = at + 17 <= n ? 0xFFFFu : 0xFFFFu >> (17 - (n - at));
            sentinels &= any_of(next, f->next_v, f->n_next) & nextmask;
            while (sentinels) {
                Py_ssize_t k = at + __builtin_ctz(sentinels);
                sentinels &= sentinels - 1;
                if (marker_at(p, n, k, f))
                    return 1;
            }
        }
    }
    return 0;
}

static int vectors_of(Fold *f)
{
    f->n_zero_extra = f->n_dropped = f->n_sentinel = f->n_needle = f->n_next = 0;
    if (f->zeros > 31)
        return 0;
    for (int c = 0; c < 256; c++) {
        if (c >= '0' && c <= '9' && !f->is_zero[c] && f->zeros > 0)
            return 0;
        if (f->is_zero[c] && !(c >= '0' && c <= '9') && !vector_of(f->zero_extra, &f->n_zero_extra, c))
            return 0;
        if (f->dropped[c] && !vector_of(f->dropped_v, &f->n_dropped, c))
            return 0;
        if (f->is_sentinel[c] && !vector_of(f->sentinel_v, &f->n_sentinel, c))
            return 0;
        if (f->is_needle[c] && !vector_of(f->needle_v, &f->n_needle, c))
            return 0;
        if ((f->dropped[c] || f->first[f->table[c]]) && !vector_of(f->next_v, &f->n_next, c))
            return 0;
    }
    return 1;
}
#endif

/* prefilter(lines, table, drop, zeros, needle, suffixes[, vector]): the indices of the lines
 * that hit. vector=False takes the scalar path (for tests; it is also the path without SSE2). */
static PyObject *prefilter(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 && nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "prefilter(lines, table, drop, zeros, needle, suffixes[, vector])");
        return NULL;
    }
    int vector = nargs == 7 ? PyObject_IsTrue(args[6]) : 1;
    if (vector < 0)
        return NULL;
    PyObject *lines = args[0], *table_obj = args[1], *drop_obj = args[2], *suffixes = args[5];
    if (!PyList_CheckExact(lines) || !PyBytes_CheckExact(table_obj) || PyBytes_GET_SIZE(table_obj) != 256
        || !PyBytes_CheckExact(drop_obj) || !PyTuple_CheckExact(suffixes)) {
        PyErr_SetString(PyExc_TypeError, "prefilter: argument of the wrong type");
        return NULL;
    }
    Fold f;
    memset(&f, 0, sizeof f);
    f.table = (const unsigned char *)PyBytes_AS_STRING(table_obj);
    f.suffixes = suffixes;
    f.zeros = PyLong_AsSsize_t(args[3]);
    long needle = PyLong_AsLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(suffixes); k++) {
        PyObject *suffix = PyTuple_GET_ITEM(suffixes, k);
        if (!PyBytes_CheckExact(suffix) || PyBytes_GET_SIZE(suffix) == 0 || PyBytes_GET_SIZE(suffix) > 8) {
            PyErr_SetString(PyExc_TypeError, "prefilter: suffixes are bytes of 1 to 8");
            return NULL;
        }
        unsigned char c = (unsigned char)PyBytes_AS_STRING(suffix)[0];
        if (c == 0xFF)
            memset(f.first, 1, sizeof f.first);
        else
            f.first[c] = 1;
    }
    for (Py_ssize_t k = 0; k < PyBytes_GET_SIZE(drop_obj); k++)
        f.dropped[(unsigned char)PyBytes_AS_STRING(drop_obj)[k]] = 1;
    for (int c = 0; c < 256; c++) {
        f.is_zero[c] = f.zeros > 0 && !f.dropped[c] && f.table[c] == '0';
        f.keep[c] = f.dropped[c] || f.is_zero[c]; /* what does not end a run of zeros */
        f.is_sentinel[c] = !f.dropped[c] && f.table[c] == 1;
        f.is_needle[c] = !f.dropped[c] && (long)f.table[c] == needle;
    }
#if defined(__SSE2__)
    f.simd = vector && vectors_of(&f);
#else
    (void)vector;
#endif
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lines); i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (!PyBytes_CheckExact(line)) {
            PyErr_SetString(PyExc_TypeError, "prefilter: lines must be bytes");
            Py_DECREF(out);
            return NULL;
        }
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(line);
        Py_ssize_t n = PyBytes_GET_SIZE(line);
#if defined(__SSE2__)
        int found = f.simd ? hit_vector(p, n, &f) : hit_scalar(p, n, &f);
#else
        int found = hit_scalar(p, n, &f);
#endif
        if (found) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(out, index) < 0) {
                Py_XDECREF(index);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(index);
        }
    }
    return out;
}

/* ------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"json_lines", (PyCFunction)(void (*)(void))json_lines, METH_FASTCALL,
     "The pipeline's per-line loop for JSON lines (see process.py)."},
    {"prefilter", (PyCFunction)(void (*)(void))prefilter, METH_FASTCALL,
     "Indices of the lines where a redaction pattern could match (see redact.py)."},
    {"crc32", py_crc32, METH_O, "zlib.crc32 of a bytes-like object."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fast", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fast(void)
{
    crc_init();
    return PyModule_Create(&module);
}
