/*
 * worker_thread_state.h - one Python thread state per engine worker, for
 * the worker's whole life (the engine's worker_start / worker_stop hooks).
 *
 * Why: the binding takes the GIL on a worker once per completion batch.
 * On a thread that has no Python thread state, PyGILState_Ensure makes one
 * (with its frame stack: an mmap, a munmap and a gettid) and destroys it
 * again on release, every batch.  With few busy connections a batch is one
 * completion, so that was paid on every message.  Ensured once here and
 * kept, each later PyGILState_Ensure only takes the GIL.
 *
 * A finalising interpreter must not be touched: taking the GIL then ends the
 * calling thread on the spot (CPython 3.11 to 3.13) or blocks it for ever
 * (3.14), and a worker that vanishes holding engine locks hangs the
 * process.  pyiocp stops every running engine at exit (atexit, before
 * finalisation starts), so this is only the last guard.
 */
#ifndef PYIOCP_WORKER_THREAD_STATE_H
#define PYIOCP_WORKER_THREAD_STATE_H

#include <Python.h>

static inline int pyiocp_interpreter_finalizing(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

/* On a worker, before its first batch: make this thread's state and keep
 * it, without holding the GIL. */
static inline void pyiocp_worker_attach(void)
{
    if (pyiocp_interpreter_finalizing())
        return;
    PyGILState_Ensure(); /* new thread state, GIL taken */
    PyEval_SaveThread(); /* GIL dropped; the state stays this thread's */
}

/* On the same worker, after its last batch: destroy the state again. */
static inline void pyiocp_worker_detach(void)
{
    PyThreadState *state = PyGILState_GetThisThreadState();
    if (state == NULL || pyiocp_interpreter_finalizing())
        return; /* never attached, or too late: leave it to the interpreter */
    PyEval_RestoreThread(state);
    PyGILState_Release(PyGILState_UNLOCKED); /* what the Ensure above returned */
}

#endif
