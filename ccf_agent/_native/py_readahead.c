/* The ReadAhead type around the read-ahead thread (readahead.c), and its scans' hits. */
#include <errno.h>

#include "_fast.h"

/* ------------------------------------------------------------------ read-ahead
 *
 * The agent's second core (readahead.c): while the event loop works on a file's chunk, a thread
 * of ours reads the file's next chunk and does the per-line work that needs no interpreter (a
 * ccf_scan); the loop (py_loop.c) then takes those from the scan. The thread never touches a Python
 * object: it writes into a bytes object nobody else can see yet, and its fold is its own copy.
 *
 * One job at a time: submit(owner, fd, offset, size, partial) reads size bytes at offset
 * after a copy of partial (the reader's unfinished line); take() waits for it and gives
 * (owner, offset, partial, block, rest, nread, scan): block the complete lines (partial
 * included), rest what follows the last newline, both without a copy of the chunk. When the
 * new bytes hold no newline, block is None and rest is partial plus the new bytes. */

static void scan_capsule_free(PyObject *capsule)
{
    ccf_scan_free(PyCapsule_GetPointer(capsule, CCF_SCAN_CAPSULE));
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
        if (ccf_py_fold_spec(&spec, &PyTuple_GET_ITEM(fold_args, 0), nargs) < 0)
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
            PyObject *capsule = PyCapsule_New(got.scan, CCF_SCAN_CAPSULE, scan_capsule_free);
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

static PyObject *read_ahead_withdraw(ReadAhead *r, PyObject *noargs)
{
    (void)noargs;
    if (!ccf_read_ahead_withdraw(&r->core))
        Py_RETURN_FALSE;
    read_ahead_clear(r); /* the thread never touched the job */
    Py_RETURN_TRUE;
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
    {"withdraw", (PyCFunction)read_ahead_withdraw, METH_NOARGS,
     "Take the job back if the thread has not begun it (True: forgotten, read it now), else False."},
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

PyType_Spec ccf_py_read_ahead_spec = {
    .name = "ccf_agent._native._fast.ReadAhead",
    .basicsize = sizeof(ReadAhead),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = read_ahead_slots,
};

/* scan_hits(scan): the indices of the lines the prefilter flagged, as prefilter would give them. */
static PyObject *scan_hits(PyObject *self, PyObject *capsule)
{
    (void)self;
    const ccf_scan *s = PyCapsule_GetPointer(capsule, CCF_SCAN_CAPSULE);
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

PyMethodDef ccf_py_readahead_methods[] = {
    {"scan_hits", scan_hits, METH_O, "The indices of the lines a read-ahead scan's prefilter flagged."},
    {NULL, NULL, 0, NULL},
};
