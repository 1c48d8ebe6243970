"""The agent's C code: the extension `_fast` (a thin binding, `_fast.c` and `py_*.c`, over a core
of `.c`/`.h` pairs without Python.h), typed by `_fast.pyi`. Import it through
ccf_agent.pipeline.native, which gives None when it was not built."""
