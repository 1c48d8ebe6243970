/* The binding's internal header: what its files (_fast.c, the module; py_*.c, one per concern)
 * share. Only the binding includes Python.h; the core (the other .c/.h pairs here) never does. */
#ifndef CCF_FAST_H
#define CCF_FAST_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "crc32.h"
#include "prefilter.h"
#include "readahead.h"
#include "scan.h"
#include "stamp.h"

/* What the module holds (multi-phase initialisation: its state, not C globals). */
typedef struct {
    PyTypeObject *read_ahead_type, *loop_type;
} ModuleState;

/* Each concern's functions, added to the module by _fast.c. */
extern PyMethodDef ccf_py_loop_methods[];      /* py_loop.c: the per-line loop, the projection */
extern PyMethodDef ccf_py_prefilter_methods[]; /* py_prefilter.c: the redaction prefilter */
extern PyMethodDef ccf_py_routes_methods[];    /* py_routes.c: route programs, picked fields, bulk bodies */
extern PyMethodDef ccf_py_memory_methods[];    /* py_memory.c: arenas kept for reuse */
extern PyMethodDef ccf_py_readahead_methods[]; /* py_readahead.c: a read-ahead scan's hits */
extern PyType_Spec ccf_py_read_ahead_spec;     /* py_readahead.c: the ReadAhead type */
extern PyType_Spec ccf_py_loop_spec;           /* py_loop.c: the Loop type */

/* The name of the capsule holding a read-ahead's ccf_scan. */
#define CCF_SCAN_CAPSULE "ccf_agent.scan"

/* prefilter's arguments after `lines` (5 to 7, checked by the caller) as a spec, with pointers
 * into the arguments' bytes: valid while they are (py_prefilter.c). */
int ccf_py_fold_spec(ccf_fold_spec *spec, PyObject *const *args, Py_ssize_t nargs);

static inline char *put(char *w, const char *s, Py_ssize_t n)
{
    memcpy(w, s, n);
    return w + n;
}

/* A batch's lines: a list of bytes, or one bytes object of lines each ended by a newline (what
 * the reader read; walking it saves a bytes object per line). */
typedef struct {
    PyObject *list;
    const char *data;
    Py_ssize_t size, pos, i;
} Lines;

static inline int lines_init(Lines *it, PyObject *lines, const char *who)
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
static inline int lines_next(Lines *it, const char **p, Py_ssize_t *n, PyObject **obj)
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


#endif
