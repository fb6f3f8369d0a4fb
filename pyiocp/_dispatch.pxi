# Completion plumbing: per-connection C state, the C callbacks the engine
# calls on worker threads (no GIL), the dispatch queue and send requests.
# Included by _core.pyx (one extension module, several files).

# ------------------------------------------------------------------ state --

cdef struct engine_shared:
    dispatch_queue queue
    PyObject *engine          # borrowed: the Engine outlives its workers

cdef struct listener_state:
    engine_shared *shared
    PyObject *listener        # borrowed: the Engine keeps its Listeners
    size_t recv_size

cdef struct conn_state:
    piocp_request recv_req
    char *recv_buf
    size_t recv_size
    piocp_conn *conn
    listener_state *listener
    PyObject *connection      # strong while the connection is open in C

cdef struct send_request:
    piocp_request req
    engine_shared *shared
    PyObject *connection      # strong, only when Python must be told
    Py_buffer view            # a held buffer (payload or head), while holds_view
    bint holds_view
    int file_fd
    bint own_fd
    bint notify
    bint is_transmit

cdef struct call_request:
    piocp_request req
    engine_shared *shared
    PyObject *callback


cdef inline void push(engine_shared *shared, int kind, void *ptr, ssize_t result) noexcept nogil:
    # A failed push means malloc failed; there is no way to tell Python
    # then, and dropping a completion would leak or hang, so fail loudly.
    if dispatch_queue_push(&shared.queue, kind, ptr, result) != 0:
        with gil:
            log.critical("pyiocp: out of memory queueing a completion")
        abort_process()

cdef extern from "<stdlib.h>" nogil:
    void abort_process "abort" ()


cdef void on_connection(piocp_listener *listener, piocp_conn *conn, void *user) noexcept nogil:
    cdef listener_state *ls = <listener_state *>user
    cdef conn_state *cs = <conn_state *>calloc(1, sizeof(conn_state))
    if cs != NULL:
        cs.recv_buf = <char *>malloc(ls.recv_size)
    if cs == NULL or cs.recv_buf == NULL:
        if cs != NULL:
            free(cs)
        piocp_abort(conn)
        return
    cs.recv_size = ls.recv_size
    cs.conn = conn
    cs.listener = ls
    cs.recv_req.complete = on_recv_done
    cs.recv_req.user = cs
    piocp_conn_retain(conn)   # handed to the Connection object
    piocp_conn_set_callbacks(conn, on_closed, cs)
    push(ls.shared, ITEM_ACCEPT, cs, 0)


cdef void on_recv_done(piocp_request *req, ssize_t result) noexcept nogil:
    cdef conn_state *cs = <conn_state *>req.user
    push(cs.listener.shared, ITEM_RECV, cs, result)


cdef void on_closed(piocp_conn *conn, int error) noexcept nogil:
    cdef conn_state *cs = <conn_state *>piocp_conn_user(conn)
    push(cs.listener.shared, ITEM_CLOSED, cs, error)


cdef void on_send_done(piocp_request *req, ssize_t result) noexcept nogil:
    cdef send_request *sr = <send_request *>req
    if sr.own_fd:
        c_close(sr.file_fd)   # no GIL needed for that
        sr.own_fd = 0
    if sr.notify or sr.holds_view:
        push(sr.shared, ITEM_SEND, sr, result)
    else:
        free(sr)              # copied payload, nobody to tell


cdef void on_call_done(piocp_request *req, ssize_t result) noexcept nogil:
    cdef call_request *cr = <call_request *>req
    push(cr.shared, ITEM_CALL, cr, result)


cdef void batch_end(void *user) noexcept nogil:
    cdef engine_shared *shared = <engine_shared *>user
    cdef dispatch_item *items
    cdef size_t n
    while True:
        n = dispatch_queue_claim(&shared.queue, &items)
        if n == 0:
            return
        with gil:
            dispatch_batch(items, n, True)
        dispatch_queue_release(&shared.queue)


cdef void dispatch_batch(dispatch_item *items, size_t n, bint run_handlers) noexcept:
    cdef size_t i
    for i in range(n):
        try:
            dispatch_one(items[i].kind, items[i].ptr, items[i].result, run_handlers)
        except BaseException:
            log.exception("pyiocp: internal error while dispatching a completion")


cdef dispatch_one(int kind, void *ptr, ssize_t result, bint run_handlers):
    """run_handlers is false only while a garbage-collected engine frees
    itself: then no Connection exists (each holds its engine) and queued
    items are only released."""
    cdef conn_state *cs
    cdef send_request *sr
    cdef call_request *cr
    cdef Connection conn
    if kind == ITEM_RECV:
        cs = <conn_state *>ptr
        conn = <Connection>cs.connection
        conn._recv_done(result)
    elif kind == ITEM_SEND:
        sr = <send_request *>ptr
        if sr.connection != NULL:
            conn = <Connection>sr.connection
            sr.connection = NULL
            try:
                if result >= 0:
                    conn._send_done(sr.is_transmit, result)
            finally:
                Py_DECREF(conn)
        free_send_request(sr)
    elif kind == ITEM_ACCEPT:
        cs = <conn_state *>ptr
        if run_handlers:
            (<Listener>cs.listener.listener)._accept(<size_t>cs)
        else:
            piocp_conn_release(cs.conn)
    elif kind == ITEM_CLOSED:
        cs = <conn_state *>ptr
        if cs.connection == NULL:
            free(cs.recv_buf)
            free(cs)
            return
        conn = <Connection>cs.connection
        cs.connection = NULL
        try:
            conn._closed(<int>result)
        finally:
            free(cs.recv_buf)
            free(cs)
            Py_DECREF(conn)
    elif kind == ITEM_CALL:
        cr = <call_request *>ptr
        callback = <object>cr.callback
        Py_DECREF(callback)
        free(cr)
        if not run_handlers:
            return
        try:
            callback()
        except BaseException:
            log.exception("pyiocp: exception in a posted callback")


cdef void free_send_request(send_request *sr) noexcept:
    if sr.holds_view:
        PyBuffer_Release(&sr.view)
    if sr.own_fd:
        c_close(sr.file_fd)
    free(sr)


cdef send_request *new_send_request(object data, const void **pointer,
                                    size_t *length) except NULL:
    """Allocates a request carrying data's bytes: copied behind the request
    when small (its completion then needs no GIL), else a held buffer,
    released on completion.  Sized to the payload: no 16 KiB calloc per send."""
    cdef Py_buffer view
    cdef send_request *sr
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    length[0] = <size_t>view.len
    if view.len <= COPY_LIMIT:
        sr = <send_request *>malloc(sizeof(send_request) + <size_t>view.len)
        if sr != NULL:
            memset(sr, 0, sizeof(send_request))
            memcpy((<char *>sr) + sizeof(send_request), view.buf, <size_t>view.len)
            pointer[0] = (<char *>sr) + sizeof(send_request)
        PyBuffer_Release(&view)
    else:
        sr = <send_request *>malloc(sizeof(send_request))
        if sr != NULL:
            memset(sr, 0, sizeof(send_request))
            sr.view = view
            sr.holds_view = 1
            pointer[0] = view.buf
        else:
            PyBuffer_Release(&view)
    if sr == NULL:
        raise MemoryError()
    return sr
