/* The pipeline's per-line loop for Winston JSON, in C.
 *
 * Same steps, same order and same results as the loop in process.py (tests/pipeline/
 * test_native.py holds them equal on the corpus and on generated lines): parse with orjson,
 * look the record's shape up, redact through the Python redactor when it has to, splice
 * @timestamp and the constant enrichment into the raw bytes, make the deterministic id.
 * What it saves is the interpreter's work per line (~60 bytecodes), which was half of the
 * agent's CPU time; every decision that is not the common case stays in Python, called back.
 *
 * Also here, as the Python side of the native core: the redaction prefilter over a batch's
 * lines, rawjson.py's raw JSON scans, the ReadAhead type around the read-ahead thread, the
 * route programs, the bulk body and the business metrics' payouts.
 *
 * What needs no interpreter is in ccf_agent/_native/ as .c/.h pairs without Python.h, each
 * tested on its own (tests/native/test_core.py): the scanner (scan.c), the prefilter's fold
 * and scan (prefilter.c), Winston's timestamps (stamp.c), the read-ahead thread (readahead.c)
 * and crc32. The types this module's functions take are in _fast.pyi (tests/test_checks.py
 * holds it to the build); tests/native/sanitize.sh runs the properties under ASan/UBSan and TSan.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The core: what needs no interpreter (../../_native/) */
#include "crc32.h"
#include "prefilter.h"
#include "readahead.h"
#include "scan.h"
#include "stamp.h"

/* ------------------------------------------------------------------ crc32 */

static PyObject *py_crc32(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    uint32_t c = ccf_crc32(view.buf, (size_t)view.len);
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

/* A batch's lines: a list of bytes, or one bytes object of lines each ended by a newline (what
 * the reader read; walking it saves a bytes object per line). */
typedef struct {
    PyObject *list;
    const char *data;
    Py_ssize_t size, pos, i;
} Lines;

static int lines_init(Lines *it, PyObject *lines, const char *who)
{
    memset(it, 0, sizeof *it);
    if (PyList_CheckExact(lines)) {
        it->list = lines;
        return 0;
    }
    if (PyBytes_CheckExact(lines) && PyBytes_GET_SIZE(lines) > 0
        && PyBytes_AS_STRING(lines)[PyBytes_GET_SIZE(lines) - 1] == '\n') {
        it->data = PyBytes_AS_STRING(lines);
        it->size = PyBytes_GET_SIZE(lines);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s: lines are a list of bytes, or bytes ending with a newline", who);
    return -1;
}

/* The next line: 1 with its bytes (and *obj, borrowed, when the lines are a list; else NULL),
 * 0 after the last, -1 on error. */
static int lines_next(Lines *it, const char **p, Py_ssize_t *n, PyObject **obj)
{
    if (it->list != NULL) {
        if (it->i >= PyList_GET_SIZE(it->list))
            return 0;
        PyObject *line = PyList_GET_ITEM(it->list, it->i++);
        if (!PyBytes_CheckExact(line)) {
            PyErr_SetString(PyExc_TypeError, "lines must be bytes");
            return -1;
        }
        *p = PyBytes_AS_STRING(line);
        *n = PyBytes_GET_SIZE(line);
        *obj = line;
        return 1;
    }
    if (it->pos >= it->size)
        return 0;
    const char *at = it->data + it->pos;
    const char *nl = memchr(at, '\n', it->size - it->pos); /* found: the data ends with one */
    *p = at;
    *n = nl - at;
    *obj = NULL;
    it->pos += *n + 1;
    it->i++;
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

/* fn(rec, lo) -> (doc, stamp), a Python slow path: the result tuple, doc and stamp (new refs). */
static PyObject *doc_from(PyObject *fn, PyObject *rec, long long lo, PyObject **doc, PyObject **stamp)
{
    PyObject *lo_obj = PyLong_FromLongLong(lo);
    if (lo_obj == NULL)
        return NULL;
    PyObject *call[2] = {rec, lo_obj};
    PyObject *got = PyObject_Vectorcall(fn, call, 2, NULL);
    Py_DECREF(lo_obj);
    if (got == NULL)
        return NULL;
    if (unpack_doc(got, 2, doc, stamp, NULL) < 0) {
        Py_DECREF(got);
        return NULL;
    }
    Py_INCREF(*doc);
    Py_INCREF(*stamp);
    return got;
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

/* Bytes that are their own JSON string encoding, as orjson.dumps writes it (printable ASCII,
 * no quote or backslash); `verbatim` is the same test for a str. */
static int verbatim_span(const unsigned char *p, Py_ssize_t a, Py_ssize_t b)
{
    for (Py_ssize_t k = a; k < b; k++)
        if (p[k] < 0x20 || p[k] >= 0x7f || p[k] == '"' || p[k] == '\\')
            return 0;
    return 1;
}

static int verbatim(PyObject *s)
{
    return PyUnicode_CheckExact(s) && PyUnicode_IS_ASCII(s)
           && verbatim_span(PyUnicode_1BYTE_DATA(s), 0, PyUnicode_GET_LENGTH(s));
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
        if (same == 0) { /* already the mask, unless the key is written twice (orjson kept the last) */
            int once = count_of(text, n, needle, nhead) == 1;
            if (needle != stack)
                PyMem_Free(needle);
            if (!once)
                goto python;
            continue;
        }
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

/* ------------------------------------------------------------------ projection

 * When the consumers of a record (routes, business metrics) read only a few top-level fields,
 * building the whole dict with orjson is most of a line's cost. Instead, the scanner (scan.c)
 * validates the line strictly and notes where each top-level member is; the record is then a
 * dict of just the projected fields, and @timestamp, masking and the document come from the
 * raw bytes. Whatever the scanner is not sure of (an escape \uXXXX, an exponent, deep nesting,
 * a duplicate key, ...) takes the orjson path, so the documents and ids are those of the
 * orjson path exactly; tests/pipeline/test_native.py holds them equal. */

#define SHAPE_SLOTS 64
#define SHAPE_KEYS_MAX 2048
#define MAX_PICKS 32

/* What a record shape (its keys, in order) means, decided once by the pipeline's own shape
 * function (the one the orjson path uses) and kept by the hash of the keys. */
typedef struct {
    uint64_t hash;
    Py_ssize_t nbytes;
    char *keys;        /* the keys, each followed by 0xFF (never in UTF-8) */
    int usable;        /* 0: the orjson path decides every record of this shape */
    int plain;         /* no key collides with what the pipeline adds */
    int masked_only;   /* every sensitive key is masked, none dropped */
    int ts;            /* member index of the timestamp field, -1 if absent */
    int nsens, sens[MAX_PICKS];                      /* members to mask */
    int npicks, pick[MAX_PICKS]; PyObject *name[MAX_PICKS]; /* projected members, their names */
} Shape;

/* A short string value seen before and its str: logs repeat a handful of values per field
 * (messages, services, methods), so a projected record mostly reuses them. */
#define VALUE_BITS 8
#define VALUE_SLOTS (1 << VALUE_BITS)
#define VALUE_MAX 32
typedef struct {
    Py_ssize_t len;
    unsigned char bytes[VALUE_MAX];
    PyObject *str;
} Value;

typedef struct {
    Shape slot[SHAPE_SLOTS];
    Value values[VALUE_SLOTS];
    PyObject *project; /* the projected field names (a tuple of str) */
    PyObject *ts_stamp; /* the last timestamp seen (its bytes in ts_raw) and its stamp */
    char ts_raw[64];
    Py_ssize_t ts_len;
    int ts_local_utc; /* the input's timezone is UTC and no strptime formats are configured */
    int ts_iso_z;     /* no strptime formats are configured */
} ShapeCache;

static void shape_cache_free(PyObject *capsule)
{
    ShapeCache *c = PyCapsule_GetPointer(capsule, "ccf_agent.shape_cache");
    if (c == NULL)
        return;
    for (int k = 0; k < SHAPE_SLOTS; k++)
        PyMem_Free(c->slot[k].keys);
    for (int k = 0; k < VALUE_SLOTS; k++)
        Py_XDECREF(c->values[k].str);
    Py_XDECREF(c->project);
    Py_XDECREF(c->ts_stamp);
    PyMem_Free(c);
}

static PyObject *shape_cache(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "shape_cache(fields, local_utc, iso_z)");
        return NULL;
    }
    PyObject *project = args[0];
    if (!PyTuple_CheckExact(project) || PyTuple_GET_SIZE(project) > MAX_PICKS) {
        PyErr_Format(PyExc_ValueError, "shape_cache: a tuple of at most %d field names", MAX_PICKS);
        return NULL;
    }
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(project); k++)
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(project, k))) {
            PyErr_SetString(PyExc_TypeError, "shape_cache: field names are str");
            return NULL;
        }
    int local_utc = PyObject_IsTrue(args[1]), iso_z = PyObject_IsTrue(args[2]);
    if (local_utc < 0 || iso_z < 0)
        return NULL;
    ShapeCache *c = PyMem_Calloc(1, sizeof *c);
    if (c == NULL)
        return PyErr_NoMemory();
    c->project = Py_NewRef(project);
    c->ts_local_utc = local_utc;
    c->ts_iso_z = iso_z;
    PyObject *capsule = PyCapsule_New(c, "ccf_agent.shape_cache", shape_cache_free);
    if (capsule == NULL) {
        Py_DECREF(project);
        PyMem_Free(c);
    }
    return capsule;
}


/* Winston's two timestamp forms (stamp.c): a new (iso bytes, epoch seconds) stamp, or NULL (no
 * exception) for anything else: TimestampParser decides those. */
static PyObject *fast_stamp(const ShapeCache *c, const char *t, Py_ssize_t len)
{
    char iso[24];
    long long us;
    if (!ccf_stamp(t, len, c->ts_local_utc, c->ts_iso_z, iso, &us))
        return NULL;
    return Py_BuildValue("(y#d)", iso, (Py_ssize_t)24, (double)us / 1e6);
}


static int same_keys(const Shape *s, const unsigned char *p, const ccf_member *m, int count)
{
    const char *w = s->keys;
    for (int k = 0; k < count; k++) {
        Py_ssize_t len = m[k].key_end - m[k].key;
        if (memcmp(w, p + m[k].key, len) != 0 || (unsigned char)w[len] != 0xFF)
            return 0;
        w += len + 1;
    }
    return 1;
}

/* Fill a shape for these keys: asks new_shape(keys) -> (plain, sensitive, masked_only). */
static int shape_learn(ShapeCache *c, Shape *s, uint64_t hash, Py_ssize_t nbytes, const unsigned char *p,
                       const ccf_member *m, int count, PyObject *new_shape, PyObject *ts_field)
{
    PyMem_Free(s->keys);
    memset(s, 0, sizeof *s);
    s->keys = PyMem_Malloc(nbytes);
    if (s->keys == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->hash = hash;
    s->nbytes = nbytes;
    char *w = s->keys;
    for (int k = 0; k < count; k++) {
        Py_ssize_t len = m[k].key_end - m[k].key;
        memcpy(w, p + m[k].key, len);
        w[len] = (char)0xFF;
        w += len + 1;
    }
    PyObject *keys = PyTuple_New(count);
    if (keys == NULL)
        return -1;
    for (int k = 0; k < count; k++) {
        PyObject *key = PyUnicode_DecodeUTF8((const char *)p + m[k].key, m[k].key_end - m[k].key, "strict");
        if (key == NULL) {
            Py_DECREF(keys);
            return -1;
        }
        PyTuple_SET_ITEM(keys, k, key);
    }
    s->usable = 1;
    s->ts = -1;
    /* a key written twice: orjson keeps the last value, masking would need every one */
    for (int a = 0; a < count && s->usable; a++)
        for (int b = a + 1; b < count && s->usable; b++) {
            int eq = PyUnicode_Compare(PyTuple_GET_ITEM(keys, a), PyTuple_GET_ITEM(keys, b));
            s->usable = eq != 0;
        }
    PyObject *shape = s->usable ? PyObject_CallOneArg(new_shape, keys) : NULL;
    if (s->usable && shape == NULL) {
        Py_DECREF(keys);
        return -1;
    }
    if (shape != NULL) {
        if (!PyTuple_Check(shape) || PyTuple_GET_SIZE(shape) != 3 || !PyTuple_Check(PyTuple_GET_ITEM(shape, 1))) {
            Py_DECREF(shape);
            Py_DECREF(keys);
            PyErr_SetString(PyExc_TypeError, "a shape is (plain, sensitive keys, all masked)");
            return -1;
        }
        s->plain = PyObject_IsTrue(PyTuple_GET_ITEM(shape, 0)) == 1;
        s->masked_only = PyTuple_GET_ITEM(shape, 2) == Py_True;
        PyObject *sensitive = PyTuple_GET_ITEM(shape, 1);
        for (int k = 0; k < count; k++) {
            PyObject *key = PyTuple_GET_ITEM(keys, k);
            if (PyUnicode_Compare(key, ts_field) == 0)
                s->ts = k;
            int is_sensitive = PySequence_Contains(sensitive, key);
            if (is_sensitive < 0) {
                Py_DECREF(shape);
                Py_DECREF(keys);
                return -1;
            }
            if (is_sensitive) {
                if (s->nsens == MAX_PICKS)
                    s->usable = 0;
                else
                    s->sens[s->nsens++] = k;
            }
            for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(c->project); j++)
                if (PyUnicode_Compare(key, PyTuple_GET_ITEM(c->project, j)) == 0) {
                    s->pick[s->npicks] = k;
                    s->name[s->npicks++] = PyTuple_GET_ITEM(c->project, j);
                }
        }
        Py_DECREF(shape);
    }
    if (PyErr_Occurred()) {
        Py_DECREF(keys);
        return -1;
    }
    Py_DECREF(keys);
    return 0;
}

/* The last timestamp's bytes and stamp: consecutive records mostly share their second. */
static void remember_stamp(ShapeCache *c, const char *text, Py_ssize_t len, PyObject *stamp)
{
    if (len > (Py_ssize_t)sizeof c->ts_raw)
        return;
    memcpy(c->ts_raw, text, len);
    c->ts_len = len;
    Py_XSETREF(c->ts_stamp, Py_NewRef(stamp));
}

/* A value of the projected record, from its bytes. */
/* The str of a string's UTF-8 bytes (scanned: valid, no escapes), shared when seen before. */
static PyObject *string_value(ShapeCache *c, const unsigned char *s, Py_ssize_t len, const unsigned char *end)
{
    if (len > VALUE_MAX)
        return PyUnicode_DecodeUTF8((const char *)s, len, "strict");
    Value *v = &c->values[(ccf_span_mix(s, len, end) * CCF_HASH_MUL) >> (64 - VALUE_BITS)];
    if (v->str != NULL && v->len == len && memcmp(v->bytes, s, len) == 0)
        return Py_NewRef(v->str);
    PyObject *str = PyUnicode_DecodeUTF8((const char *)s, len, "strict");
    if (str == NULL)
        return NULL;
    Py_XSETREF(v->str, Py_NewRef(str));
    v->len = len;
    memcpy(v->bytes, s, len);
    return str;
}

static PyObject *member_value(ShapeCache *c, const unsigned char *p, Py_ssize_t n, const ccf_member *m,
                              PyObject *loads)
{
    switch (m->kind) {
    case CCF_V_STRING:
        return string_value(c, p + m->value + 1, m->value_end - m->value - 2, p + n);
    case CCF_V_TRUE:
        Py_RETURN_TRUE;
    case CCF_V_FALSE:
        Py_RETURN_FALSE;
    case CCF_V_NULL:
        Py_RETURN_NONE;
    case CCF_V_NUMBER: { /* an integer of up to 18 digits (the scanner checked the grammar): no call */
        const unsigned char *d = p + m->value, *e = p + m->value_end;
        int negative = *d == '-';
        d += negative;
        if (e - d <= 18 && memchr(d, '.', e - d) == NULL) {
            long long v = 0;
            for (; d < e; d++)
                v = v * 10 + (*d - '0');
            return PyLong_FromLongLong(negative ? -v : v);
        }
    }
    /* fall through */
    default: {
        PyObject *raw = PyBytes_FromStringAndSize((const char *)p + m->value, m->value_end - m->value);
        if (raw == NULL)
            return NULL;
        PyObject *value = PyObject_CallOneArg(loads, raw);
        Py_DECREF(raw);
        return value;
    }
    }
}


/* The projected path for one line: 1 when it produced the event (rec and stamp set, new
 * references; line set to the masked line, or NULL when the line is unchanged), 0 when the
 * orjson path must take the line, -1 on error. */
static int projected(ShapeCache *c, const unsigned char *p, Py_ssize_t n, const ccf_scan_line *pre, const ccf_member *pre_members,
                     int hit, int names, int redacting, PyObject *new_shape,
                     PyObject *ts_field, PyObject *ts_cache, PyObject *parse_ts, PyObject *default_stamp,
                     PyObject *mask, PyObject *mask_json, PyObject *loads, PyObject **rec_out, PyObject **line_out,
                     PyObject **stamp_out, long long *masked_records, long long *masked_fields)
{
    ccf_member own[CCF_MAX_MEMBERS];
    const ccf_member *m = own;
    int count = 0;
    if (hit || p[n - 1] != '}')
        return 0;
    if (redacting && names && n > 1 && memchr(p + 1, '{', n - 1) != NULL)
        return 0; /* a nested object may hide a sensitive key: the redactor walks it */
    Py_ssize_t nbytes;
    uint64_t hash;
    if (pre != NULL) { /* the read-ahead thread scanned it */
        if (pre->status != CCF_SCAN_OK)
            return 0;
        m = pre_members + pre->member;
        count = pre->count;
        hash = pre->hash;
        nbytes = pre->nbytes;
    } else {
        if (ccf_scan_object(p, n, own, &count) != CCF_SCAN_OK)
            return 0;
        hash = ccf_keys_hash(p, n, own, count, &nbytes);
    }
    if (nbytes > SHAPE_KEYS_MAX)
        return 0;
    Shape *s = &c->slot[hash % SHAPE_SLOTS];
    if (s->keys == NULL || s->hash != hash || s->nbytes != nbytes || !same_keys(s, p, m, count)) {
        if (shape_learn(c, s, hash, nbytes, p, m, count, new_shape, ts_field) < 0)
            return -1;
    }
    if (!s->usable || !s->plain || (s->nsens && !(redacting && s->masked_only)))
        return 0;
    /* masking: each sensitive value a plain string written as orjson would, right after its key */
    int changed[MAX_PICKS];
    int nchanged = 0;
    Py_ssize_t nmask = redacting ? PyBytes_GET_SIZE(mask_json) : 0;
    for (int k = 0; k < s->nsens; k++) {
        const ccf_member *v = &m[s->sens[k]];
        changed[k] = 0;
        if (v->kind != CCF_V_STRING || v->value != v->key_end + 2 || p[v->key_end + 1] != ':'
            || !(p[v->value_end] == ',' || p[v->value_end] == '}')
            || !verbatim_span(p, v->key, v->key_end) || !verbatim_span(p, v->value + 1, v->value_end - 1))
            return 0;
        if (v->value_end - v->value == nmask && memcmp(p + v->value, PyBytes_AS_STRING(mask_json), nmask) == 0)
            continue; /* already the mask */
        changed[k] = 1;
        nchanged++;
    }
    /* the timestamp */
    PyObject *stamp = NULL;
    if (s->ts < 0 || m[s->ts].kind == CCF_V_NULL) {
        stamp = Py_NewRef(default_stamp);
    } else if (m[s->ts].kind != CCF_V_STRING) {
        return 0;
    } else {
        const char *text = (const char *)p + m[s->ts].value + 1;
        Py_ssize_t len = m[s->ts].value_end - m[s->ts].value - 2;
        if (c->ts_stamp != NULL && len == c->ts_len && memcmp(text, c->ts_raw, len) == 0) {
            stamp = Py_NewRef(c->ts_stamp);
        } else if ((stamp = fast_stamp(c, text, len)) != NULL) {
            remember_stamp(c, text, len, stamp);
        } else {
            if (PyErr_Occurred())
                return -1;
            PyObject *ts = PyUnicode_DecodeUTF8(text, len, "strict");
            if (ts == NULL)
                return -1;
            stamp = PyDict_GetItemWithError(ts_cache, ts);
            if (stamp != NULL)
                Py_INCREF(stamp);
            else if (!PyErr_Occurred())
                stamp = PyObject_CallOneArg(parse_ts, ts);
            if (stamp == NULL) {
                Py_DECREF(ts);
                return -1;
            }
            if (stamp == Py_None) { /* an invalid timestamp: the orjson path tags it */
                Py_DECREF(ts);
                Py_DECREF(stamp);
                return 0;
            }
            Py_DECREF(ts);
            remember_stamp(c, text, len, stamp);
        }
    }
    /* the record: the projected fields only */
    PyObject *rec = PyDict_New();
    if (rec == NULL) {
        Py_DECREF(stamp);
        return -1;
    }
    for (int k = 0; k < s->npicks; k++) {
        int masked = 0;
        for (int j = 0; j < s->nsens; j++)
            masked |= s->sens[j] == s->pick[k];
        PyObject *value = masked ? Py_NewRef(mask) : member_value(c, p, n, &m[s->pick[k]], loads);
        if (value == NULL || PyDict_SetItem(rec, s->name[k], value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(rec);
            Py_DECREF(stamp);
            return -1;
        }
        Py_DECREF(value);
    }
    /* the line, masked */
    PyObject *line;
    if (nchanged == 0) {
        line = NULL;
    } else {
        Py_ssize_t size = n;
        for (int k = 0; k < s->nsens; k++)
            if (changed[k])
                size += nmask - (m[s->sens[k]].value_end - m[s->sens[k]].value);
        line = PyBytes_FromStringAndSize(NULL, size);
        if (line == NULL) {
            Py_DECREF(rec);
            Py_DECREF(stamp);
            return -1;
        }
        char *w = PyBytes_AS_STRING(line);
        Py_ssize_t from = 0;
        for (int k = 0; k < count; k++) { /* members in order: sensitive ones are in s->sens */
            int at = -1;
            for (int j = 0; j < s->nsens; j++)
                if (s->sens[j] == k && changed[j])
                    at = j;
            if (at < 0)
                continue;
            w = put(w, (const char *)p + from, m[k].value - from);
            w = put(w, PyBytes_AS_STRING(mask_json), nmask);
            from = m[k].value_end;
        }
        put(w, (const char *)p + from, n - from);
        *masked_records += 1;
        *masked_fields += nchanged;
    }
    *rec_out = rec;
    *line_out = line;
    *stamp_out = stamp;
    return 1;
}

static PyObject *py_too_deep(PyObject *self, PyObject *arg)
{
    (void)self;
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "too_deep(bytes)");
        return NULL;
    }
    return PyBool_FromLong(ccf_too_deep((const unsigned char *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg)));
}

static PyObject *py_members(PyObject *self, PyObject *arg)
{
    (void)self;
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "members(bytes)");
        return NULL;
    }
    return PyLong_FromSsize_t(ccf_structure((const unsigned char *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg), -1));
}

/* ------------------------------------------------------------------ the loop */

enum {
    A_LINES, A_START, A_SID, A_PATH_PART, A_END, A_HITS, A_SHAPES, A_NEW_SHAPE, A_RESERVED,
    A_TS_FIELD, A_TS_CACHE, A_PARSE_TS, A_PARSE_ANY, A_DEFAULT_STAMP, A_REDACT, A_MASK_TOP, A_NAMES,
    A_MASK, A_MASK_JSON, A_DICT_DOC, A_BAD_TS, A_ODD, A_LOADS, A_DECODE_ERROR,
    A_RECORDS, A_DOCS, A_IDS, A_STAMPS, A_TIMES, A_CACHE, A_SCAN, N_ARGS
};

static const char TS_HEAD[] = ",\"@timestamp\":\"";

/* line[:-1] + ',"@timestamp":"' + iso + path_part + b"%d" % lo + end: the enrichment spliced in. */
static PyObject *make_doc(const char *line, Py_ssize_t ln, PyObject *iso, PyObject *path_part, PyObject *end,
                          long long lo)
{
    char num[24];
    int nnum = decimal(num, lo);
    Py_ssize_t nhead = sizeof(TS_HEAD) - 1;
    Py_ssize_t size = (ln - 1) + nhead + PyBytes_GET_SIZE(iso) + PyBytes_GET_SIZE(path_part) + nnum
                      + PyBytes_GET_SIZE(end);
    PyObject *doc = PyBytes_FromStringAndSize(NULL, size);
    if (doc == NULL)
        return NULL;
    char *w = PyBytes_AS_STRING(doc);
    w = put(w, line, ln - 1);
    w = put(w, TS_HEAD, nhead);
    w = put(w, PyBytes_AS_STRING(iso), PyBytes_GET_SIZE(iso));
    w = put(w, PyBytes_AS_STRING(path_part), PyBytes_GET_SIZE(path_part));
    w = put(w, num, nnum);
    put(w, PyBytes_AS_STRING(end), PyBytes_GET_SIZE(end));
    return doc;
}

static PyObject *json_lines(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != N_ARGS) {
        PyErr_Format(PyExc_TypeError, "json_lines takes %d arguments", N_ARGS);
        return NULL;
    }
    PyObject *sid = args[A_SID], *path_part = args[A_PATH_PART], *end = args[A_END];
    PyObject *hits = args[A_HITS], *shapes = args[A_SHAPES], *new_shape = args[A_NEW_SHAPE];
    PyObject *reserved = args[A_RESERVED], *ts_field = args[A_TS_FIELD], *ts_cache = args[A_TS_CACHE];
    PyObject *parse_ts = args[A_PARSE_TS], *parse_any = args[A_PARSE_ANY];
    PyObject *default_stamp = args[A_DEFAULT_STAMP], *redact = args[A_REDACT], *mask_top = args[A_MASK_TOP];
    PyObject *mask = args[A_MASK], *mask_json = args[A_MASK_JSON];
    PyObject *dict_doc = args[A_DICT_DOC], *bad_ts = args[A_BAD_TS], *odd = args[A_ODD];
    PyObject *loads = args[A_LOADS], *decode_error = args[A_DECODE_ERROR];
    PyObject *records = args[A_RECORDS], *docs = args[A_DOCS], *ids = args[A_IDS];
    PyObject *stamps = args[A_STAMPS], *times = args[A_TIMES];
    if (!PyBytes_CheckExact(sid) || !PyBytes_CheckExact(path_part)
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
    Lines it;
    if (lines_init(&it, args[A_LINES], "json_lines") < 0)
        return NULL;
    long long masked_records = 0, masked_fields = 0;
    ShapeCache *cache = NULL; /* None: full records from orjson; else the projection's cache */
    if (args[A_CACHE] != Py_None && (cache = PyCapsule_GetPointer(args[A_CACHE], "ccf_agent.shape_cache")) == NULL)
        return NULL;
    const ccf_scan *scan = NULL; /* the read-ahead's scan of these very bytes, or None */
    if (args[A_SCAN] != Py_None && (scan = PyCapsule_GetPointer(args[A_SCAN], "ccf_agent.scan")) == NULL)
        return NULL;
    if (scan != NULL && (it.data == NULL || scan->size != it.size))
        scan = NULL; /* not a scan of these bytes */

    for (Py_ssize_t i = 0;; i++) {
        const char *lp;
        Py_ssize_t n;
        PyObject *item = NULL;
        const ccf_scan_line *pre = NULL;
        if (scan != NULL) { /* the scan found the lines already */
            if (i == scan->nlines)
                break;
            pre = &scan->lines[i];
            lp = it.data + pre->start;
            n = pre->n;
        } else {
            int more = lines_next(&it, &lp, &n, &item);
            if (more <= 0) {
                if (more < 0)
                    return NULL;
                break;
            }
        }
        long long lo = offset;
        offset += n + 1;
        if (n == 0 || all_space(lp, n))
            continue;

        /* raw: the line as a bytes object, made only when something needs one */
        PyObject *raw = item != NULL ? Py_NewRef(item) : NULL;
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

        if (cache != NULL) {
            int done = projected(cache, (const unsigned char *)lp, n, pre, scan != NULL ? scan->members : NULL, hit, names, redacting, new_shape, ts_field, ts_cache, parse_ts,
                                 default_stamp, mask, mask_json, loads, &rec, &redacted, &stamp, &masked_records,
                                 &masked_fields);
            if (done < 0)
                goto error;
            if (done) {
                doc = redacted != NULL
                          ? make_doc(PyBytes_AS_STRING(redacted), PyBytes_GET_SIZE(redacted),
                                     PyTuple_GET_ITEM(stamp, 0), path_part, end, lo)
                          : make_doc(lp, n, PyTuple_GET_ITEM(stamp, 0), path_part, end, lo);
                if (doc == NULL)
                    goto error;
                goto append;
            }
        }

        if (raw == NULL && (raw = PyBytes_FromStringAndSize(lp, n)) == NULL)
            goto error;
        line = Py_NewRef(raw);
        rec = PyObject_Vectorcall(loads, &raw, 1, NULL);
        if (rec == NULL) {
            if (!PyErr_ExceptionMatches(decode_error))
                goto error;
            PyErr_Clear();
            rec = Py_NewRef(Py_None);
        }
        /* too deep to take apart: shipped as text (Pipeline._odd) */
        int deep = PyDict_CheckExact(rec) && ccf_too_deep((const unsigned char *)lp, n);
        if (PyDict_CheckExact(rec) && PyDict_GET_SIZE(rec) > 0 && !deep) {
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
                    if ((got = doc_from(bad_ts, rec, lo, &doc, &stamp)) == NULL)
                        goto error;
                } else {
                    if (!PyTuple_Check(stamp) || PyTuple_GET_SIZE(stamp) != 2
                        || !PyBytes_Check(PyTuple_GET_ITEM(stamp, 0))) {
                        PyErr_SetString(PyExc_TypeError, "a stamp is (iso bytes, epoch seconds)");
                        goto error;
                    }
                    doc = make_doc(PyBytes_AS_STRING(line), ln, PyTuple_GET_ITEM(stamp, 0), path_part, end, lo);
                    if (doc == NULL)
                        goto error;
                }
            } else {
                if ((got = doc_from(dict_doc, rec, lo, &doc, &stamp)) == NULL)
                    goto error;
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
                Py_DECREF(raw);
                continue;
            }
            PyObject *new_rec;
            if (unpack_doc(got, 3, &doc, &stamp, &new_rec) < 0)
                goto error;
            Py_INCREF(doc);
            Py_INCREF(stamp);
            Py_SETREF(rec, Py_NewRef(new_rec));
        }
    append:
        id = make_id(sid, lo, pre != NULL ? pre->crc : ccf_crc32(lp, (size_t)n));
        if (id == NULL || append_event(records, docs, ids, stamps, times, rec, doc, id, stamp) < 0)
            goto error;
        Py_DECREF(id);
        Py_DECREF(doc);
        Py_DECREF(stamp);
        Py_XDECREF(got);
        Py_XDECREF(redacted);
        Py_XDECREF(shape_keys);
        Py_DECREF(rec);
        Py_XDECREF(line);
        Py_XDECREF(raw);
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
        Py_XDECREF(raw);
        return NULL;
    }
    return Py_BuildValue("(LL)", masked_records, masked_fields);
}

/* ------------------------------------------------------------------ redaction prefilter */

/* prefilter's arguments after `lines` (5 to 7, checked by the caller) as a spec, with pointers
 * into the arguments' bytes: valid while they are. */
static int fold_spec(ccf_fold_spec *spec, PyObject *const *args, Py_ssize_t nargs)
{
    long vector = nargs >= 6 ? PyLong_AsLong(args[5]) : 1; /* 0 scalar, 1 the best there is, 2 SSE2 */
    int json = nargs == 7 ? PyObject_IsTrue(args[6]) : 0;
    if (json < 0)
        return -1;
    if (vector == -1 && PyErr_Occurred())
        return -1;
    PyObject *table_obj = args[0], *drop_obj = args[1], *suffixes = args[4];
    if (!PyBytes_CheckExact(table_obj) || PyBytes_GET_SIZE(table_obj) != 256
        || !PyBytes_CheckExact(drop_obj) || !PyTuple_CheckExact(suffixes)) {
        PyErr_SetString(PyExc_TypeError, "prefilter: argument of the wrong type");
        return -1;
    }
    memset(spec, 0, sizeof *spec);
    spec->table = (const unsigned char *)PyBytes_AS_STRING(table_obj);
    spec->drop = (const unsigned char *)PyBytes_AS_STRING(drop_obj);
    spec->ndrop = (size_t)PyBytes_GET_SIZE(drop_obj);
    spec->zeros = PyLong_AsSsize_t(args[2]);
    spec->json = json;
    spec->vector = vector;
    spec->needle = PyLong_AsLong(args[3]);
    if (PyErr_Occurred())
        return -1;
    if (PyTuple_GET_SIZE(suffixes) > CCF_MAX_SUFFIXES) {
        PyErr_Format(PyExc_TypeError, "prefilter: at most %d suffixes", CCF_MAX_SUFFIXES);
        return -1;
    }
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(suffixes); k++) {
        PyObject *suffix = PyTuple_GET_ITEM(suffixes, k);
        if (!PyBytes_CheckExact(suffix) || PyBytes_GET_SIZE(suffix) == 0 || PyBytes_GET_SIZE(suffix) > 8) {
            PyErr_SetString(PyExc_TypeError, "prefilter: suffixes are bytes of 1 to 8");
            return -1;
        }
        spec->suffix[k] = (const unsigned char *)PyBytes_AS_STRING(suffix);
        spec->suffix_len[k] = (size_t)PyBytes_GET_SIZE(suffix);
        spec->nsuffix = (int)k + 1;
    }
    return 0;
}

/* The fold from prefilter's arguments after `lines` (args[0..nargs), 5 to 7 of them), read
 * into a spec (prefilter.c builds the fold from it, copying what it needs). */
static int fold_init(ccf_fold *f, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 5 || nargs > 7) {
        PyErr_SetString(PyExc_TypeError, "a fold is (table, drop, zeros, needle, suffixes[, vector[, json]])");
        return -1;
    }
    ccf_fold_spec spec;
    if (fold_spec(&spec, args, nargs) < 0)
        return -1;
    return ccf_fold_init(f, &spec);
}

/* prefilter(lines, table, drop, zeros, needle, suffixes[, vector[, json]]): the indices of the
 * lines that hit. vector: 1 (or True, the default) the fastest path the CPU has (AVX2, else
 * SSE2), 2 the SSE2 path, 0 (False) the scalar path (for tests; it is also the path on other
 * CPUs). json=True: digit runs count only inside strings (see in_string). */
static PyObject *prefilter(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs < 6 || nargs > 8) {
        PyErr_SetString(PyExc_TypeError, "prefilter(lines, table, drop, zeros, needle, suffixes[, vector[, json]])");
        return NULL;
    }
    ccf_fold f;
    if (fold_init(&f, args + 1, nargs - 1) < 0)
        return NULL;
    Lines it;
    if (lines_init(&it, args[0], "prefilter") < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0;; i++) {
        const char *lp;
        Py_ssize_t n;
        PyObject *item;
        int more = lines_next(&it, &lp, &n, &item);
        if (more <= 0) {
            if (more < 0)
                Py_CLEAR(out);
            return out;
        }
        if (ccf_fold_hit((const unsigned char *)lp, n, &f)) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(out, index) < 0) {
                Py_XDECREF(index);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(index);
        }
    }
}

/* ------------------------------------------------------------------ routes
 *
 * Router.assign's loop: each record goes to the first route whose condition holds (a program
 * from conditions.program: nested tuples whose common leaves run here; any other leaf is the
 * condition's own Python function). */

enum { P_ANY, P_ALL, P_NOT, P_EQUALS, P_NOT_EQUALS, P_EXISTS, P_ICONTAINS, P_CALL, P_HAS };

/* The record's value at the dotted path (a tuple of keys), borrowed; NULL when absent (or on
 * error, with the error set): what conditions._get_path reads as None. */
static PyObject *field_at(PyObject *rec, PyObject *parts)
{
    PyObject *v = rec;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(parts); k++) {
        if (!PyDict_Check(v))
            return NULL;
        v = PyDict_GetItemWithError(v, PyTuple_GET_ITEM(parts, k));
        if (v == NULL)
            return NULL;
    }
    return v;
}

static unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* needle in value.lower(), the needle already lower-case */
static int icontains(PyObject *value, PyObject *needle)
{
    if (!PyUnicode_IS_ASCII(value)) {
        PyObject *lower = PyObject_CallMethod(value, "lower", NULL);
        if (lower == NULL)
            return -1;
        int found = PyUnicode_Contains(lower, needle);
        Py_DECREF(lower);
        return found;
    }
    if (!PyUnicode_IS_ASCII(needle))
        return 0; /* an ASCII string lower-cased is ASCII */
    const unsigned char *h = PyUnicode_1BYTE_DATA(value), *w = PyUnicode_1BYTE_DATA(needle);
    Py_ssize_t nh = PyUnicode_GET_LENGTH(value), nw = PyUnicode_GET_LENGTH(needle);
    if (nw == 0)
        return 1;
    for (Py_ssize_t i = 0; i + nw <= nh; i++) {
        if (ascii_lower(h[i]) != w[0])
            continue;
        Py_ssize_t j = 1;
        while (j < nw && ascii_lower(h[i + j]) == w[j])
            j++;
        if (j == nw)
            return 1;
    }
    return 0;
}

/* 1 when the program holds for the record, 0 when not, -1 on error */
static int holds(PyObject *prog, PyObject *rec)
{
    if (!PyTuple_Check(prog) || PyTuple_GET_SIZE(prog) < 2) {
        PyErr_SetString(PyExc_TypeError, "a route program is a tuple (op, ...)");
        return -1;
    }
    long op = PyLong_AsLong(PyTuple_GET_ITEM(prog, 0));
    if (op == -1 && PyErr_Occurred())
        return -1;
    PyObject *arg = PyTuple_GET_ITEM(prog, 1);
    switch (op) {
    case P_ANY:
    case P_ALL:
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(arg); k++) {
            int r = holds(PyTuple_GET_ITEM(arg, k), rec);
            if (r != (op == P_ALL))
                return r;
        }
        return op == P_ALL;
    case P_NOT: {
        int r = holds(arg, rec);
        return r < 0 ? r : !r;
    }
    case P_CALL: {
        PyObject *got = PyObject_CallOneArg(arg, rec);
        if (got == NULL)
            return -1;
        int r = PyObject_IsTrue(got);
        Py_DECREF(got);
        return r;
    }
    default:
        break;
    }
    if (PyTuple_GET_SIZE(prog) != 3 || !PyTuple_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "a route leaf is (op, path, value)");
        return -1;
    }
    PyObject *want = PyTuple_GET_ITEM(prog, 2);
    PyObject *v = field_at(rec, arg);
    if (v == NULL) {
        if (PyErr_Occurred())
            return -1;
        if (op == P_HAS)
            return 0;
        v = Py_None;
    }
    switch (op) {
    case P_EQUALS:
        return PyObject_RichCompareBool(v, want, Py_EQ);
    case P_NOT_EQUALS:
        return PyObject_RichCompareBool(v, want, Py_NE);
    case P_EXISTS:
        return (v != Py_None) == (want == Py_True);
    case P_HAS: /* the key is there, whatever its value */
        return 1;
    case P_ICONTAINS:
        if (!PyUnicode_Check(v))
            return 0;
        if (!PyUnicode_Check(want)) {
            PyErr_SetString(PyExc_TypeError, "icontains needs a string");
            return -1;
        }
        return icontains(v, want);
    default:
        PyErr_Format(PyExc_ValueError, "unknown route program op %ld", op);
        return -1;
    }
}

/* A list of n empty lists. */
static PyObject *empty_lists(Py_ssize_t n)
{
    PyObject *out = PyList_New(n);
    for (Py_ssize_t k = 0; out != NULL && k < n; k++) {
        PyObject *list = PyList_New(0);
        if (list == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, k, list);
    }
    return out;
}

static int append_index(PyObject *list, Py_ssize_t i)
{
    PyObject *index = PyLong_FromSsize_t(i);
    int failed = index == NULL || PyList_Append(list, index) < 0;
    Py_XDECREF(index);
    return failed ? -1 : 0;
}

/* assign(records, programs): for each program in order and then the default, the indices of
 * the records it takes (each record the first whose program holds). select(records, programs,
 * dicts_only=False): for each program, the indices of the records it holds for (each on its
 * own; no default); with dicts_only, a record that is not a dict raises TypeError. */
static PyObject *route_records(PyObject *const *args, Py_ssize_t nargs, int first_match)
{
    if (nargs < 2 || nargs > 2 + !first_match || !PyList_CheckExact(args[0]) || !PyTuple_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "assign(records: list, programs: tuple) / select(..., dicts_only=False)");
        return NULL;
    }
    PyObject *records = args[0], *programs = args[1];
    int dicts_only = nargs == 3 && PyObject_IsTrue(args[2]);
    Py_ssize_t nprog = PyTuple_GET_SIZE(programs);
    PyObject *out = empty_lists(nprog + first_match);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(records); i++) {
        if (dicts_only && !PyDict_CheckExact(PyList_GET_ITEM(records, i))) {
            /* a program reads a non-dict record as holding no fields: a caller whose reference
             * reads other mappings (alerts' steps) asks to be told instead */
            PyErr_SetString(PyExc_TypeError, "select: a record that is not a dict");
            Py_DECREF(out);
            return NULL;
        }
        Py_ssize_t k = 0;
        for (; k < nprog; k++) {
            int r = holds(PyTuple_GET_ITEM(programs, k), PyList_GET_ITEM(records, i));
            if (r < 0 || (r > 0 && !first_match && append_index(PyList_GET_ITEM(out, k), i) < 0)) {
                Py_DECREF(out);
                return NULL;
            }
            if (r > 0 && first_match)
                break;
        }
        if (first_match && append_index(PyList_GET_ITEM(out, k), i) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyObject *assign(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return route_records(args, nargs, 1);
}

static PyObject *select_(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return route_records(args, nargs, 0);
}

/* ------------------------------------------------------------------ bulk bodies */

/* bulk_body(actions, ids, docs, indices): b"".join(action + id + '"}}\n' + doc + "\n") over
 * `indices` (None: every record, in order), the Elasticsearch output's encode. `actions`: one
 * bytes object for every record, or a list with one per index (a dated index). */
static PyObject *bulk_body(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char MID[] = "\"}}\n";
    if (nargs != 4 || !(PyBytes_CheckExact(args[0]) || PyList_CheckExact(args[0])) || !PyList_CheckExact(args[1])
        || !PyList_CheckExact(args[2]) || !(args[3] == Py_None || PyList_CheckExact(args[3]))
        || PyList_GET_SIZE(args[1]) != PyList_GET_SIZE(args[2])) {
        PyErr_SetString(PyExc_TypeError, "bulk_body(actions, ids: list, docs: list, indices: list | None)");
        return NULL;
    }
    PyObject *actions = args[0], *ids = args[1], *docs = args[2], *indices = args[3];
    Py_ssize_t n = indices == Py_None ? PyList_GET_SIZE(docs) : PyList_GET_SIZE(indices);
    if (PyList_CheckExact(actions) && PyList_GET_SIZE(actions) != n) {
        PyErr_SetString(PyExc_ValueError, "bulk_body: one action per index");
        return NULL;
    }
    Py_ssize_t size = 0;
    for (int pass = 0; pass < 2; pass++) {
        PyObject *body = NULL;
        char *w = NULL;
        if (pass == 1) {
            if ((body = PyBytes_FromStringAndSize(NULL, size)) == NULL)
                return NULL;
            w = PyBytes_AS_STRING(body);
        }
        for (Py_ssize_t k = 0; k < n; k++) {
            Py_ssize_t i = k;
            if (indices != Py_None) {
                i = PyLong_AsSsize_t(PyList_GET_ITEM(indices, k));
                if (i < 0 || i >= PyList_GET_SIZE(docs)) {
                    if (!PyErr_Occurred())
                        PyErr_SetString(PyExc_IndexError, "bulk_body: index out of range");
                    Py_XDECREF(body);
                    return NULL;
                }
            }
            PyObject *action = PyBytes_CheckExact(actions) ? actions : PyList_GET_ITEM(actions, k);
            PyObject *id = PyList_GET_ITEM(ids, i), *doc = PyList_GET_ITEM(docs, i);
            if (!PyBytes_CheckExact(action) || !PyBytes_CheckExact(id) || !PyBytes_CheckExact(doc)) {
                PyErr_SetString(PyExc_TypeError, "bulk_body: actions, ids and docs are bytes");
                Py_XDECREF(body);
                return NULL;
            }
            if (pass == 0) {
                size += PyBytes_GET_SIZE(action) + PyBytes_GET_SIZE(id) + (Py_ssize_t)sizeof MID - 1
                        + PyBytes_GET_SIZE(doc) + 1;
                continue;
            }
            w = put(w, PyBytes_AS_STRING(action), PyBytes_GET_SIZE(action));
            w = put(w, PyBytes_AS_STRING(id), PyBytes_GET_SIZE(id));
            w = put(w, MID, sizeof MID - 1);
            w = put(w, PyBytes_AS_STRING(doc), PyBytes_GET_SIZE(doc));
            *w++ = '\n';
        }
        if (pass == 1)
            return body;
    }
    Py_UNREACHABLE();
}

/* ------------------------------------------------------------------ business metrics
 *
 * ops/business.py's _payout over a batch's payout records, in the same order with the same
 * arithmetic (the Python method stays the reference; the tests hold the two equal). */

enum { N_MESSAGE, N_STATUS, N_METHOD, N_TIME, N_COMPLETED, N_OTHER, N_UNKNOWN, N_NAMES };

/* payouts(records, hits, exact, outcomes, statuses, methods, bounds, buckets, counts, total,
 *         names) -> (durations observed, duration sum)
 * For each records[i], i in hits: an attempt (its message in `exact`, or stripped and lower-cased
 * in `outcomes`) counts once under (status, method) in `counts`; its processingTime (ms, a
 * finite number >= 0) adds to `buckets` (seconds, the first bound >= it; the last: above all)
 * and to the sum, which starts at `total`. `names`: the field names and label values. */
static PyObject *payouts(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11 || !PyList_CheckExact(args[0]) || !PyList_CheckExact(args[1]) || !PyDict_CheckExact(args[2])
        || !PyDict_CheckExact(args[3]) || !PyAnySet_Check(args[4]) || !PyAnySet_Check(args[5])
        || !PyTuple_CheckExact(args[6]) || !PyList_CheckExact(args[7]) || !PyDict_CheckExact(args[8])
        || !PyFloat_CheckExact(args[9]) || !PyTuple_CheckExact(args[10]) || PyTuple_GET_SIZE(args[10]) != N_NAMES
        || PyList_GET_SIZE(args[7]) != PyTuple_GET_SIZE(args[6]) + 1) {
        PyErr_SetString(PyExc_TypeError, "payouts: argument of the wrong type");
        return NULL;
    }
    PyObject *records = args[0], *hits = args[1], *exact = args[2], *outcomes = args[3], *statuses = args[4];
    PyObject *methods = args[5], *bounds = args[6], *buckets = args[7], *counts = args[8], *names = args[10];
    PyObject *completed = PyTuple_GET_ITEM(names, N_COMPLETED), *other = PyTuple_GET_ITEM(names, N_OTHER);
    PyObject *unknown = PyTuple_GET_ITEM(names, N_UNKNOWN);
    double sum = PyFloat_AS_DOUBLE(args[9]), bound[16];
    long long observed = 0;
    Py_ssize_t nbounds = PyTuple_GET_SIZE(bounds);
    if (nbounds > 16) {
        PyErr_SetString(PyExc_ValueError, "payouts: at most 16 bucket bounds");
        return NULL;
    }
    for (Py_ssize_t k = 0; k < nbounds; k++)
        if ((bound[k] = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, k))) == -1.0 && PyErr_Occurred())
            return NULL;
    for (Py_ssize_t h = 0; h < PyList_GET_SIZE(hits); h++) {
        Py_ssize_t i = PyLong_AsSsize_t(PyList_GET_ITEM(hits, h));
        if (i == -1 && PyErr_Occurred())
            return NULL;
        if (i < 0 || i >= PyList_GET_SIZE(records) || !PyDict_Check(PyList_GET_ITEM(records, i))) {
            PyErr_SetString(PyExc_IndexError, "payouts: a hit is not a record");
            return NULL;
        }
        PyObject *rec = PyList_GET_ITEM(records, i);
        PyObject *message = PyDict_GetItemWithError(rec, PyTuple_GET_ITEM(names, N_MESSAGE));
        if (message == NULL && PyErr_Occurred())
            return NULL;
        if (message == NULL || !PyUnicode_CheckExact(message))
            continue;
        PyObject *outcome = PyDict_GetItemWithError(exact, message); /* borrowed: the dicts hold them */
        if (outcome == NULL) {
            if (PyErr_Occurred())
                return NULL;
            PyObject *stripped = PyObject_CallMethod(message, "strip", NULL);
            PyObject *lowered = stripped != NULL ? PyObject_CallMethod(stripped, "lower", NULL) : NULL;
            Py_XDECREF(stripped);
            if (lowered == NULL)
                return NULL;
            outcome = PyDict_GetItemWithError(outcomes, lowered);
            Py_DECREF(lowered);
            if (outcome == NULL) {
                if (PyErr_Occurred())
                    return NULL;
                continue; /* a payout's other lines are not attempts */
            }
        }
        PyObject *status = outcome;
        int is_completed = PyObject_RichCompareBool(outcome, completed, Py_EQ);
        if (is_completed < 0)
            return NULL;
        if (is_completed) {
            PyObject *s = PyDict_GetItemWithError(rec, PyTuple_GET_ITEM(names, N_STATUS));
            if (s == NULL && PyErr_Occurred())
                return NULL;
            if (s != NULL && s != Py_None) {
                int known = PyUnicode_CheckExact(s) ? PySet_Contains(statuses, s) : 0;
                if (known < 0)
                    return NULL;
                status = known ? s : other;
            }
        }
        PyObject *m = PyDict_GetItemWithError(rec, PyTuple_GET_ITEM(names, N_METHOD));
        if (m == NULL && PyErr_Occurred())
            return NULL;
        PyObject *method = unknown;
        if (m != NULL && m != Py_None) {
            int known = PyUnicode_CheckExact(m) ? PySet_Contains(methods, m) : 0;
            if (known < 0)
                return NULL;
            method = known ? m : other;
        }
        PyObject *key = PyTuple_Pack(2, status, method);
        if (key == NULL)
            return NULL;
        PyObject *count = PyDict_GetItemWithError(counts, key);
        long long n = count != NULL ? PyLong_AsLongLong(count) : 0;
        PyObject *next = (count != NULL || !PyErr_Occurred()) && !(n == -1 && PyErr_Occurred())
                             ? PyLong_FromLongLong(n + 1) : NULL;
        int failed = next == NULL || PyDict_SetItem(counts, key, next) < 0;
        Py_DECREF(key);
        Py_XDECREF(next);
        if (failed)
            return NULL;
        PyObject *ms = PyDict_GetItemWithError(rec, PyTuple_GET_ITEM(names, N_TIME));
        if (ms == NULL) {
            if (PyErr_Occurred())
                return NULL;
            continue;
        }
        double v;
        if (PyFloat_CheckExact(ms)) {
            v = PyFloat_AS_DOUBLE(ms);
            if (!(v >= 0 && v < INFINITY))
                continue;
        } else if (PyLong_CheckExact(ms)) {
            int overflow; /* past long long: only its sign matters here */
            long long whole = PyLong_AsLongLongAndOverflow(ms, &overflow);
            if (overflow < 0 || (overflow == 0 && whole < 0))
                continue;
            v = PyLong_AsDouble(ms); /* as `ms / 1000.0` converts it (OverflowError past 1e308) */
            if (v == -1.0 && PyErr_Occurred())
                return NULL;
        } else {
            continue;
        }
        double seconds = v / 1000.0;
        observed++;
        sum += seconds;
        Py_ssize_t k = 0;
        while (k < nbounds && !(bound[k] >= seconds))
            k++;
        PyObject *old = PyList_GET_ITEM(buckets, k);
        long long b = PyLong_AsLongLong(old);
        if (b == -1 && PyErr_Occurred())
            return NULL;
        PyObject *bumped = PyLong_FromLongLong(b + 1);
        if (bumped == NULL)
            return NULL;
        PyList_SetItem(buckets, k, bumped); /* steals bumped, drops old */
    }
    return Py_BuildValue("(Ld)", observed, sum);
}

/* ------------------------------------------------------------------ arenas */

/* pymalloc's arenas, kept when freed instead of unmapped at once: a batch's objects fill an
 * arena or two that empty again when the batch is acknowledged, and the default allocator
 * then unmaps them only to map (and fault in, zeroed) fresh ones for the next batch. Up to
 * ARENA_CACHE arenas wait here; beyond that they go back to the OS as before. */
#include <sys/mman.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#define ARENA_CACHE 8

static void *arena_cache[ARENA_CACHE];
static size_t arena_cached_size;
static int arena_cached;

static void *arena_alloc(void *ctx, size_t size)
{
    (void)ctx;
    if (arena_cached > 0 && size == arena_cached_size)
        return arena_cache[--arena_cached];
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void arena_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    if (arena_cached < ARENA_CACHE && (arena_cached == 0 || size == arena_cached_size)) {
        arena_cached_size = size;
        arena_cache[arena_cached++] = ptr;
        return;
    }
    munmap(ptr, size);
}

static PyObject *keep_memory(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
#if defined(__GLIBC__)
    /* The same for malloc's heap: request bodies of a few MiB would otherwise be mapped and
     * unmapped (and faulted in again) each time, and a freed heap top trimmed at 128 KiB. */
    mallopt(M_MMAP_THRESHOLD, 16 << 20);
    mallopt(M_TRIM_THRESHOLD, 32 << 20);
#endif
    PyObjectArenaAllocator current;
    PyObject_GetArenaAllocator(&current);
    if (current.alloc != arena_alloc) {
        PyObjectArenaAllocator mine = {NULL, arena_alloc, arena_free};
        PyObject_SetArenaAllocator(&mine);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ read-ahead
 *
 * The agent's second core (readahead.c): while the event loop works on a file's chunk, a thread
 * of ours reads the file's next chunk and does the per-line work that needs no interpreter (a
 * ccf_scan); json_lines then takes those from the scan. The thread never touches a Python
 * object: it writes into a bytes object nobody else can see yet, and its fold is its own copy.
 *
 * One job at a time: submit(owner, fd, offset, size, partial) reads size bytes at offset
 * after a copy of partial (the reader's unfinished line); take() waits for it and gives
 * (owner, offset, partial, block, rest, nread, scan): block the complete lines (partial
 * included), rest what follows the last newline, both without a copy of the chunk. When the
 * new bytes hold no newline, block is None and rest is partial plus the new bytes. */

static void scan_capsule_free(PyObject *capsule)
{
    ccf_scan_free(PyCapsule_GetPointer(capsule, "ccf_agent.scan"));
}

/* The job's Python objects only on the interpreter's side, with the GIL; the core's fields as
 * readahead.h says. */
typedef struct {
    PyObject_HEAD
    ccf_read_ahead core;
    PyObject *owner, *partial, *buf; /* the job, set by submit */
} ReadAhead;

/* Wait for the job, if any, the GIL released meanwhile: the thread is done with it afterwards. */
static void read_ahead_wait(ReadAhead *r)
{
    if (!r->core.submitted)
        return;
    Py_BEGIN_ALLOW_THREADS
    ccf_read_ahead_wait(&r->core);
    Py_END_ALLOW_THREADS
}

/* Forget the job; only after read_ahead_wait (the thread no longer touches it). */
static void read_ahead_clear(ReadAhead *r)
{
    Py_CLEAR(r->owner);
    Py_CLEAR(r->partial);
    Py_CLEAR(r->buf);
    ccf_read_ahead_clear(&r->core);
}

static PyObject *read_ahead_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *fold_args = Py_None;
    int objects = 1;
    static char *kwlist[] = {"fold", "objects", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|Op:ReadAhead", kwlist, &fold_args, &objects))
        return NULL;
    ccf_fold_spec spec;
    if (fold_args != Py_None) {
        if (!PyTuple_CheckExact(fold_args)) {
            PyErr_SetString(PyExc_TypeError, "ReadAhead: fold is a tuple of prefilter's arguments after lines");
            return NULL;
        }
        Py_ssize_t nargs = PyTuple_GET_SIZE(fold_args);
        if (nargs < 5 || nargs > 7) {
            PyErr_SetString(PyExc_TypeError, "a fold is (table, drop, zeros, needle, suffixes[, vector[, json]])");
            return NULL;
        }
        if (fold_spec(&spec, &PyTuple_GET_ITEM(fold_args, 0), nargs) < 0)
            return NULL;
    }
    ReadAhead *r = (ReadAhead *)type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    /* the spec's pointers are into fold_args, alive for this call: the core copies the fold */
    int rc = ccf_read_ahead_init(&r->core, fold_args != Py_None ? &spec : NULL, objects);
    if (rc != 0) { /* dealloc destroys the locks that exist */
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(r);
        return NULL;
    }
    return (PyObject *)r;
}

/* The thread stopped and the locks destroyed, the GIL released while it waits for the thread. */
static void read_ahead_dealloc(ReadAhead *r)
{
    read_ahead_wait(r);
    read_ahead_clear(r);
    Py_BEGIN_ALLOW_THREADS
    ccf_read_ahead_destroy(&r->core);
    Py_END_ALLOW_THREADS
    PyTypeObject *type = Py_TYPE(r);
    type->tp_free((PyObject *)r);
    Py_DECREF(type); /* a heap type: each instance holds a reference to it */
}

static PyObject *read_ahead_submit(ReadAhead *r, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "submit(owner, fd, offset, size, partial)");
        return NULL;
    }
    if (r->core.submitted) {
        PyErr_SetString(PyExc_RuntimeError, "ReadAhead: a job is already submitted");
        return NULL;
    }
    long fd_long = PyLong_AsLong(args[1]);
    int fd = fd_long >= 0 && fd_long <= INT32_MAX ? (int)fd_long : -1;
    long long offset = PyLong_AsLongLong(args[2]);
    Py_ssize_t size = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *partial = args[4];
    if (!PyBytes_CheckExact(partial) || fd < 0 || offset < 0 || size <= 0) {
        PyErr_SetString(PyExc_ValueError, "submit: a descriptor, an offset, a size > 0 and the partial line (bytes)");
        return NULL;
    }
    if (ccf_read_ahead_start(&r->core) != 0) /* closed, or a tasks limit: the caller reads on its own thread */
        Py_RETURN_FALSE;
    Py_ssize_t plen = PyBytes_GET_SIZE(partial);
    PyObject *buf = PyBytes_FromStringAndSize(NULL, plen + size);
    if (buf == NULL)
        return NULL;
    memcpy(PyBytes_AS_STRING(buf), PyBytes_AS_STRING(partial), plen);
    r->owner = Py_NewRef(args[0]);
    r->partial = Py_NewRef(partial);
    r->buf = buf;
    ccf_read_ahead_submit(&r->core, PyBytes_AS_STRING(buf), fd, offset, size, plen);
    Py_RETURN_TRUE;
}

static PyObject *read_ahead_take(ReadAhead *r, PyObject *noargs)
{
    (void)noargs;
    if (!r->core.submitted) {
        PyErr_SetString(PyExc_RuntimeError, "ReadAhead: nothing submitted");
        return NULL;
    }
    read_ahead_wait(r);
    ccf_read_ahead_result got;
    ccf_read_ahead_take(&r->core, &got); /* done: no wait */
    if (got.err) {
        errno = got.err;
        read_ahead_clear(r);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_ssize_t plen = PyBytes_GET_SIZE(r->partial), total = plen + got.nread;
    PyObject *block = Py_None, *rest, *scan = Py_None, *out = NULL;
    Py_INCREF(block);
    Py_INCREF(scan);
    PyObject *buf = r->buf;
    const char *bytes = PyBytes_AS_STRING(buf);
    r->buf = NULL;
    if (got.last_nl < 0) {
        rest = buf;
        if (_PyBytes_Resize(&rest, total) < 0)
            goto done;
    } else {
        rest = PyBytes_FromStringAndSize(bytes + got.last_nl + 1, total - got.last_nl - 1);
        if (rest == NULL) {
            Py_DECREF(buf);
            goto done;
        }
        Py_SETREF(block, buf);
        if (_PyBytes_Resize(&block, got.last_nl + 1) < 0) {
            block = NULL;
            Py_DECREF(rest);
            goto done;
        }
        if (got.scan != NULL) {
            PyObject *capsule = PyCapsule_New(got.scan, "ccf_agent.scan", scan_capsule_free);
            if (capsule == NULL) {
                Py_DECREF(rest);
                goto done;
            }
            got.scan = NULL;
            Py_SETREF(scan, capsule);
        }
    }
    out = Py_BuildValue("(OLONNnN)", r->owner, r->core.offset, r->partial, block, rest, got.nread, scan);
    block = scan = NULL;
done:
    ccf_scan_free(got.scan);
    Py_XDECREF(block);
    Py_XDECREF(scan);
    read_ahead_clear(r);
    return out;
}

static PyObject *read_ahead_drop(ReadAhead *r, PyObject *noargs)
{
    (void)noargs;
    read_ahead_wait(r);
    read_ahead_clear(r);
    Py_RETURN_NONE;
}

static PyObject *read_ahead_close(ReadAhead *r, PyObject *noargs)
{
    (void)noargs;
    read_ahead_wait(r);
    read_ahead_clear(r);
    Py_BEGIN_ALLOW_THREADS
    ccf_read_ahead_close(&r->core);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *read_ahead_owner(ReadAhead *r, void *closure)
{
    (void)closure;
    return Py_NewRef(r->owner != NULL ? r->owner : Py_None);
}

static PyMethodDef read_ahead_methods[] = {
    {"submit", (PyCFunction)(void (*)(void))read_ahead_submit, METH_FASTCALL,
     "submit(owner, fd, offset, size, partial): read and scan the next chunk on the thread. False: no\n"
     "thread could be started, or close() ran (see error); nothing was submitted."},
    {"take", (PyCFunction)read_ahead_take, METH_NOARGS,
     "Wait for the job: (owner, offset, partial, block, rest, nread, scan)."},
    {"drop", (PyCFunction)read_ahead_drop, METH_NOARGS, "Wait for the job, if any, and forget it."},
    {"close", (PyCFunction)read_ahead_close, METH_NOARGS, "Drop the job and stop the thread."},
    {NULL, NULL, 0, NULL},
};

static PyObject *read_ahead_error(ReadAhead *r, void *closure)
{
    (void)closure;
    if (r->core.closed)
        return PyUnicode_FromString("closed");
    if (!r->core.start_error)
        Py_RETURN_NONE;
    return PyUnicode_FromString(strerror(r->core.start_error));
}

static PyGetSetDef read_ahead_getset[] = {
    {"owner", (getter)read_ahead_owner, NULL, "Whose job is submitted (None: no job).", NULL},
    {"error", (getter)read_ahead_error, NULL, "Why submit() cannot start the thread: 'closed', an OS error, or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* Not collected by the GC on purpose: tp_clear could not drop a buffer the thread is writing
 * into without waiting for it; the tail breaks the reader <-> ReadAhead cycle with close(). */
static PyType_Slot read_ahead_slots[] = {
    {Py_tp_dealloc, read_ahead_dealloc},
    {Py_tp_doc, "A thread that reads a file's next chunk and scans its lines while the loop works."},
    {Py_tp_methods, read_ahead_methods},
    {Py_tp_getset, read_ahead_getset},
    {Py_tp_new, read_ahead_new},
    {0, NULL},
};

static PyType_Spec read_ahead_spec = {
    .name = "ccf_agent.pipeline._fast.ReadAhead",
    .basicsize = sizeof(ReadAhead),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = read_ahead_slots,
};

/* scan_hits(scan): the indices of the lines the prefilter flagged, as prefilter would give them. */
static PyObject *scan_hits(PyObject *self, PyObject *capsule)
{
    (void)self;
    const ccf_scan *s = PyCapsule_GetPointer(capsule, "ccf_agent.scan");
    if (s == NULL)
        return NULL;
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && s->nhits > 0 && i < s->nlines; i++) {
        if (!s->lines[i].hit)
            continue;
        PyObject *index = PyLong_FromSsize_t(i);
        if (index == NULL || PyList_Append(out, index) < 0)
            Py_CLEAR(out);
        Py_XDECREF(index);
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
    {"bulk_body", (PyCFunction)(void (*)(void))bulk_body, METH_FASTCALL,
     "The Elasticsearch output's NDJSON for some of a batch's records."},
    {"select", (PyCFunction)(void (*)(void))select_, METH_FASTCALL,
     "For each condition program, the indices of the records it holds for."},
    {"payouts", (PyCFunction)(void (*)(void))payouts, METH_FASTCALL,
     "BusinessMetrics._payout over a batch's payout records (see ops/business.py)."},
    {"assign", (PyCFunction)(void (*)(void))assign, METH_FASTCALL,
     "Router.assign's loop: route programs (conditions.program) over records."},
    {"shape_cache", (PyCFunction)(void (*)(void))shape_cache, METH_FASTCALL, "The projection's per-pipeline cache, for these field names."},
    {"scan_hits", scan_hits, METH_O, "The indices of the lines a read-ahead scan's prefilter flagged."},
    {"keep_memory", keep_memory, METH_NOARGS, "Keep freed arenas and heap for reuse (a long-running daemon)."},
    {"too_deep", py_too_deep, METH_O, "A JSON line nested deeper than RECORD_DEPTH_MAX (see rawjson.py)."},
    {"members", py_members, METH_O, "The members a JSON line writes: its colons outside strings (see rawjson.py)."},
    {NULL, NULL, 0, NULL},
};

/* Multi-phase initialisation: what the module holds lives in its state, not in C globals. The
 * globals left are facts of the process, written once: the crc32 tables and the CPU's features. */
typedef struct {
    PyTypeObject *read_ahead_type;
} ModuleState;

static void cpu_init(void)
{
    static int done;
    if (done)
        return;
    ccf_crc32_init();
    ccf_prefilter_init();
    done = 1;
}

static int module_exec(PyObject *m)
{
    cpu_init();
    ModuleState *state = PyModule_GetState(m);
    state->read_ahead_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &read_ahead_spec, NULL);
    if (state->read_ahead_type == NULL || PyModule_AddType(m, state->read_ahead_type) < 0)
        return -1;
    if (PyModule_AddIntConstant(m, "RECORD_DEPTH_MAX", CCF_RECORD_DEPTH_MAX) < 0)
        return -1;
    return PyModule_AddIntConstant(m, "CRC32_CLMUL", ccf_have_clmul);
}

static int module_traverse(PyObject *m, visitproc visit, void *arg)
{
    ModuleState *state = PyModule_GetState(m);
    Py_VISIT(state->read_ahead_type);
    return 0;
}

static int module_clear(PyObject *m)
{
    ModuleState *state = PyModule_GetState(m);
    Py_CLEAR(state->read_ahead_type);
    return 0;
}

static void module_free(void *m)
{
    module_clear((PyObject *)m);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fast",
    .m_doc = "The agent's C code: the per-line loop, the redaction prefilter, the read-ahead thread (see _fast.c).",
    .m_size = sizeof(ModuleState),
    .m_methods = methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__fast(void)
{
    return PyModuleDef_Init(&module);
}
