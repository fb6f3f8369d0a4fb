# Timers: Engine.call_later / call_at on the engine's timer heap (C), with
# asyncio's TimerHandle shape.  Included by _core.pyx.

@cython.final
cdef class TimerHandle:
    """A callback scheduled with Engine.call_later / call_at.  It runs once
    on a worker, in order with the other callbacks, unless cancelled."""
    cdef timer_request *_req      # NULL once its completion was dispatched
    cdef Engine _engine
    cdef object _callback
    cdef tuple _args
    cdef double _when
    cdef bint _cancelled

    def __repr__(self):
        state = "cancelled" if self._cancelled else ("pending" if self._req != NULL else "done")
        return f"<pyiocp.TimerHandle when={self._when:.3f} {state} {self._callback!r}>"

    def when(self):
        """When it is (or was) due, in Engine.time() (time.monotonic())."""
        return self._when

    def cancel(self):
        """Keeps the callback from running, if it has not started yet.
        Safe from any thread; doing it twice does nothing."""
        if self._cancelled:
            return
        self._cancelled = True
        self._callback = None
        self._args = None
        if self._req != NULL and self._engine._c != NULL:
            # -ENOENT when it has fired already: its dispatch then sees
            # _cancelled and drops it
            piocp_timer_cancel(self._engine._c, &self._req.req)

    def cancelled(self):
        return self._cancelled

    cdef _run(self):
        if self._cancelled:
            return
        callback, args = self._callback, self._args
        self._callback = self._args = None
        try:
            callback(*args)
        except BaseException:
            log.exception("pyiocp: exception in timer callback %r", callback)


cdef TimerHandle schedule_timer(Engine engine, double when, object callback, tuple args):
    cdef TimerHandle handle
    cdef timer_request *tr
    cdef int64_t delay_ms
    cdef int rc
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {callback!r}")
    if engine._c == NULL or engine._stopped:
        raise RuntimeError("the engine is stopped")
    delay = when - time.monotonic()
    # rounded up: a timer never fires early
    delay_ms = <int64_t>min(math.ceil(delay * 1000), 2**53) if delay > 0 else 0
    handle = TimerHandle.__new__(TimerHandle)
    handle._engine = engine
    handle._callback = callback
    handle._args = args
    handle._when = when
    tr = <timer_request *>binding_calloc(b"py_timer", 1, sizeof(timer_request))
    if tr == NULL:
        raise MemoryError()
    tr.req.complete = on_timer_done
    tr.shared = &engine._shared
    dispatch_node_init(&tr.node, ITEM_TIMER, tr)
    tr.handle = <PyObject *>handle
    Py_INCREF(handle)             # the timer's, dropped when dispatched
    handle._req = tr
    rc = piocp_post_after(engine._c, &tr.req, delay_ms)
    if rc < 0:
        handle._req = NULL
        Py_DECREF(handle)
        binding_free(tr)
        raise os_error(rc, "call_later")
    return handle
