# Connection and Listener: what Python handlers see.
# Included by _core.pyx (one extension module, several files).

# ------------------------------------------------------------- objects --

@cython.final
cdef class Connection:
    """One TCP connection.  Post operations on it; the handler hears of
    their completion.

    Every method is safe from any thread at any time.  Posting on a closed
    connection returns False (connection_lost has been or will be called);
    close() and abort() on one do nothing.  A Connection keeps its pool slot
    until connection_lost has been dispatched, and the binding never lets go
    of the GIL between checking that it is open and posting: a call can
    reach no other connection than this one, whatever thread makes it."""
    cdef piocp_conn *_conn
    cdef conn_state *_state
    cdef readonly Engine _engine
    cdef readonly object handler
    cdef object _peer
    cdef sockaddr_storage _peer_address
    cdef object _on_data, _on_eof, _on_sent, _on_transmitted, _on_lost
    cdef object _on_pause, _on_resume
    cdef bint _notify_send, _notify_transmit, _notify_stopping
    # Set when a recv is posted, cleared when its completion is dispatched
    # (GIL held for both).  The engine forgets a recv once it completed, but
    # its bytes sit in the one receive buffer until data_received runs: a
    # second recv posted in between would overwrite them.
    cdef bint _recv_outstanding
    # Flow control (asyncio's): the marks, and whether pause_writing was
    # called without its resume_writing yet.  The byte count is in C.
    cdef size_t _write_high, _write_low
    cdef bint _writing_paused
    cdef bint _closed_flag
    cdef bint _eof_written
    cdef object _sockname

    def __cinit__(self):
        self._conn = NULL
        self._write_high = DEFAULT_WRITE_HIGH
        self._write_low = DEFAULT_WRITE_LOW

    # No __dealloc__: the engine holds a strong reference to every open
    # Connection, and _closed gives the C reference back.

    def __repr__(self):
        return f"<pyiocp.Connection peer={self.peername} {'closed' if self.closed else 'open'}>"

    @property
    def closed(self):
        """True once connection_lost has been called (read-only)."""
        return self._closed_flag

    @property
    def peername(self):
        """(host, port) of the peer."""
        if self._peer is None:
            self._peer = sockaddr_to_tuple(&self._peer_address)
        return self._peer

    @property
    def engine(self):
        return self._engine

    cdef inline bint _open(self):
        # _state is cleared (GIL held) when connection_lost is dispatched,
        # which happens for every connection before its engine is freed;
        # the engine check is the belt to those braces
        return self._state != NULL and self._engine._c != NULL

    def recv(self):
        """Posts a receive; data_received (or eof_received) follows.  At
        most one receive may be outstanding: from its post until its
        data_received or eof_received has been called (RuntimeError
        otherwise)."""
        cdef int rc
        if not self._open():
            return False
        if self._recv_outstanding:
            raise RuntimeError("a recv is already pending on this connection")
        self._recv_outstanding = True
        # with the GIL: connection_lost cannot free the state meanwhile
        rc = piocp_recv(self._conn, &self._state.recv_req, self._state.recv_buf,
                        self._state.recv_size)
        if rc < 0:
            self._recv_outstanding = False   # a failed post never completes
            if rc == -PIOCP_ENOTCONN:
                return False
            raise os_error(rc, "recv")
        return True

    def send(self, data):
        """Posts a send of a bytes-like object; every byte is sent before
        later sends.  The bytes are taken as they are at the call: changing
        the buffer afterwards changes nothing that is sent.  send_done(conn,
        nbytes) follows if the handler defines it.  Raises BufferError if
        the engine's max_write_buffer would be exceeded."""
        cdef size_t length = 0
        cdef const void *pointer = NULL
        cdef send_request *sr = new_send_request(data, &pointer, &length)
        return self._post_send(sr, pointer, length, NULL, 0, PIOCP_INVALID_FILE, 0, 0, length)

    def transmit_file(self, file, offset=0, count=None, head=b""):
        """Posts head bytes followed by `count` bytes of a regular file (a
        path, or a descriptor open for reading that the caller keeps
        owning) from `offset`, sent with zero-copy sendfile as one
        operation.  count=None: to the end.  The file bytes count in
        get_write_buffer_size() until sent."""
        cdef send_request *sr
        cdef size_t head_len = 0
        cdef const void *head_ptr = NULL
        cdef uint64_t c_count = PIOCP_TRANSMIT_TO_EOF
        cdef uint64_t c_offset
        cdef uint64_t file_bytes
        cdef piocp_file fd = PIOCP_INVALID_FILE
        cdef int rc = 0, kind = 0
        cdef uint64_t size = 0
        cdef bint own = 0
        cdef bytes path
        cdef const char *c_path
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an integer, not {offset!r}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        if count is not None:
            if isinstance(count, bool) or not isinstance(count, int):
                raise TypeError(f"count must be an integer or None, not {count!r}")
            if count < 0:
                raise ValueError("count must be >= 0 or None")
            c_count = count
        c_offset = offset
        if isinstance(file, int):
            if file < 0:
                raise ValueError("file descriptor must be >= 0")
            fd = binding_file_from_os_handle(_os_handle(file))
        else:
            path = os.fsencode(file)
            if b"\0" in path:
                raise ValueError("transmit_file: embedded null byte in the path")
            c_path = path
            with nogil:
                rc = binding_open_file(c_path, &fd)
            if rc < 0:
                raise os_error(rc, None, os.fsdecode(path))
            own = 1
        try:
            # a regular file only: a directory or a FIFO would fail later,
            # as a reset, instead of here
            rc = binding_file_info(fd, &kind, &size)
            if rc < 0:
                raise os_error(rc, "transmit_file")
            if kind != BINDING_FILE_REGULAR:
                if kind == BINDING_FILE_DIRECTORY:
                    raise IsADirectoryError(PIOCP_EISDIR, "transmit_file: is a directory", file)
                raise OSError(PIOCP_EINVAL, "transmit_file: not a regular file", file)
            if not own:
                # the caller's descriptor may be write-only (or O_PATH): the
                # send would fail with EBADF, as a reset, instead of here
                rc = binding_file_readable(fd)
                if rc < 0:
                    raise os_error(rc, "transmit_file")
                if rc == 0:
                    raise OSError(PIOCP_EBADF, "transmit_file: not open for reading", file)
            if c_count == PIOCP_TRANSMIT_TO_EOF:
                # fixed here: the engine then needs no fstat of its own
                c_count = size - c_offset if size > c_offset else 0
            file_bytes = c_count
            sr = new_send_request(head, &head_ptr, &head_len)
        except BaseException:
            if own:
                binding_close_file(fd)
            raise
        return self._post_send(sr, NULL, 0, head_ptr, head_len, fd, c_offset, c_count,
                               head_len + <size_t>file_bytes, own, 1)

    cdef object _post_send(self, send_request *sr, const void *data, size_t length,
                           const void *head, size_t head_len, piocp_file fd, uint64_t offset,
                           uint64_t count, size_t counted, bint own_fd=0, bint transmit=0):
        cdef int rc
        cdef size_t queued
        sr.shared = &self._engine._shared
        sr.req.complete = on_send_done
        sr.is_transmit = transmit
        sr.file_fd = fd
        sr.own_fd = own_fd
        if not self._open():
            free_send_request(sr)
            return False
        # memory held for it: the payload or the head (file bytes are read
        # as they go)
        if self._eof_written:
            free_send_request(sr)
            raise RuntimeError(f"{'transmit_file' if transmit else 'send'}() after write_eof()")
        sr.held = length + head_len
        if not write_budget_take(&self._engine._shared.budget, sr.held):
            free_send_request(sr)
            raise BufferError(
                f"{'transmit_file' if transmit else 'send'} of {length + head_len} bytes "
                f"would exceed the engine's max_write_buffer "
                f"({self._engine._shared.budget.cap} bytes queued across its connections); "
                "wait for resume_writing before sending more")
        sr.cs = self._state
        sr.counted = counted
        sr.notify = self._notify_transmit if transmit else self._notify_send
        if sr.notify:
            sr.connection = <PyObject *>self
            Py_INCREF(self)
        # counted before posting: a completion may run (and subtract) at once
        queued = write_flow_add(&self._state.flow, counted)
        # with the GIL: connection_lost cannot free the state meanwhile
        if transmit:
            rc = piocp_transmit(self._conn, &sr.req, head, head_len, fd, offset, count)
        else:
            rc = piocp_send(self._conn, &sr.req, data, length)
        if rc < 0:
            write_flow_undo(&self._state.flow, counted)
            write_budget_give(&self._engine._shared.budget, sr.held)
            if sr.connection != NULL:
                Py_DECREF(self)
            free_send_request(sr)
            if rc == -PIOCP_ENOTCONN:
                return False
            raise os_error(rc, "transmit_file" if transmit else "send")
        if queued > self._write_high and not self._writing_paused:
            self._pause_writing()
        return True

    # -- flow control (asyncio's transport contract) --

    def get_write_buffer_size(self):
        """Bytes posted for sending and not yet handed to the kernel: send
        payloads, transmit heads and the file bytes of transmits."""
        if self._state == NULL:
            return 0
        return write_flow_queued(&self._state.flow)

    def get_write_buffer_limits(self):
        """(low, high), as asyncio's WriteTransport."""
        return (self._write_low, self._write_high)

    def set_write_buffer_limits(self, high=None, low=None):
        """pause_writing(conn) is called when the write buffer goes over
        `high` bytes, resume_writing(conn) when it falls back to `low`.
        asyncio's rules: high defaults to 64 KiB (or 4 × low), low to
        high // 4; 0 <= low <= high."""
        if high is None:
            high = 65536 if low is None else 4 * low
        if low is None:
            low = high // 4
        for name, value in (("high", high), ("low", low)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer or None, not {value!r}")
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._write_high = high
        self._write_low = low
        if self._state == NULL:
            return
        write_flow_set_low(&self._state.flow, low)
        if write_flow_queued(&self._state.flow) > self._write_high and not self._writing_paused:
            self._pause_writing()

    cdef _pause_writing(self):
        """In the send() (or set_write_buffer_limits()) that crossed the
        high mark, on its thread, as asyncio's transport.write() does: a
        handler sending in a loop sees the pause before its next send."""
        self._writing_paused = True
        try:
            self._on_pause(self)
        except BaseException:
            self._handler_failed("pause_writing")
        # armed after the call: a resume queued now runs after it
        if write_flow_arm_resume(&self._state.flow):
            # everything drained meanwhile: resume, in the dispatch order
            if write_flow_claim_resume_item(&self._state.flow):
                dispatch_queue_push(&self._engine._shared.queue, &self._state.resume_node, 0)
                # a worker dispatches it at the end of its next batch; make
                # sure there is one
                self._engine._wake_dispatch()

    cdef _resume_item(self):
        """A send completion brought the buffer down to the low mark (or
        _pause_writing found it there)."""
        if not self._writing_paused or self._state == NULL:
            return
        if write_flow_queued(&self._state.flow) > self._write_low:
            # it grew again before this ran: the next completion to reach
            # the low mark resumes (or it is already there)
            if not write_flow_arm_resume(&self._state.flow):
                return
        self._writing_paused = False
        try:
            self._on_resume(self)
        except BaseException:
            self._handler_failed("resume_writing")

    @property
    def sockname(self):
        """(host, port) of this end (remembered once read; None if first
        asked after the connection closed)."""
        cdef sockaddr_storage addr
        cdef socklen_t length
        if self._sockname is None and self._open():
            if piocp_conn_sockname(self._conn, &addr, &length) == 0:
                self._sockname = sockaddr_to_tuple(&addr)
        return self._sockname

    def get_extra_info(self, name, default=None):
        """asyncio's transport.get_extra_info: "peername" and "sockname";
        anything else is `default`."""
        if name == "peername":
            return self.peername
        if name == "sockname":
            value = self.sockname
            return default if value is None else value
        return default

    def write_eof(self):
        """Half-close: once every send posted before it is handed to the
        kernel, the peer sees the end of the stream (FIN); reading goes on.
        A send or transmit_file afterwards raises RuntimeError, as asyncio's
        write() after write_eof() does.  Returns False on a closed
        connection."""
        cdef send_request *sr
        cdef int rc
        if not self._open():
            return False
        if self._eof_written:
            return True
        sr = <send_request *>binding_calloc(b"py_shutdown", 1, sizeof(send_request))
        if sr == NULL:
            raise MemoryError()
        dispatch_node_init(&sr.node, ITEM_SEND, sr)
        sr.req.complete = on_send_done   # frees it: no payload, nobody to tell
        sr.shared = &self._engine._shared
        sr.cs = self._state
        sr.file_fd = PIOCP_INVALID_FILE
        rc = piocp_shutdown(self._conn, &sr.req)
        if rc < 0:
            binding_free(sr)
            if rc == -PIOCP_ENOTCONN:
                return False
            raise os_error(rc, "write_eof")
        self._eof_written = True
        return True

    def can_write_eof(self):
        """True: write_eof() is supported (asyncio's transport method)."""
        return True

    def set_deadline(self, seconds, graceful=True):
        """Ends the connection if it is still open `seconds` from now:
        gracefully (pending recv cancelled, sends finished, FIN; then
        connection_lost(None)) or, with graceful=False, with a reset and
        connection_lost(TimeoutError).  None or 0 clears the deadline.
        For request and keep-alive timeouts that the engine's idle_timeout
        (no progress at all) cannot express.  Checked a few times a
        second."""
        cdef int ms = 0 if seconds is None else _milliseconds(seconds, "seconds")
        if not self._open():
            return False
        if graceful:
            piocp_conn_set_close_deadline(self._conn, ms)
        else:
            piocp_conn_set_deadline(self._conn, ms)
        return True

    def close(self):
        """Graceful close: pending sends finish first, then connection_lost."""
        if self._open():
            piocp_close(self._conn)

    def abort(self):
        """Immediate close: pending operations are cancelled."""
        if self._open():
            piocp_abort(self._conn)

    # -- dispatch (GIL held) --

    cdef _attach(self, handler):
        try:
            self.handler = handler
            self._on_data = handler.data_received
            self._on_eof = handler.eof_received
            self._on_sent = handler.send_done
            self._on_transmitted = handler.transmit_done
            self._on_lost = handler.connection_lost
            self._on_pause = handler.pause_writing
            self._on_resume = handler.resume_writing
            kind = type(handler)
            self._notify_send = _overrides(kind, "send_done")
            self._notify_transmit = _overrides(kind, "transmit_done")
            self._notify_stopping = _overrides(kind, "stopping")
            handler.connection_made(self)
        except BaseException:
            self._handler_failed("connection_made")

    cdef _handler_failed(self, str where):
        log.exception("pyiocp: exception in %s of %r; closing the connection", where,
                      self.handler)
        self.abort()

    cdef _recv_done(self, ssize_t result):
        if result > 0:
            # copied out first: once the flag is down another thread may
            # post the next recv into the same buffer
            data = PyBytes_FromStringAndSize(self._state.recv_buf, result)
            self._recv_outstanding = False
            try:
                self._on_data(self, data)
            except BaseException:
                self._handler_failed("data_received")
            return
        self._recv_outstanding = False   # the handler may post the next one now
        if result == 0:
            try:
                keep_open = self._on_eof(self)
            except BaseException:
                self._handler_failed("eof_received")
                return
            if not keep_open:
                # asyncio's rule: a false value (None) closes, once the
                # pending sends are done; a true one leaves it to the handler
                self.close()
        elif result == -PIOCP_ECANCELED:
            # the engine is stopping (or the connection closing): read no more
            self.close()
        # other errors broke the connection: connection_lost reports them

    cdef _send_done(self, bint transmit, ssize_t result):
        try:
            if transmit:
                self._on_transmitted(self, result)
            else:
                self._on_sent(self, result)
        except BaseException:
            self._handler_failed("transmit_done" if transmit else "send_done")

    cdef _stopping(self):
        if not self._notify_stopping or not self._open():
            return
        try:
            self.handler.stopping(self)
        except BaseException:
            self._handler_failed("stopping")

    cdef _closed(self, int error):
        self._closed_flag = True
        self._state = NULL
        self._engine._open_connections.discard(self)
        # give the pool slot back now, not when Python drops this object (a
        # logged traceback may keep it for long): a stopped engine can then
        # free everything at once (a freed one has taken its slots with it)
        if self._engine._shared.c_engine != NULL:
            piocp_conn_release(self._conn)
        self._conn = NULL
        if self._on_lost is None:
            return
        exc = os_error(error) if error < 0 else None
        try:
            self._on_lost(self, exc)
        except BaseException:
            log.exception("pyiocp: exception in connection_lost of %r", self.handler)


@cython.final
cdef class Listener:
    """A listening socket of an Engine."""
    cdef piocp_listener *_listener
    cdef listener_state _state
    cdef Engine _engine
    cdef readonly object handler_factory
    cdef readonly object native
    cdef object _refused_at_stop

    @property
    def address(self):
        """The bound (host, port), useful after binding port 0."""
        cdef sockaddr_storage addr
        cdef socklen_t length
        if self._engine._c == NULL:
            raise RuntimeError("the engine is stopped")
        rc = piocp_listener_address(self._listener, &addr, &length)
        if rc < 0:
            raise os_error(rc, "address")
        return sockaddr_to_tuple(&addr)

    @property
    def refused(self):
        """Connections refused because max_connections was reached."""
        if self._engine._c == NULL:
            return self._refused_at_stop
        return piocp_listener_refused(self._listener)

    cdef _accept(self, size_t state_address):
        cdef conn_state *cs = <conn_state *>state_address
        cdef Connection conn = new_connection(self._engine, cs)
        try:
            handler = self.handler_factory()
        except BaseException:
            conn._handler_failed("the handler factory")
            return
        conn._attach(handler)


cdef Connection new_connection(Engine engine, conn_state *cs):
    """The Connection of a connection accepted, connected or adopted in C
    (dispatch, GIL held)."""
    cdef Connection conn = Connection.__new__(Connection)
    cdef socklen_t length
    conn._conn = cs.conn          # takes over the reference from on_connection
    conn._state = cs
    conn._engine = engine
    piocp_conn_peer(cs.conn, &conn._peer_address, &length)
    cs.connection = <PyObject *>conn
    Py_INCREF(conn)               # the engine's, dropped when it closes
    engine._open_connections.add(conn)
    return conn


cdef start_connection(Engine engine, conn_state *cs, object handler):
    """connect() and adopt(): the handler was made before the connection."""
    new_connection(engine, cs)._attach(handler)


cdef connection_failed(object handler, object exc):
    try:
        handler.connection_failed(exc)
    except BaseException:
        log.exception("pyiocp: exception in connection_failed of %r", handler)


def _overrides(kind, name):
    from .handler import Handler
    return getattr(kind, name, None) is not getattr(Handler, name)
