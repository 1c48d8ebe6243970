/* What the router, the Elasticsearch output and the business metrics run per batch in C: route
 * programs over records (router.py, alerts/select.py), bulk bodies (outputs/elasticsearch/
 * encoding.py) and payouts (ops/business.py). Each caller keeps its Python loop as the
 * reference; the tests hold the two equal. */
#include <math.h>

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


PyMethodDef ccf_py_routes_methods[] = {
    {"bulk_body", (PyCFunction)(void (*)(void))bulk_body, METH_FASTCALL,
     "The Elasticsearch output's NDJSON for some of a batch's records."},
    {"select", (PyCFunction)(void (*)(void))select_, METH_FASTCALL,
     "For each condition program, the indices of the records it holds for."},
    {"payouts", (PyCFunction)(void (*)(void))payouts, METH_FASTCALL,
     "BusinessMetrics._payout over a batch's payout records (see ops/business.py)."},
    {"assign", (PyCFunction)(void (*)(void))assign, METH_FASTCALL,
     "Router.assign's loop: route programs (conditions.program) over records."},
    {NULL, NULL, 0, NULL},
};
