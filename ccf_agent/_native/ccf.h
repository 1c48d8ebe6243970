/* What every file of the native core shares: sizes as a signed type of the pointer's width,
 * which Py_ssize_t is too (the binding passes one where the other is asked, unconverted). */
#ifndef CCF_H
#define CCF_H

#include <stddef.h>
#include <stdint.h>

typedef ptrdiff_t ccf_ssize;

#endif
