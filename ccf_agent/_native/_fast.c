/* The agent's C extension, ccf_agent._native._fast: the module (multi-phase initialisation, its
 * state) and its small functions; each concern's functions are in a binding file of their own:
 *
 *   py_loop.c       the pipeline's per-line loop for Winston JSON (Loop) and the projection (process.py)
 *   py_prefilter.c  the redaction prefilter over a batch's lines (redact.py)
 *   py_readahead.c  the ReadAhead type around the read-ahead thread (tail/)
 *   py_routes.c     condition programs over records (router.py, alerts/select.py, ops/business.py)
 *   py_memory.c     arenas kept for reuse (keep_memory)
 *
 * They share _fast.h. What needs no interpreter is the core, .c/.h pairs without Python.h,
 * each tested on its own (tests/native/test_core.py): the scanner (scan.c), the prefilter's
 * fold and scan (prefilter.c), Winston's timestamps (stamp.c), the read-ahead thread
 * (readahead.c) and crc32 (crc32.c). The module's boundary is typed in _fast.pyi (tests/
 * test_checks.py holds it to the build), reached through ccf_agent.pipeline.native;
 * tests/native/sanitize.sh runs the native tests under ASan/UBSan and TSan. */
#include "_fast.h"

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

/* ------------------------------------------------------------------ rawjson.py's scans (scan.c) */

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

/* ------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"crc32", py_crc32, METH_O, "zlib.crc32 of a bytes-like object."},
    {"too_deep", py_too_deep, METH_O, "A JSON line nested deeper than RECORD_DEPTH_MAX (see rawjson.py)."},
    {"members", py_members, METH_O, "The members a JSON line writes: its colons outside strings (see rawjson.py)."},
    {NULL, NULL, 0, NULL},
};

/* The globals left outside the module's state are facts of the process, written once: the
 * crc32 tables and the CPU's features. */
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
    PyMethodDef *concerns[] = {ccf_py_loop_methods, ccf_py_prefilter_methods, ccf_py_routes_methods,
                               ccf_py_memory_methods, ccf_py_readahead_methods};
    for (size_t k = 0; k < sizeof concerns / sizeof *concerns; k++)
        if (PyModule_AddFunctions(m, concerns[k]) < 0)
            return -1;
    ModuleState *state = PyModule_GetState(m);
    state->read_ahead_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &ccf_py_read_ahead_spec, NULL);
    if (state->read_ahead_type == NULL || PyModule_AddType(m, state->read_ahead_type) < 0)
        return -1;
    state->loop_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &ccf_py_loop_spec, NULL);
    if (state->loop_type == NULL || PyModule_AddType(m, state->loop_type) < 0)
        return -1;
    if (PyModule_AddIntConstant(m, "RECORD_DEPTH_MAX", CCF_RECORD_DEPTH_MAX) < 0)
        return -1;
    return PyModule_AddIntConstant(m, "CRC32_CLMUL", ccf_have_clmul);
}

static int module_traverse(PyObject *m, visitproc visit, void *arg)
{
    ModuleState *state = PyModule_GetState(m);
    Py_VISIT(state->read_ahead_type);
    Py_VISIT(state->loop_type);
    return 0;
}

static int module_clear(PyObject *m)
{
    ModuleState *state = PyModule_GetState(m);
    Py_CLEAR(state->read_ahead_type);
    Py_CLEAR(state->loop_type);
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
