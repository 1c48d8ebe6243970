/* The pipeline's per-line loop for Winston JSON, the binding's hot path: a Loop, made once per
 * pipeline generation and run per batch.
 *
 * Same steps, same order and same results as the loop in process.py (tests/pipeline/
 * test_native.py holds them equal on the corpus and on generated lines): parse with orjson,
 * look the record's shape up, redact through the Python redactor when it has to, splice
 * @timestamp and the constant enrichment into the raw bytes, make the deterministic id.
 * What it saves is the interpreter's work per line (~60 bytecodes), which was half of the
 * agent's CPU time; every decision that is not the common case stays in Python, called back.
 * The lines' facts that need no interpreter come from the core: the scanner (scan.c), the
 * timestamps (stamp.c), crc32, or a read-ahead thread's scan of the same bytes (readahead.c). */
#include "_fast.h"

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

/* At most this many arguments a batch adds to each callback's (Loop.run: the batch, its stamp). */
#define MAX_EXTRA 2

/* fn(rec, lo, *extra) -> (doc, stamp), a Python slow path: the result tuple, doc and stamp (new
 * refs). */
static PyObject *doc_from(PyObject *fn, PyObject *rec, long long lo, PyObject *const *extra, Py_ssize_t nextra,
                          PyObject **doc, PyObject **stamp)
{
    PyObject *lo_obj = PyLong_FromLongLong(lo);
    if (lo_obj == NULL)
        return NULL;
    PyObject *call[2 + MAX_EXTRA] = {rec, lo_obj};
    for (Py_ssize_t k = 0; k < nextra; k++)
        call[2 + k] = extra[k];
    PyObject *got = PyObject_Vectorcall(fn, call, 2 + nextra, NULL);
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


/* ------------------------------------------------------------------ the loop

 * What stays the same for a pipeline's generation (a Loop holds it, checked once) and what
 * each batch brings. The pointers are borrowed from a Loop and Loop.run's arguments. */
typedef struct {
    PyObject *shapes, *new_shape, *reserved, *ts_field, *ts_cache, *parse_ts, *parse_any, *redact, *mask_top,
        *mask, *mask_json, *end, *dict_doc, *bad_ts, *odd, *loads, *decode_error;
    int names;         /* the redactor has sensitive key names */
    ShapeCache *cache; /* NULL: full records from orjson; else the projection's cache */
} Consts;

typedef struct {
    PyObject *lines, *sid, *path_part, *default_stamp, *hits;
    long long start;
    const ccf_scan *scan; /* the read-ahead's scan of the batch's bytes, or NULL */
    PyObject *records, *docs, *ids, *stamps, *times;
    PyObject *const *extra; /* added to every callback's arguments */
    Py_ssize_t nextra;
} Batch;

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

/* The loop over one batch's lines: (records, fields) masked in C, or NULL with an exception. */
static PyObject *run(const Consts *k, const Batch *b)
{
    PyObject *sid = b->sid, *path_part = b->path_part, *end = k->end, *hits = b->hits, *shapes = k->shapes;
    PyObject *new_shape = k->new_shape, *reserved = k->reserved, *ts_field = k->ts_field, *ts_cache = k->ts_cache;
    PyObject *parse_ts = k->parse_ts, *parse_any = k->parse_any;
    PyObject *default_stamp = b->default_stamp, *redact = k->redact, *mask_top = k->mask_top;
    PyObject *mask = k->mask, *mask_json = k->mask_json;
    PyObject *dict_doc = k->dict_doc, *bad_ts = k->bad_ts, *odd = k->odd;
    PyObject *loads = k->loads, *decode_error = k->decode_error;
    PyObject *records = b->records, *docs = b->docs, *ids = b->ids, *stamps = b->stamps, *times = b->times;
    PyObject *const *extra = b->extra;
    Py_ssize_t nextra = b->nextra;
    long long offset = b->start;
    int names = k->names;
    int redacting = redact != Py_None;
    int any_hits = PySet_GET_SIZE(hits) > 0;
    Lines it;
    if (lines_init(&it, b->lines, "Loop.run") < 0)
        return NULL;
    long long masked_records = 0, masked_fields = 0;
    ShapeCache *cache = k->cache;
    const ccf_scan *scan = b->scan;
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
                    if ((got = doc_from(bad_ts, rec, lo, extra, nextra, &doc, &stamp)) == NULL)
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
                if ((got = doc_from(dict_doc, rec, lo, extra, nextra, &doc, &stamp)) == NULL)
                    goto error;
            }
        } else {
            PyObject *lo_obj = PyLong_FromLongLong(lo);
            if (lo_obj == NULL)
                goto error;
            PyObject *call[4 + MAX_EXTRA] = {rec, line, lo_obj, hit_obj};
            for (Py_ssize_t k = 0; k < nextra; k++)
                call[4 + k] = extra[k];
            got = PyObject_Vectorcall(odd, call, 4 + nextra, NULL);
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

/* A stamp as the loop splices it: (iso bytes, epoch seconds). */
static int is_stamp(PyObject *stamp)
{
    return PyTuple_Check(stamp) && PyTuple_GET_SIZE(stamp) == 2 && PyBytes_Check(PyTuple_GET_ITEM(stamp, 0));
}

/* The generation's constants, checked: 0, or -1 with TypeError naming `who`. */
static int consts_check(const Consts *k, const char *who)
{
    if (!PyDict_CheckExact(k->shapes) || !PyAnySet_Check(k->reserved) || !PyUnicode_CheckExact(k->ts_field)
        || !PyDict_CheckExact(k->ts_cache) || !PyBytes_CheckExact(k->end)
        || (k->redact != Py_None && (!PyUnicode_CheckExact(k->mask) || !PyBytes_CheckExact(k->mask_json)))) {
        PyErr_Format(PyExc_TypeError, "%s: argument of the wrong type", who);
        return -1;
    }
    return 0;
}

/* The batch's own arguments, checked (the scan's capsule read): 0, or -1 with an exception. */
static int batch_check(Batch *b, PyObject *start, PyObject *scan, const char *who)
{
    if (!PyBytes_CheckExact(b->sid) || !PyBytes_CheckExact(b->path_part) || !PyAnySet_Check(b->hits)
        || !PyList_CheckExact(b->records) || !PyList_CheckExact(b->docs) || !PyList_CheckExact(b->ids)
        || !PyList_CheckExact(b->stamps) || !PyList_CheckExact(b->times) || !is_stamp(b->default_stamp)) {
        PyErr_Format(PyExc_TypeError, "%s: argument of the wrong type", who);
        return -1;
    }
    b->start = PyLong_AsLongLong(start);
    if (b->start == -1 && PyErr_Occurred())
        return -1;
    b->scan = NULL;
    if (scan != Py_None && (b->scan = PyCapsule_GetPointer(scan, CCF_SCAN_CAPSULE)) == NULL)
        return -1;
    return 0;
}

static ShapeCache *shape_cache_of(PyObject *capsule)
{
    return PyCapsule_GetPointer(capsule, "ccf_agent.shape_cache");
}

/* ------------------------------------------------------------------ Loop

 * The loop made once per pipeline generation from its constants (checked then, held strongly),
 * then run per batch with what the batch brings, as msgspec's Decoder is made once and decodes
 * many times. Its callbacks are the pipeline's bound methods, so it sits in a cycle with the
 * pipeline: it takes part in the GC. */
typedef struct {
    PyObject_HEAD
    Consts k;
    PyObject *cache; /* the ShapeCache capsule (k.cache points into it), or None */
} Loop;

#define LOOP_OBJECTS(X) X(shapes) X(new_shape) X(reserved) X(ts_field) X(ts_cache) X(parse_ts) X(parse_any) \
    X(redact) X(mask_top) X(mask) X(mask_json) X(end) X(dict_doc) X(bad_ts) X(odd) X(loads) X(decode_error)

static int loop_traverse(Loop *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self)); /* a heap type's instances keep it alive */
#define VISIT(name) Py_VISIT(self->k.name);
    LOOP_OBJECTS(VISIT)
#undef VISIT
    Py_VISIT(self->cache);
    return 0;
}

static int loop_clear(Loop *self)
{
#define CLEAR(name) Py_CLEAR(self->k.name);
    LOOP_OBJECTS(CLEAR)
#undef CLEAR
    self->k.cache = NULL;
    Py_CLEAR(self->cache);
    return 0;
}

static void loop_dealloc(Loop *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    loop_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyObject *loop_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"shapes", "new_shape", "reserved", "ts_field", "ts_cache", "parse_ts", "parse_any",
                             "redact", "mask_top", "names", "mask", "mask_json", "end", "dict_doc", "bad_ts",
                             "odd", "loads", "decode_error", "cache", NULL};
    Consts k = {0};
    PyObject *names = NULL, *cache = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$OOOOOOOOOOOOOOOOOOO:Loop", kwlist, &k.shapes, &k.new_shape,
                                     &k.reserved, &k.ts_field, &k.ts_cache, &k.parse_ts, &k.parse_any, &k.redact,
                                     &k.mask_top, &names, &k.mask, &k.mask_json, &k.end, &k.dict_doc, &k.bad_ts,
                                     &k.odd, &k.loads, &k.decode_error, &cache))
        return NULL;
    PyObject *given[] = {k.shapes, k.new_shape, k.reserved, k.ts_field, k.ts_cache, k.parse_ts, k.parse_any,
                         k.redact, k.mask_top, names, k.mask, k.mask_json, k.end, k.dict_doc, k.bad_ts, k.odd,
                         k.loads, k.decode_error, cache};
    for (size_t a = 0; a < sizeof given / sizeof *given; a++)
        if (given[a] == NULL) {
            PyErr_Format(PyExc_TypeError, "Loop: missing argument %s", kwlist[a]);
            return NULL;
        }
    if (consts_check(&k, "Loop") < 0)
        return NULL;
    PyObject *callables[] = {k.new_shape, k.parse_ts, k.parse_any, k.dict_doc, k.bad_ts, k.odd, k.loads};
    for (size_t a = 0; a < sizeof callables / sizeof *callables; a++)
        if (!PyCallable_Check(callables[a])) {
            PyErr_SetString(PyExc_TypeError, "Loop: a callback is not callable");
            return NULL;
        }
    if ((k.redact != Py_None && !PyCallable_Check(k.redact)) || (k.redact != Py_None && !PyCallable_Check(k.mask_top))
        || !PyExceptionClass_Check(k.decode_error)) {
        PyErr_SetString(PyExc_TypeError, "Loop: redact and mask_top are callables or None, decode_error an exception");
        return NULL;
    }
    if ((k.names = PyObject_IsTrue(names)) < 0)
        return NULL;
    if (cache != Py_None && (k.cache = shape_cache_of(cache)) == NULL)
        return NULL;
    Loop *self = (Loop *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->k = k;
#define HOLD(name) Py_INCREF(self->k.name);
    LOOP_OBJECTS(HOLD)
#undef HOLD
    self->cache = Py_NewRef(cache);
    return (PyObject *)self;
}

enum { R_LINES, R_START, R_SID, R_PATH_PART, R_DEFAULT_STAMP, R_HITS, R_SCAN, R_BATCH,
       R_RECORDS, R_DOCS, R_IDS, R_STAMPS, R_TIMES, N_RUN };

static PyObject *loop_run(Loop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != N_RUN) {
        PyErr_SetString(PyExc_TypeError,
                        "run(lines, start, sid, path_part, default_stamp, hits, scan, batch, records, docs, ids, "
                        "stamps, times)");
        return NULL;
    }
    if (self->k.shapes == NULL) { /* cleared by the GC while still reachable from a finalizer */
        PyErr_SetString(PyExc_RuntimeError, "Loop: cleared");
        return NULL;
    }
    Batch b = {
        .lines = args[R_LINES], .sid = args[R_SID], .path_part = args[R_PATH_PART],
        .default_stamp = args[R_DEFAULT_STAMP], .hits = args[R_HITS], .records = args[R_RECORDS],
        .docs = args[R_DOCS], .ids = args[R_IDS], .stamps = args[R_STAMPS], .times = args[R_TIMES],
    };
    PyObject *extra[2] = {args[R_BATCH], args[R_DEFAULT_STAMP]}; /* what the callbacks get besides */
    b.extra = extra;
    b.nextra = 2;
    if (batch_check(&b, args[R_START], args[R_SCAN], "Loop.run") < 0)
        return NULL;
    return run(&self->k, &b);
}

static PyMethodDef loop_methods[] = {
    {"run", (PyCFunction)(void (*)(void))loop_run, METH_FASTCALL,
     "run(lines, start, sid, path_part, default_stamp, hits, scan, batch, records, docs, ids, stamps, times):\n"
     "one batch's lines; appends each line's record, document, id, stamp and time; returns (records,\n"
     "fields) masked in C. The callbacks get the batch and the default stamp after their own arguments."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot loop_slots[] = {
    {Py_tp_dealloc, loop_dealloc},
    {Py_tp_traverse, loop_traverse},
    {Py_tp_clear, loop_clear},
    {Py_tp_doc, "The pipeline's per-line loop for JSON lines, made once per pipeline generation (see process.py)."},
    {Py_tp_methods, loop_methods},
    {Py_tp_new, loop_new},
    {0, NULL},
};

PyType_Spec ccf_py_loop_spec = {
    .name = "ccf_agent._native._fast.Loop",
    .basicsize = sizeof(Loop),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = loop_slots,
};


PyMethodDef ccf_py_loop_methods[] = {
    {"shape_cache", (PyCFunction)(void (*)(void))shape_cache, METH_FASTCALL, "The projection's per-pipeline cache, for these field names."},
    {NULL, NULL, 0, NULL},
};
