# cython: language_level=3
"""The binding: GIL handling, buffer lifetimes and completion dispatch.

Completion callbacks from the engine run on worker threads without the GIL.
Those that need Python are queued (dispatch_queue.h) and run in batches,
one GIL acquisition per batch.  Every C callback here is `noexcept nogil`
and every Python call made from dispatch catches everything: nothing may
unwind into C.  A Python buffer handed to the kernel stays referenced until
its request has completed (small payloads are copied instead, so that their
completion needs no GIL at all).
"""
cimport cython
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from libc.errno cimport errno, ENOTCONN, EBUSY

cdef extern from "<errno.h>":
    int ECANCELED
from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset, strlen
from posix.fcntl cimport open as c_open, O_RDONLY, O_CLOEXEC
from posix.unistd cimport close as c_close

from ._engine_api cimport *

import logging
import math
import os
import signal
import socket
import threading

log = logging.getLogger("pyiocp")

__version__ = PIOCP_VERSION.decode()

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    short POLLIN

cdef extern from "<fcntl.h>" nogil:
    int O_NONBLOCK

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char *src, void *dst)
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)
    unsigned short htons(unsigned short)
    unsigned short ntohs(unsigned short)

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        pass
    struct in6_addr:
        pass
    struct sockaddr_in:
        unsigned short sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        unsigned short sin6_family
        unsigned short sin6_port
        in6_addr sin6_addr
    int AF_INET
    int AF_INET6

# Payloads up to this size are copied at send time: the completion then
# needs neither the GIL nor the Python object.
cdef enum:
    COPY_LIMIT = 16384

cdef enum ItemKind:
    ITEM_ACCEPT = 1
    ITEM_RECV = 2
    ITEM_SEND = 3
    ITEM_CLOSED = 4
    ITEM_CALL = 5


def _raise_errno(int rc, what=None):
    err = -rc
    msg = os.strerror(err)
    if what:
        msg = f"{what}: {msg}"
    raise OSError(err, msg)


cdef object _os_error(ssize_t rc):
    """OSError(errno, strerror): CPython picks ConnectionResetError & co."""
    return OSError(<int>-rc, os.strerror(<int>-rc))


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


cdef object sockaddr_to_tuple(sockaddr_storage *addr):
    cdef char text[64]
    cdef sockaddr_in *v4
    cdef sockaddr_in6 *v6
    if addr.ss_family == AF_INET:
        v4 = <sockaddr_in *>addr
        inet_ntop(AF_INET, &v4.sin_addr, text, sizeof(text))
        return (text.decode(), ntohs(v4.sin_port))
    if addr.ss_family == AF_INET6:
        v6 = <sockaddr_in6 *>addr
        inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof(text))
        return (text.decode(), ntohs(v6.sin6_port))
    return None


cdef socklen_t tuple_to_sockaddr(object address, sockaddr_storage *out) except 0:
    if not isinstance(address, tuple) or len(address) < 2:
        raise TypeError(f"address must be a (host, port) tuple, not {address!r}")
    host, port = address[0], address[1]
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in 0..65535, not {port!r}")
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    ip = sockaddr[0].encode()
    cdef sockaddr_in *v4 = <sockaddr_in *>out
    cdef sockaddr_in6 *v6 = <sockaddr_in6 *>out
    memset(out, 0, sizeof(sockaddr_storage))
    if family == socket.AF_INET:
        v4.sin_family = AF_INET
        v4.sin_port = htons(port)
        inet_pton(AF_INET, ip, &v4.sin_addr)
        return sizeof(sockaddr_in)
    v6.sin6_family = AF_INET6
    v6.sin6_port = htons(port)
    inet_pton(AF_INET6, ip, &v6.sin6_addr)
    return sizeof(sockaddr_in6)


def available_backends():
    """The backends this build and kernel support, best first."""
    cdef const char *names[8]
    cdef int n = piocp_backends_available(names, 8)
    return [names[i].decode() for i in range(n)]


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
        most one receive may be pending."""
        cdef int rc
        if self._state == NULL:
            return False
        with nogil:
            rc = piocp_recv(self._conn, &self._state.recv_req, self._state.recv_buf,
                            self._state.recv_size)
        if rc == -ENOTCONN:
            return False
        if rc < 0:
            if rc == -EBUSY:
                raise RuntimeError("a recv is already pending on this connection")
            _raise_errno(rc, "recv")
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
                raise OSError(errno, os.strerror(errno), os.fsdecode(path))
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
            _raise_errno(rc, "transmit_file" if transmit else "send")
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
        exc = _os_error(error) if error < 0 else None
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
            _raise_errno(rc, "address")
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


@cython.final
cdef class RawFileServer:
    """The raw file protocol ("name\\n" in, the file's bytes out) served by
    a native handler in C: no Python runs per request."""
    cdef piocp_raw_server *_server
    cdef readonly object root

    def __cinit__(self, root, *, access_log=None, int max_name=1024):
        cdef piocp_raw_options options
        cdef int rc
        self._server = NULL
        if max_name < 1 or max_name > 4096:
            raise ValueError("max_name must be in 1..4096")
        self.root = os.fspath(root)
        options.max_name = max_name
        options.access_log_fd = -1 if access_log is None else _fileno(access_log)
        path = os.fsencode(self.root)
        rc = piocp_raw_server_new(&self._server, path, &options)
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc), self.root)

    def __dealloc__(self):
        if self._server != NULL:
            piocp_raw_server_free(self._server)

    @property
    def requests(self):
        """Names answered so far (files sent and error lines)."""
        return piocp_raw_server_requests(self._server)


@cython.final
cdef class StaticFiles:
    """Static files over HTTP/1.1, served by a native handler in C (no
    Python per request): GET/HEAD, keep-alive and pipelining, ETag and
    Last-Modified, conditional requests, byte ranges, index.html or a
    directory listing.  Pass it to Engine.listen next to Python handlers."""
    cdef piocp_http_server *_server
    cdef readonly object root

    def __cinit__(self, root, *, listing=True, access_log=None, header_timeout=10.0,
                  keepalive_timeout=15.0, int max_head=8192, int max_discard=65536):
        cdef piocp_http_options options
        cdef int rc
        self._server = NULL
        if not 1024 <= max_head <= 1024 * 1024:
            raise ValueError("max_head must be in 1024..1048576 bytes")
        if not 1 <= max_discard <= 1 << 30:
            raise ValueError("max_discard must be in 1..1073741824 bytes")
        for name, value in (("header_timeout", header_timeout),
                            ("keepalive_timeout", keepalive_timeout)):
            if _milliseconds(value, name) == 0:
                raise ValueError(f"{name} must be > 0 seconds")
        self.root = os.fspath(root)
        memset(&options, 0, sizeof(options))
        options.listing = 1 if listing else 0
        options.max_head = max_head
        options.header_timeout_ms = _milliseconds(header_timeout, "header_timeout")
        options.keepalive_timeout_ms = _milliseconds(keepalive_timeout, "keepalive_timeout")
        options.max_discard = max_discard
        options.access_log_fd = -1 if access_log is None else _fileno(access_log)
        path = os.fsencode(self.root)
        rc = piocp_http_server_new(&self._server, path, &options)
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc), self.root)

    def __dealloc__(self):
        if self._server != NULL:
            piocp_http_server_free(self._server)

    @property
    def requests(self):
        """Responses sent so far."""
        return piocp_http_server_requests(self._server)


def _milliseconds(seconds, name="timeout"):
    """Seconds as whole milliseconds for C: rounded up, and capped where a C
    int would overflow (about 24 days, far beyond any sensible deadline)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {seconds!r}")
    if not seconds >= 0:   # also refuses NaN
        raise ValueError(f"{name} must be >= 0 seconds, not {seconds!r}")
    return int(min(math.ceil(seconds * 1000), 2**31 - 1))


def _fileno(target):
    if isinstance(target, int):
        return target
    target.flush()
    return target.fileno()


@cython.no_gc_clear   # its listeners must stay valid while it frees itself
cdef class Engine:
    """The completion engine: a pool of worker threads around one completion
    queue.  Use pyiocp.Engine (which validates its configuration)."""
    cdef piocp_engine *_c
    cdef engine_shared _shared
    cdef bint _queue_ready
    cdef list _listeners
    cdef object _natives
    cdef int _wake_read, _wake_write
    cdef readonly bint started
    cdef bint _stopped
    cdef bint _stop_requested
    cdef readonly object config
    cdef object _backend_name
    cdef int _threads

    def __cinit__(self, *args, **kwargs):
        self._c = NULL
        self._queue_ready = 0
        self._wake_read = self._wake_write = -1

    def __init__(self, config):
        cdef piocp_config c
        cdef int rc
        self.config = config
        if dispatch_queue_init(&self._shared.queue) != 0:
            raise MemoryError()
        self._queue_ready = 1
        self._shared.engine = <PyObject *>self
        backend = config.backend.encode()
        memset(&c, 0, sizeof(c))
        c.threads = config.threads or 0
        c.backend = backend
        c.max_connections = config.max_connections
        # rounded up: a timeout under 1 ms must not become 0, "never"
        c.idle_timeout_ms = _milliseconds(config.idle_timeout) if config.idle_timeout else 0
        c.batch_end = batch_end
        c.batch_user = &self._shared
        rc = piocp_engine_new(&self._c, &c)
        if rc < 0:
            self._c = NULL
            if config.backend != "auto":
                raise OSError(-rc, f"backend {config.backend!r} is not available: "
                                   f"{os.strerror(-rc)}")
            _raise_errno(rc, "engine")
        self._listeners = []
        self._backend_name = piocp_engine_backend(self._c).decode()
        self._threads = piocp_engine_threads(self._c)
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def __dealloc__(self):
        if self._c != NULL:
            with nogil:
                piocp_engine_stop(self._c, 0)
            self._drain(False)
        self._free()

    cdef _free(self):
        """Gives back every descriptor and byte: called once stopped and
        drained, when every Connection has been told it closed."""
        cdef Listener listener
        if self._c != NULL:
            for listener in self._listeners or ():
                listener._refused_at_stop = piocp_listener_refused(listener._listener)
            piocp_engine_free(self._c)
            self._c = NULL
        if self._queue_ready:
            dispatch_queue_destroy(&self._shared.queue)
            self._queue_ready = 0
        if self._wake_read >= 0:
            c_close(self._wake_read)
            c_close(self._wake_write)
            self._wake_read = self._wake_write = -1

    @property
    def backend(self):
        """The backend in use ("epoll")."""
        return self._backend_name

    @property
    def threads(self):
        return self._threads

    @property
    def connections(self):
        """Connections open right now."""
        return piocp_engine_connections(self._c) if self._c != NULL else 0

    @property
    def listeners(self):
        return list(self._listeners)

    def listen(self, address, handler, *, int backlog=-1):
        """Listens on (host, port).  `handler` is a factory called once per
        connection to make a pyiocp.Handler, or a native protocol handler
        such as pyiocp.RawFileServer.  Returns the Listener."""
        cdef sockaddr_storage addr
        cdef socklen_t length = tuple_to_sockaddr(address, &addr)
        cdef Listener listener = Listener.__new__(Listener)
        cdef const piocp_listener_callbacks *callbacks
        cdef void *user
        cdef int rc
        if self._stopped:
            raise RuntimeError("the engine is stopped")
        if backlog < 0:
            backlog = self.config.backlog
        listener._engine = self
        if isinstance(handler, RawFileServer):
            listener.native = handler
            callbacks = &piocp_raw_server_callbacks
            user = (<RawFileServer>handler)._server
        elif isinstance(handler, StaticFiles):
            listener.native = handler
            callbacks = &piocp_http_server_callbacks
            user = (<StaticFiles>handler)._server
        elif callable(handler):
            listener.handler_factory = handler
            listener._state.shared = &self._shared
            listener._state.listener = <PyObject *>listener
            listener._state.recv_size = self.config.recv_buffer_size
            callbacks = &python_callbacks
            user = &listener._state
        else:
            raise TypeError("handler must be a Handler factory (such as a Handler "
                            f"subclass) or a native handler, not {handler!r}")
        rc = piocp_listen(self._c, <sockaddr *>&addr, length, backlog, callbacks, user,
                          &listener._listener)
        if rc < 0:
            raise OSError(-rc, f"cannot listen on {address!r}: {os.strerror(-rc)}")
        self._listeners.append(listener)
        return listener

    def start(self):
        """Starts the worker threads (background serving)."""
        cdef int rc
        if self._stopped:
            raise RuntimeError("the engine is stopped; make a new one")
        if self.started:
            return
        rc = piocp_engine_start(self._c)
        if rc < 0:
            _raise_errno(rc, "start")
        self.started = True

    def post(self, callback):
        """Runs callback() once on a worker thread (with the GIL)."""
        cdef call_request *cr
        cdef int rc
        if not callable(callback):
            raise TypeError("callback must be callable")
        if self._c == NULL:
            raise RuntimeError("the engine is stopped")
        cr = <call_request *>calloc(1, sizeof(call_request))
        if cr == NULL:
            raise MemoryError()
        cr.req.complete = on_call_done
        cr.shared = &self._shared
        cr.callback = <PyObject *>callback
        Py_INCREF(callback)
        rc = piocp_post(self._c, &cr.req, 0)
        if rc < 0:
            Py_DECREF(callback)
            free(cr)
            _raise_errno(rc, "post")

    def request_stop(self):
        """Asks run() to stop; safe from any thread and from handlers."""
        self._stop_requested = True
        if self._wake_write < 0:
            return   # already stopped and freed: nothing waits any more
        try:
            os.write(self._wake_write, b"s")
        except BlockingIOError:
            pass     # the pipe is full, so run() is awake anyway

    def stop(self, drain_timeout=5.0):
        """Stops accepting, lets running transfers finish for up to
        drain_timeout seconds, closes everything and joins the workers.
        From inside a handler this only requests the stop."""
        cdef int drain_ms = _milliseconds(drain_timeout, "drain_timeout")
        if piocp_worker_index() >= 0:
            self.request_stop()
            return
        if self._stopped:
            return
        self._stopped = True
        with nogil:
            piocp_engine_stop(self._c, drain_ms)
        self._drain(True)
        self._free()

    cdef _drain(self, bint run_handlers):
        """Dispatches what the workers left in the queue (GIL held)."""
        cdef dispatch_item *items
        cdef size_t n
        while True:
            n = dispatch_queue_claim(&self._shared.queue, &items)
            if n == 0:
                return
            dispatch_batch(items, n, run_handlers)
            dispatch_queue_release(&self._shared.queue)

    def run(self, drain_timeout=5.0):
        """Serves in the foreground until Ctrl-C, SIGTERM (unless the program
        handles it itself) or request_stop(), then stops gracefully."""
        cdef pollfd pfd
        cdef int rc
        previous = previous_term = None
        in_main = threading.current_thread() is threading.main_thread()
        try:
            if in_main:
                # a signal handled by any thread still wakes the poll below
                previous = signal.set_wakeup_fd(self._wake_write, warn_on_full_buffer=False)
                # SIGTERM, like Ctrl-C, stops gracefully, unless the program
                # has a handler of its own
                if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                    previous_term = signal.signal(signal.SIGTERM,
                                                  lambda signum, frame: self.request_stop())
            # after the handlers: once connections are served, signals stop it
            self.start()
            pfd.fd = self._wake_read
            pfd.events = POLLIN
            while True:
                # compiled code never passes through the eval loop's signal
                # check: run handlers of signals that came before the wake-up
                # fd was set, or they would be seen only after the next one
                PyErr_CheckSignals()
                if self._stop_requested:
                    break
                with nogil:
                    rc = poll(&pfd, 1, -1)
                try:
                    while os.read(self._wake_read, 64):
                        pass
                except BlockingIOError:
                    pass
        except KeyboardInterrupt:
            pass
        finally:
            if in_main and previous is not None:
                signal.set_wakeup_fd(previous)
            self.stop(drain_timeout)
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()


cdef piocp_listener_callbacks python_callbacks
python_callbacks.on_connection = on_connection
