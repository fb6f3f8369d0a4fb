# Connection and Listener: what Python handlers see.
# Included by _core.pyx (one extension module, several files).

# ------------------------------------------------------------- objects --

@cython.final
cdef class Connection:
    """One accepted TCP connection.  Post operations on it; the handler
    hears of their completion.  Posting on a closed connection returns
    False (connection_lost has been or will be called)."""
    cdef piocp_conn *_conn
    cdef conn_state *_state
    cdef readonly Engine _engine
    cdef readonly object handler
    cdef object _peer
    cdef sockaddr_storage _peer_address
    cdef object _on_data, _on_eof, _on_sent, _on_transmitted, _on_lost
    cdef bint _notify_send, _notify_transmit
    # Set when a recv is posted, cleared when its completion is dispatched
    # (GIL held for both).  The engine forgets a recv once it completed, but
    # its bytes sit in the one receive buffer until data_received runs: a
    # second recv posted in between would overwrite them.
    cdef bint _recv_outstanding
    cdef public bint closed

    def __cinit__(self):
        self._conn = NULL

    # No __dealloc__: the engine holds a strong reference to every open
    # Connection, and _closed gives the C reference back.

    def __repr__(self):
        return f"<pyiocp.Connection peer={self.peername} {'closed' if self.closed else 'open'}>"

    @property
    def peername(self):
        """(host, port) of the peer."""
        if self._peer is None:
            self._peer = sockaddr_to_tuple(&self._peer_address)
        return self._peer

    @property
    def engine(self):
        return self._engine

    def recv(self):
        """Posts a receive; data_received (or eof_received) follows.  At
        most one receive may be outstanding: from its post until its
        data_received or eof_received has been called."""
        cdef int rc
        if self._state == NULL:
            return False
        if self._recv_outstanding:
            raise RuntimeError("a recv is already pending on this connection")
        self._recv_outstanding = True
        with nogil:
            rc = piocp_recv(self._conn, &self._state.recv_req, self._state.recv_buf,
                            self._state.recv_size)
        if rc < 0:
            self._recv_outstanding = False   # a failed post never completes
            if rc == -ENOTCONN:
                return False
            raise os_error(rc, "recv")
        return True

    def send(self, data):
        """Posts a send of a bytes-like object; every byte is sent before
        later sends.  send_done(conn, nbytes) follows if the handler defines it."""
        cdef size_t length = 0
        cdef const void *pointer = NULL
        cdef send_request *sr = new_send_request(data, &pointer, &length)
        return self._post_send(sr, pointer, length, NULL, 0, -1, 0, 0)

    def transmit_file(self, file, uint64_t offset=0, count=None, head=b""):
        """Posts head bytes followed by `count` bytes of a file (a path, or an
        open descriptor the caller keeps owning) from `offset`, sent with
        zero-copy sendfile as one operation.  count=None: to the end."""
        cdef send_request *sr
        cdef size_t head_len = 0
        cdef const void *head_ptr = NULL
        cdef uint64_t c_count = PIOCP_TRANSMIT_TO_EOF
        cdef int fd
        cdef int open_error = 0
        cdef bint own = 0
        cdef bytes path
        cdef const char *c_path
        if count is not None:
            if count < 0:
                raise ValueError("count must be >= 0 or None")
            c_count = count
        if isinstance(file, int):
            if file < 0:
                raise ValueError("file descriptor must be >= 0")
            fd = file
        else:
            path = os.fsencode(file)
            c_path = path
            with nogil:
                fd = c_open(c_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
                if fd < 0:
                    open_error = errno
            if fd < 0:
                raise os_error(-open_error, None, os.fsdecode(path))
            own = 1
        try:
            sr = new_send_request(head, &head_ptr, &head_len)
        except BaseException:
            if own:
                c_close(fd)
            raise
        return self._post_send(sr, NULL, 0, head_ptr, head_len, fd, offset, c_count, own, 1)

    cdef object _post_send(self, send_request *sr, const void *data, size_t length,
                           const void *head, size_t head_len, int fd, uint64_t offset,
                           uint64_t count, bint own_fd=0, bint transmit=0):
        cdef int rc
        sr.shared = &self._engine._shared
        sr.req.complete = on_send_done
        sr.is_transmit = transmit
        sr.file_fd = fd
        sr.own_fd = own_fd
        sr.notify = self._notify_transmit if transmit else self._notify_send
        if sr.notify:
            sr.connection = <PyObject *>self
            Py_INCREF(self)
        if self._conn == NULL or self._state == NULL:
            rc = -ENOTCONN
        elif transmit:
            with nogil:
                rc = piocp_transmit(self._conn, &sr.req, head, head_len, fd, offset, count)
        else:
            with nogil:
                rc = piocp_send(self._conn, &sr.req, data, length)
        if rc < 0:
            if sr.connection != NULL:
                Py_DECREF(self)
            free_send_request(sr)
            if rc == -ENOTCONN:
                return False
            raise os_error(rc, "transmit_file" if transmit else "send")
        return True

    def close(self):
        """Graceful close: pending sends finish first, then connection_lost."""
        if self._state != NULL:
            piocp_close(self._conn)

    def abort(self):
        """Immediate close: pending operations are cancelled."""
        if self._state != NULL:
            piocp_abort(self._conn)

    # -- dispatch (GIL held) --

    cdef _handler_failed(self, str where):
        log.exception("pyiocp: exception in %s of %r; closing the connection", where,
                      self.handler)
        self.abort()

    cdef _recv_done(self, ssize_t result):
        self._recv_outstanding = False   # the handler may post the next one now
        if result > 0:
            data = PyBytes_FromStringAndSize(self._state.recv_buf, result)
            try:
                self._on_data(self, data)
            except BaseException:
                self._handler_failed("data_received")
        elif result == 0:
            try:
                self._on_eof(self)
            except BaseException:
                self._handler_failed("eof_received")
        elif result == -ECANCELED:
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

    cdef _closed(self, int error):
        self.closed = True
        self._state = NULL
        # give the pool slot back now, not when Python drops this object (a
        # logged traceback may keep it for long): a stopped engine can then
        # free everything at once
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
        cdef Connection conn = Connection.__new__(Connection)
        conn._conn = cs.conn          # takes over the reference from on_connection
        conn._state = cs
        conn._engine = self._engine
        cdef socklen_t length
        piocp_conn_peer(cs.conn, &conn._peer_address, &length)
        cs.connection = <PyObject *>conn
        Py_INCREF(conn)               # the engine's, dropped when it closes
        try:
            handler = self.handler_factory()
            conn.handler = handler
            conn._on_data = handler.data_received
            conn._on_eof = handler.eof_received
            conn._on_sent = handler.send_done
            conn._on_transmitted = handler.transmit_done
            conn._on_lost = handler.connection_lost
            kind = type(handler)
            conn._notify_send = _overrides(kind, "send_done")
            conn._notify_transmit = _overrides(kind, "transmit_done")
            handler.connection_made(conn)
        except BaseException:
            conn._handler_failed("connection_made")


def _overrides(kind, name):
    from .handler import Handler
    return getattr(kind, name, None) is not getattr(Handler, name)
