# Native protocol handlers: served in C, no Python per request.
# Included by _core.pyx (one extension module, several files).

cdef class NativeHandler:
    """Base of the handlers served in C (RawFileServer, StaticFiles): what
    Engine.listen needs is the C listener callbacks and their user pointer,
    which a subclass sets once its C server exists."""
    cdef const piocp_listener_callbacks *_callbacks
    cdef void *_user


@cython.final
cdef class RawFileServer(NativeHandler):
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
            raise os_error(rc, None, self.root)
        self._callbacks = &piocp_raw_server_callbacks
        self._user = self._server

    def __dealloc__(self):
        if self._server != NULL:
            piocp_raw_server_free(self._server)

    @property
    def requests(self):
        """Names answered so far (files sent and error lines)."""
        return piocp_raw_server_requests(self._server)


@cython.final
cdef class StaticFiles(NativeHandler):
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
            raise os_error(rc, None, self.root)
        self._callbacks = &piocp_http_server_callbacks
        self._user = self._server

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
