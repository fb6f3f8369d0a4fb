# Lending: a connected socket another event loop owns (an asyncio
# transport's) is lent to the engine for one transmit and handed back
# unchanged (piocp_borrow).  pyiocp.aio builds its sendfile on this.
# Included by _core.pyx.

cdef struct lend_request:
    piocp_request req
    dispatch_node node
    engine_shared *shared
    piocp_conn *conn          # retained until dispatched: cancel() may use it
    PyObject *lending         # strong: the Lending, until dispatched
    ssize_t result            # the transmit's: bytes, or -errno
    size_t sent               # bytes handed to the kernel (head + file)
    piocp_file file_fd        # a dup: the caller may close its file meanwhile
    # the head's bytes follow the struct


cdef void on_lend_transmit_done(piocp_request *req, ssize_t result) noexcept nogil:
    cdef lend_request *lr = <lend_request *>req
    lr.result = result
    lr.sent = <size_t>result if result >= 0 else req.done


cdef void on_lend_returned(piocp_conn *conn, int error) noexcept nogil:
    # every request has completed and the socket is no longer the engine's:
    # only now may its owner touch it again
    cdef lend_request *lr = <lend_request *>piocp_conn_user(conn)
    if lr.file_fd != PIOCP_INVALID_FILE:
        binding_close_file(lr.file_fd)
        lr.file_fd = PIOCP_INVALID_FILE
    dispatch_queue_push(&lr.shared.queue, &lr.node, error)


cdef class Lending:
    """One transmit on a lent socket (Engine.lend_transmit).  `done` is
    called once, on a worker thread, as done(sent, error, returned_error)
    after the socket has been handed back: `sent` counts the head and file
    bytes handed to the kernel, `error` is None or the transmit's OSError
    (errno ECANCELED after cancel()), `returned_error` the hand-back's."""

    cdef lend_request *_lr    # NULL once dispatched (read and written with the GIL)
    cdef object _done

    def __cinit__(self):
        self._lr = NULL

    def cancel(self):
        """Stops the transmit where it is (the connection is not reset);
        `done` still follows, once.  True if a cancel was requested, False
        if the transmit had already finished."""
        # with the GIL held throughout: a worker frees the request only while
        # dispatching (with the GIL), and piocp_cancel never waits for one
        if self._lr == NULL:
            return False
        return piocp_cancel(self._lr.conn, &self._lr.req) == 0

    @property
    def done(self):
        return self._lr == NULL

    cdef _returned(self, lend_request *lr, int error):
        done, self._done = self._done, None
        result = lr.result
        sent = lr.sent
        transmit_error = None if result >= 0 else os_error(result, "sendfile")
        returned_error = None if error == 0 else os_error(error, "sendfile")
        try:
            done(sent, transmit_error, returned_error)
        except BaseException:
            log.exception("pyiocp: exception in a lend_transmit callback")


cdef Lending lend_transmit(Engine engine, int sock_fd, int file_fd, unsigned long long offset,
                           unsigned long long count, object head, object done):
    cdef Py_buffer view
    cdef lend_request *lr
    cdef piocp_conn *conn
    cdef int rc
    cdef piocp_file file = PIOCP_INVALID_FILE, dup_fd = PIOCP_INVALID_FILE
    cdef char *head_copy
    cdef Lending lending = Lending()
    file = binding_file_from_os_handle(_os_handle(file_fd))   # may raise: before allocating
    PyObject_GetBuffer(head, &view, PyBUF_SIMPLE)
    try:
        lr = <lend_request *>binding_calloc(b"py_lend", 1, sizeof(lend_request) + <size_t>view.len)
        if lr == NULL:
            raise MemoryError()
        head_copy = (<char *>lr) + sizeof(lend_request)
        memcpy(head_copy, view.buf, <size_t>view.len)
        lr.req.complete = on_lend_transmit_done
        lr.shared = &engine._shared
        lr.file_fd = PIOCP_INVALID_FILE
        dispatch_node_init(&lr.node, ITEM_LEND, lr)
        rc = binding_dup_file(file, &dup_fd)
        if rc < 0:
            binding_free(lr)
            raise os_error(rc, "sendfile")
        lr.file_fd = dup_fd
        rc = piocp_borrow(engine._c, sock_fd, &conn)
        if rc < 0:
            binding_close_file(dup_fd)
            binding_free(lr)
            raise os_error(rc, "sendfile")
        lr.conn = conn
        piocp_conn_retain(conn)
        lending._lr = lr
        lending._done = done
        lr.lending = <PyObject *>lending
        Py_INCREF(lending)
        piocp_conn_set_callbacks(conn, on_lend_returned, lr)   # ends the claim
        rc = piocp_transmit(conn, &lr.req, head_copy, <size_t>view.len, dup_fd, offset, count)
        if rc < 0:
            lr.result = rc      # the hand-back reports it
            piocp_abort(conn)
        else:
            piocp_close(conn)   # hand back once the transmit is done
    finally:
        PyBuffer_Release(&view)
    return lending


cdef dispatch_lend(lend_request *lr, int error, bint run_handlers):
    cdef Lending lending = <Lending>lr.lending
    lr.lending = NULL
    try:
        lending._lr = NULL
        if run_handlers:
            lending._returned(lr, error)
    finally:
        if lr.shared.c_engine != NULL:   # a freed engine took it with it
            piocp_conn_release(lr.conn)
        binding_free(lr)
        Py_DECREF(lending)


# Sending in place: what a non-blocking socket takes at once goes out on
# the caller's thread before anything is lent (send_in_place.h says why).

cdef extern from "send_in_place.h" nogil:
    ctypedef struct send_in_place_result:
        size_t head_sent
        uint64_t file_sent
        int finished
        int error
    void c_send_in_place "send_in_place"(int sock, const char *head, size_t head_len,
                                         int file_fd, uint64_t offset, uint64_t count,
                                         uint64_t limit, send_in_place_result *r)


cdef tuple send_in_place(Engine engine, int sock_fd, int file_fd, uint64_t offset,
                         uint64_t count, object head, uint64_t limit):
    cdef Py_buffer view
    cdef send_in_place_result r
    PyObject_GetBuffer(head, &view, PyBUF_SIMPLE)
    try:
        with nogil:
            c_send_in_place(sock_fd, <const char *>view.buf, <size_t>view.len, file_fd,
                            offset, count, limit, &r)
    finally:
        PyBuffer_Release(&view)
    # counted with the GIL held: no atomics needed
    engine._in_place_bytes += r.file_sent
    if r.finished and not r.error:
        engine._in_place_sends += 1
    return r.head_sent, r.file_sent, bool(r.finished), r.error
