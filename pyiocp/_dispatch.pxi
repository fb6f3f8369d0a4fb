# Completion plumbing: per-connection C state, the C callbacks the engine
# calls on worker threads (no GIL), the dispatch queue and send requests.
# Included by _core.pyx (one extension module, several files).

# ------------------------------------------------------------------ state --

cdef struct engine_shared:
    dispatch_queue queue
    PyObject *engine          # borrowed: the Engine outlives its workers
    piocp_engine *c_engine    # its C engine, while it exists: for counting
    write_budget budget       # bytes held for sends, all connections

cdef struct listener_state:
    engine_shared *shared
    PyObject *listener        # borrowed: the Engine keeps its Listeners; NULL
                              # for the engine's own (connect, adopt)
    size_t recv_size

cdef struct conn_state:
    piocp_request recv_req
    char *recv_buf
    size_t recv_size
    piocp_conn *conn
    listener_state *listener
    PyObject *connection      # strong while the connection is open in C
    PyObject *handler         # strong until dispatched: connect/adopt made it first
    write_flow flow           # bytes queued for sending (flow control)
    # A node per completion that can wait in the queue at the same time as
    # the others: the recv behind the accept, the close behind both, and
    # the resume_writing a send completion asks for.
    dispatch_node accept_node
    dispatch_node recv_node
    dispatch_node closed_node
    dispatch_node resume_node

cdef struct send_request:
    piocp_request req
    dispatch_node node
    engine_shared *shared
    conn_state *cs            # valid until after the completion (closed comes last)
    size_t counted            # bytes in cs.flow for this request
    size_t held               # bytes of the engine's write budget it holds
    PyObject *connection      # strong, only when Python must be told
    Py_buffer view            # a held buffer (payload or head), while holds_view
    bint holds_view
    piocp_file file_fd
    bint own_fd
    bint notify
    bint is_transmit

cdef struct call_request:
    piocp_request req
    dispatch_node node
    engine_shared *shared
    PyObject *callback
    # NULL for a posted call (allocated, freed once dispatched); for one of
    # the Engine's own requests (Engine._post_own), the Engine's flag that
    # says it is posted, cleared once dispatched
    bint *posted

cdef struct connect_request:
    dispatch_node node        # queued only when the connect failed
    listener_state *ls        # the engine's own
    PyObject *handler         # strong: told connection_made or connection_failed

cdef struct timer_request:
    piocp_request req
    dispatch_node node
    engine_shared *shared
    PyObject *handle          # strong: the TimerHandle, until dispatched


cdef conn_state *new_conn_state(listener_state *ls, piocp_conn *conn) noexcept nogil:
    """The binding's state of an accepted connection, or NULL (no memory)."""
    cdef conn_state *cs = <conn_state *>binding_calloc(b"py_conn_state", 1, sizeof(conn_state))
    if cs == NULL:
        return NULL
    cs.recv_buf = <char *>binding_malloc(b"py_recv_buffer", ls.recv_size)
    if cs.recv_buf == NULL:
        binding_free(cs)
        return NULL
    cs.recv_size = ls.recv_size
    cs.conn = conn
    cs.listener = ls
    cs.recv_req.complete = on_recv_done
    cs.recv_req.user = cs
    dispatch_node_init(&cs.accept_node, ITEM_ACCEPT, cs)
    dispatch_node_init(&cs.recv_node, ITEM_RECV, cs)
    dispatch_node_init(&cs.closed_node, ITEM_CLOSED, cs)
    dispatch_node_init(&cs.resume_node, ITEM_RESUME, cs)
    cs.handler = NULL
    write_flow_init(&cs.flow, DEFAULT_WRITE_LOW)
    return cs


cdef void free_conn_state(conn_state *cs) noexcept nogil:
    binding_free(cs.recv_buf)
    binding_free(cs)


cdef void on_connection(piocp_listener *listener, piocp_conn *conn, void *user) noexcept nogil:
    cdef listener_state *ls = <listener_state *>user
    cdef conn_state *cs = new_conn_state(ls, conn)
    if cs == NULL:
        piocp_abort(conn)
        return
    piocp_conn_retain(conn)   # handed to the Connection object
    piocp_conn_set_callbacks(conn, on_closed, cs)
    dispatch_queue_push(&ls.shared.queue, &cs.accept_node, 0)


cdef void on_connect_done(piocp_conn *conn, int error, void *user) noexcept nogil:
    cdef connect_request *cr = <connect_request *>user
    cdef conn_state *cs
    if conn != NULL:
        cs = new_conn_state(cr.ls, conn)
        if cs != NULL:
            piocp_conn_retain(conn)   # handed to the Connection object
            piocp_conn_set_callbacks(conn, on_closed, cs)
            cs.handler = cr.handler   # its reference moves with it
            binding_free(cr)
            dispatch_queue_push(&cs.listener.shared.queue, &cs.accept_node, 0)
            return
        piocp_abort(conn)
        error = -PIOCP_ENOMEM
    dispatch_queue_push(&cr.ls.shared.queue, &cr.node, error)


cdef void on_timer_done(piocp_request *req, ssize_t result) noexcept nogil:
    cdef timer_request *tr = <timer_request *>req
    dispatch_queue_push(&tr.shared.queue, &tr.node, result)


cdef void on_recv_done(piocp_request *req, ssize_t result) noexcept nogil:
    cdef conn_state *cs = <conn_state *>req.user
    # never queued twice: Connection.recv refuses another post until this
    # completion has been dispatched
    dispatch_queue_push(&cs.listener.shared.queue, &cs.recv_node, result)


cdef void on_closed(piocp_conn *conn, int error) noexcept nogil:
    cdef conn_state *cs = <conn_state *>piocp_conn_user(conn)
    dispatch_queue_push(&cs.listener.shared.queue, &cs.closed_node, error)


cdef void on_send_done(piocp_request *req, ssize_t result) noexcept nogil:
    cdef send_request *sr = <send_request *>req
    if sr.own_fd:
        binding_close_file(sr.file_fd)   # no GIL needed for that
        sr.own_fd = 0
    write_budget_give(&sr.shared.budget, sr.held)
    if write_flow_done(&sr.cs.flow, sr.counted):
        # down to the low mark with writing paused: resume_writing, in
        # order with the other completions of this connection
        dispatch_queue_push(&sr.shared.queue, &sr.cs.resume_node, 0)
    if sr.notify or sr.holds_view:
        dispatch_queue_push(&sr.shared.queue, &sr.node, result)
    else:
        binding_free(sr)              # copied payload, nobody to tell


cdef void on_call_done(piocp_request *req, ssize_t result) noexcept nogil:
    cdef call_request *cr = <call_request *>req
    dispatch_queue_push(&cr.shared.queue, &cr.node, result)


cdef extern from "worker_thread_state.h" nogil:
    bint pyiocp_interpreter_finalizing()
    void pyiocp_worker_attach()
    void pyiocp_worker_detach()


cdef void worker_start(void *user) noexcept nogil:
    pyiocp_worker_attach()    # one thread state for the worker's life


cdef void worker_stop(void *user) noexcept nogil:
    pyiocp_worker_detach()


cdef void engine_stopping(void *user) noexcept nogil:
    cdef engine_shared *shared = <engine_shared *>user
    if pyiocp_interpreter_finalizing():
        return
    with gil:
        try:
            (<Engine>shared.engine)._run_stopping_hooks()
        except BaseException:
            log.exception("pyiocp: internal error while running the stopping hooks")


cdef void batch_end(void *user) noexcept nogil:
    cdef engine_shared *shared = <engine_shared *>user
    if not dispatch_queue_pending(&shared.queue):
        return   # most loop turns: nothing for Python
    if pyiocp_interpreter_finalizing():
        return   # too late for Python; the engines were stopped at exit
    dispatch_pending(shared, True)


cdef void dispatch_pending(engine_shared *shared, bint run_handlers) noexcept nogil:
    """Runs what is queued, batch after batch, one GIL acquisition each;
    returns at once if another thread is dispatching (it takes what is
    queued after its batch).  Called by workers (batch_end) and, with the
    GIL already held, by the engine when it stops or is freed."""
    cdef dispatch_node *batch
    cdef uint64_t count
    while True:
        batch = dispatch_queue_claim(&shared.queue)
        if batch == NULL:
            return
        with gil:
            count = dispatch_batch(batch, run_handlers)
        dispatch_queue_release(&shared.queue)
        if shared.c_engine != NULL:
            piocp_metric_add(shared.c_engine, PIOCP_M_DISPATCHED, count)
            piocp_metric_add(shared.c_engine, PIOCP_M_BATCHES, 1)


cdef uint64_t dispatch_batch(dispatch_node *node, bint run_handlers) noexcept:
    """Runs a batch; returns how many completions it held."""
    cdef dispatch_node *next_node
    cdef uint64_t count = 0
    while node != NULL:
        count += 1
        # read first: once it has run, a node may be queued again at once
        # (the handler posted the next recv) or freed (a send, a close)
        next_node = node.next
        try:
            dispatch_one(node.kind, node.owner, node.result, run_handlers)
        except BaseException:
            log.exception("pyiocp: internal error while dispatching a completion")
        node = next_node
    return count


cdef dispatch_one(int kind, void *ptr, ssize_t result, bint run_handlers):
    """run_handlers is false only while a garbage-collected engine frees
    itself: then no Connection exists (each holds its engine) and queued
    items are only released."""
    cdef conn_state *cs
    cdef send_request *sr
    cdef call_request *cr
    cdef connect_request *ccr
    cdef timer_request *tr
    cdef TimerHandle timer
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
        if cs.handler != NULL:
            # connect() or adopt() made its handler before the connection
            handler = <object>cs.handler
            cs.handler = NULL
            Py_DECREF(handler)
            if run_handlers:
                start_connection((<Engine>cs.listener.shared.engine), cs, handler)
            else:
                piocp_conn_release(cs.conn)
        elif run_handlers:
            (<Listener>cs.listener.listener)._accept(<size_t>cs)
        else:
            piocp_conn_release(cs.conn)
    elif kind == ITEM_CONNECT_FAILED:
        ccr = <connect_request *>ptr
        handler = <object>ccr.handler
        Py_DECREF(handler)
        binding_free(ccr)
        if run_handlers:
            connection_failed(handler, os_error(result, "connect"))
    elif kind == ITEM_TIMER:
        tr = <timer_request *>ptr
        timer = <TimerHandle>tr.handle
        timer._req = NULL
        binding_free(tr)
        try:
            if result == 0 and run_handlers:
                timer._run()
        finally:
            Py_DECREF(timer)
    elif kind == ITEM_CLOSED:
        cs = <conn_state *>ptr
        if cs.connection == NULL:
            free_conn_state(cs)
            return
        conn = <Connection>cs.connection
        cs.connection = NULL
        try:
            conn._closed(<int>result)
        finally:
            free_conn_state(cs)
            Py_DECREF(conn)
    elif kind == ITEM_RESUME:
        cs = <conn_state *>ptr
        write_flow_resume_item_ran(&cs.flow)
        if cs.connection != NULL and run_handlers:
            (<Connection>cs.connection)._resume_item()
    elif kind == ITEM_LEND:
        dispatch_lend(<lend_request *>ptr, <int>result, run_handlers)
    elif kind == ITEM_CALL:
        cr = <call_request *>ptr
        callback = <object>cr.callback
        Py_DECREF(callback)
        if cr.posted != NULL:
            cr.posted[0] = 0      # the Engine's own: it may post it again
        else:
            binding_free(cr)
        if not run_handlers:
            return
        try:
            callback()
        except BaseException:
            log.exception("pyiocp: exception in a posted callback")


cdef call_request *new_call_request(engine_shared *shared, object callback) except NULL:
    """A posted call holding a reference to `callback` until dispatched."""
    cdef call_request *cr = <call_request *>binding_calloc(b"py_call", 1, sizeof(call_request))
    if cr == NULL:
        raise MemoryError()
    cr.req.complete = on_call_done
    dispatch_node_init(&cr.node, ITEM_CALL, cr)
    cr.shared = shared
    cr.callback = <PyObject *>callback
    Py_INCREF(callback)
    return cr


cdef void free_call_request(call_request *cr) noexcept:
    """For a call that was never posted."""
    Py_DECREF(<object>cr.callback)
    binding_free(cr)


cdef void free_send_request(send_request *sr) noexcept:
    if sr.holds_view:
        PyBuffer_Release(&sr.view)
    if sr.own_fd:
        binding_close_file(sr.file_fd)
    binding_free(sr)


cdef send_request *new_send_request(object data, const void **pointer,
                                    size_t *length) except NULL:
    """Allocates a request carrying data's bytes, as they are now: what is
    sent never changes if the caller changes its buffer after the call.
    Copied behind the request (its completion then needs no GIL), except a
    large `bytes`, which cannot change: that one is held, and released on
    completion.  Sized to the payload: no 16 KiB calloc per send."""
    cdef Py_buffer view
    cdef send_request *sr
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    length[0] = <size_t>view.len
    if view.len <= COPY_LIMIT or type(data) is not bytes:
        sr = <send_request *>binding_malloc(b"py_send", sizeof(send_request) + <size_t>view.len)
        if sr != NULL:
            memset(sr, 0, sizeof(send_request))
            memcpy((<char *>sr) + sizeof(send_request), view.buf, <size_t>view.len)
            pointer[0] = (<char *>sr) + sizeof(send_request)
        PyBuffer_Release(&view)
    else:
        sr = <send_request *>binding_malloc(b"py_send", sizeof(send_request))
        if sr != NULL:
            memset(sr, 0, sizeof(send_request))
            sr.view = view
            sr.holds_view = 1
            pointer[0] = view.buf
        else:
            PyBuffer_Release(&view)
    if sr == NULL:
        raise MemoryError()
    dispatch_node_init(&sr.node, ITEM_SEND, sr)
    return sr
