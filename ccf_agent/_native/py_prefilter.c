/* The redaction prefilter (prefilter.c) over a batch's lines, for Redactor.scan (redact.py). */
#include "_fast.h"

/* See _fast.h. The checks and messages are the ones prefilter and ReadAhead always gave. */
int ccf_py_fold_spec(ccf_fold_spec *spec, PyObject *const *args, Py_ssize_t nargs)
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
    if (ccf_py_fold_spec(&spec, args, nargs) < 0)
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

PyMethodDef ccf_py_prefilter_methods[] = {
    {"prefilter", (PyCFunction)(void (*)(void))prefilter, METH_FASTCALL,
     "Indices of the lines where a redaction pattern could match (see redact.py)."},
    {NULL, NULL, 0, NULL},
};
