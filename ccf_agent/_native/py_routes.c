/* Condition programs over a batch's records in C: the router's first match per record
 * (router.py) and every match per program (alerts/select.py, ops/business.py's selection of the
 * payout records); the picked records' fields that business metrics count (column, tally); and
 * the bulk body the Elasticsearch output sends for the records a route picked
 * (outputs/elasticsearch/encoding.py). Each caller keeps its Python code as the reference; the
 * tests hold the two equal. The payout arithmetic's C twin went (issue 18: under the ~10% that
 * pays for a twin of business logic). The bulk body's went too and came back: it is ~4% of the
 * default scenario's instructions, and without it the default and business scenarios ran 6-9%
 * more instructions than before the restructuring (bench/RESULTS.md, fifth stop). */
#include "_fast.h"

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

/* ------------------------------------------------------------------ picked records */

/* indices[k] as an index into a list of n, or -1 with IndexError (or the int's error) set. */
static Py_ssize_t index_at(PyObject *indices, Py_ssize_t k, Py_ssize_t n)
{
    Py_ssize_t i = PyLong_AsSsize_t(PyList_GET_ITEM(indices, k));
    if (i == -1 && PyErr_Occurred())
        return -1;
    if (i < 0 || i >= n) {
        PyErr_SetString(PyExc_IndexError, "record index out of range");
        return -1;
    }
    return i;
}

/* ------------------------------------------------------------------ bulk bodies */

/* bulk_body(actions, ids, docs, indices): b"".join(action + id + '"}}\n' + doc + "\n") over
 * `indices` (None: every record, in order), the Elasticsearch output's encode. `actions`: one
 * bytes object for every record, or a list with one per index (a dated index). Two passes: the
 * size, then one bytes object written in place; indices must be exact ints, so no Python code
 * (an __index__) runs between the passes and the lists cannot change under them. */
static PyObject *bulk_body(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char MID[] = "\"}}\n";
    (void)self;
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
    PyObject *body = NULL;
    char *w = NULL, *end = NULL;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            if ((body = PyBytes_FromStringAndSize(NULL, size)) == NULL)
                return NULL;
            w = PyBytes_AS_STRING(body);
            end = w + size;
        }
        for (Py_ssize_t k = 0; k < n; k++) {
            Py_ssize_t i = k;
            if (indices != Py_None) {
                if (!PyLong_CheckExact(PyList_GET_ITEM(indices, k))) {
                    PyErr_SetString(PyExc_TypeError, "bulk_body: indices are ints");
                    goto fail;
                }
                if ((i = index_at(indices, k, PyList_GET_SIZE(docs))) < 0)
                    goto fail;
            }
            PyObject *action = PyBytes_CheckExact(actions) ? actions : PyList_GET_ITEM(actions, k);
            PyObject *id = PyList_GET_ITEM(ids, i), *doc = PyList_GET_ITEM(docs, i);
            if (!PyBytes_CheckExact(action) || !PyBytes_CheckExact(id) || !PyBytes_CheckExact(doc)) {
                PyErr_SetString(PyExc_TypeError, "bulk_body: actions, ids and docs are bytes");
                goto fail;
            }
            Py_ssize_t need = PyBytes_GET_SIZE(action) + PyBytes_GET_SIZE(id) + (Py_ssize_t)sizeof MID - 1
                              + PyBytes_GET_SIZE(doc) + 1;
            if (pass == 0) {
                size += need;
                continue;
            }
            if (need > end - w) { /* cannot happen without Python code between the passes */
                PyErr_SetString(PyExc_RuntimeError, "bulk_body: the records changed while written");
                goto fail;
            }
            w = put(w, PyBytes_AS_STRING(action), PyBytes_GET_SIZE(action));
            w = put(w, PyBytes_AS_STRING(id), PyBytes_GET_SIZE(id));
            w = put(w, MID, sizeof MID - 1);
            w = put(w, PyBytes_AS_STRING(doc), PyBytes_GET_SIZE(doc));
            *w++ = '\n';
        }
    }
    return body;
fail:
    Py_XDECREF(body);
    return NULL;
}

/* ------------------------------------------------------------------ fields of picked records */

/* records[indices[k]] as a dict (borrowed), or NULL with TypeError/IndexError set. */
static PyObject *picked(PyObject *records, PyObject *indices, Py_ssize_t k)
{
    Py_ssize_t i = index_at(indices, k, PyList_GET_SIZE(records));
    if (i < 0)
        return NULL;
    PyObject *rec = PyList_GET_ITEM(records, i);
    if (!PyDict_Check(rec)) {
        PyErr_SetString(PyExc_TypeError, "a record that is not a dict");
        return NULL;
    }
    return rec;
}

/* rec.get(field) as dict.get reads it: a new reference, None when absent; NULL on error. */
static PyObject *get(PyObject *rec, PyObject *field)
{
    PyObject *v = PyDict_GetItemWithError(rec, field);
    if (v == NULL && PyErr_Occurred())
        return NULL;
    v = v != NULL ? v : Py_None;
    Py_INCREF(v);
    return v;
}

static int picked_args(const char *sig, PyObject *const *args, Py_ssize_t nargs, int fields_tuple)
{
    if (nargs != 3 || !PyList_CheckExact(args[0]) || !PyList_CheckExact(args[1])
        || (fields_tuple ? !PyTuple_CheckExact(args[2]) : !PyUnicode_CheckExact(args[2]))) {
        PyErr_SetString(PyExc_TypeError, sig);
        return -1;
    }
    return 0;
}

/* column(records, indices, field): [records[i].get(field) for i in indices]. */
static PyObject *column(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (picked_args("column(records: list, indices: list, field: str)", args, nargs, 0) < 0)
        return NULL;
    PyObject *records = args[0], *indices = args[1], *field = args[2];
    Py_ssize_t n = PyList_GET_SIZE(indices);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t k = 0; out != NULL && k < n; k++) {
        PyObject *rec = picked(records, indices, k), *v = rec != NULL ? get(rec, field) : NULL;
        if (v == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, k, v);
    }
    return out;
}

/* tally(records, indices, fields): how many of the records at `indices` hold each combination of
 * the fields' values, {(rec.get(f) for f in fields): count}, in the order first seen: what
 * Counter(zip(...)) makes of one column per field, without a tuple hashed twice per record in
 * Python. A value that cannot be hashed raises TypeError, as it would there. */
static PyObject *tally(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (picked_args("tally(records: list, indices: list, fields: tuple)", args, nargs, 1) < 0)
        return NULL;
    PyObject *records = args[0], *indices = args[1], *fields = args[2];
    Py_ssize_t nfields = PyTuple_GET_SIZE(fields);
    PyObject *one = PyLong_FromLong(1);  /* CPython's cached small int */
    PyObject *out = one != NULL ? PyDict_New() : NULL;
    for (Py_ssize_t k = 0; out != NULL && k < PyList_GET_SIZE(indices); k++) {
        PyObject *rec = picked(records, indices, k);
        PyObject *key = rec != NULL ? PyTuple_New(nfields) : NULL;
        for (Py_ssize_t f = 0; key != NULL && f < nfields; f++) {
            PyObject *v = get(rec, PyTuple_GET_ITEM(fields, f));
            if (v == NULL)
                Py_CLEAR(key);
            else
                PyTuple_SET_ITEM(key, f, v);
        }
        PyObject *seen = key != NULL ? PyDict_GetItemWithError(out, key) : NULL;  /* borrowed */
        PyObject *count = NULL;
        if (seen != NULL)
            count = PyNumber_Add(seen, one);
        else if (key != NULL && !PyErr_Occurred())
            count = Py_NewRef(one);
        if (count == NULL || PyDict_SetItem(out, key, count) < 0)
            Py_CLEAR(out);
        Py_XDECREF(count);
        Py_XDECREF(key);
    }
    Py_XDECREF(one);
    return out;
}

PyMethodDef ccf_py_routes_methods[] = {
    {"bulk_body", (PyCFunction)(void (*)(void))bulk_body, METH_FASTCALL,
     "The picked records as Elasticsearch bulk NDJSON: each one's action line and id, then its document."},
    {"column", (PyCFunction)(void (*)(void))column, METH_FASTCALL,
     "[records[i].get(field) for i in indices]"},
    {"tally", (PyCFunction)(void (*)(void))tally, METH_FASTCALL,
     "How many of the records at indices hold each combination of the fields' values."},
    {"select", (PyCFunction)(void (*)(void))select_, METH_FASTCALL,
     "For each condition program, the indices of the records it holds for."},
    {"assign", (PyCFunction)(void (*)(void))assign, METH_FASTCALL,
     "Router.assign's loop: route programs (conditions.program) over records."},
    {NULL, NULL, 0, NULL},
};
