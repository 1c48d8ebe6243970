/* Memory kept for reuse by a long-running daemon (keep_memory). */
#include "_fast.h"

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

PyMethodDef ccf_py_memory_methods[] = {
    {"keep_memory", keep_memory, METH_NOARGS, "Keep freed arenas and heap for reuse (a long-running daemon)."},
    {NULL, NULL, 0, NULL},
};
