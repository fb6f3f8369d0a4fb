# Native protocol handlers: served in C, no Python per request.
# Included by _core.pyx (one extension module, several files).

cdef class NativeHandler:
    """Base of the handlers served in C (RawFileServer, StaticFiles): what
    Engine.listen needs is the C listener callbacks and their user pointer,
    which a subclass sets once its C server exists."""
    cdef const piocp_listener_callbacks *_callbacks
    cdef void *_user


def raw_defaults():
    """RawFileServer's defaults, as piocp_raw_options_init (pyiocp.h) sets
    them: the one place they are written down."""
    cdef piocp_raw_options options
    piocp_raw_options_init(&options)
    return {"access_log": _log_target(options.access_log_fd), "max_name": options.max_name}


def http_defaults():
    """StaticFiles' defaults, as piocp_http_options_init (pyiocp.h) sets
    them, in seconds where C counts milliseconds."""
    cdef piocp_http_options options
    piocp_http_options_init(&options)
    return {"listing": options.listing != 0,
            "access_log": _log_target(options.access_log_fd),
            "header_timeout": options.header_timeout_ms / 1000,
            "keepalive_timeout": options.keepalive_timeout_ms / 1000,
            "max_head": options.max_head,
            "max_discard": options.max_discard,
            "cache_valid": options.cache_valid_ms / 1000,
            "log_format": _LOG_FORMAT_NAMES[options.log_format]}


# The access-log formats of StaticFiles (pyiocp.h's piocp_log_format).
_LOG_FORMATS = {"common": PIOCP_LOG_COMMON, "combined": PIOCP_LOG_COMBINED,
                "json": PIOCP_LOG_JSON}
_LOG_FORMAT_NAMES = {value: name for name, value in _LOG_FORMATS.items()}
LOG_FORMATS = tuple(_LOG_FORMATS)


cdef object _log_target(piocp_file fd):
    return None if fd == PIOCP_INVALID_FILE else <intptr_t>fd


_RAW = raw_defaults()
_HTTP = http_defaults()


@cython.final
cdef class RawFileServer(NativeHandler):
    """The raw file protocol ("name\\n" in, the file's bytes out) served by
    a native handler in C: no Python runs per request.  Defaults are the
    engine's (raw_defaults())."""
    cdef piocp_raw_server *_server
    cdef piocp_raw_options _options
    cdef readonly object root

    def __cinit__(self, root, *, access_log=None, int max_name=_RAW["max_name"]):
        cdef int rc
        self._server = NULL
        if max_name < 1 or max_name > PIOCP_RAW_MAX_NAME:
            raise ValueError(f"max_name must be in 1..{PIOCP_RAW_MAX_NAME}")
        self.root = os.fspath(root)
        piocp_raw_options_init(&self._options)
        self._options.max_name = max_name
        if access_log is not None:
            self._options.access_log_fd = _access_log_file(access_log)
        path = os.fsencode(self.root)
        rc = piocp_raw_server_new(&self._server, path, &self._options)
        if rc < 0:
            raise os_error(rc, None, self.root)
        self._callbacks = &piocp_raw_server_callbacks
        self._user = self._server

    def __dealloc__(self):
        if self._server != NULL:
            piocp_raw_server_free(self._server)

    def swap_access_log(self, access_log):
        """As StaticFiles.swap_access_log."""
        cdef piocp_file fd = _access_log_file(access_log)
        if self._options.access_log_fd == PIOCP_INVALID_FILE:
            raise ValueError("this server has no access log")
        with nogil:
            piocp_raw_server_swap_access_log(self._server, fd)

    @property
    def max_name(self):
        """Longest name accepted, in bytes."""
        return self._options.max_name

    @property
    def requests(self):
        """Names answered so far (files sent and error lines)."""
        return piocp_raw_server_requests(self._server)


@cython.final
cdef class StaticFiles(NativeHandler):
    """Static files over HTTP/1.1, served by a native handler in C (no
    Python per request): GET/HEAD, keep-alive and pipelining, ETag and
    Last-Modified, conditional requests, byte ranges, index.html or a
    directory listing.  Pass it to Engine.listen next to Python handlers.
    Defaults are the engine's (http_defaults())."""
    cdef piocp_http_server *_server
    cdef piocp_http_options _options
    cdef readonly object root

    def __cinit__(self, root, *, listing=_HTTP["listing"], access_log=None,
                  log_format=_HTTP["log_format"],
                  header_timeout=_HTTP["header_timeout"],
                  keepalive_timeout=_HTTP["keepalive_timeout"],
                  int max_head=_HTTP["max_head"], int max_discard=_HTTP["max_discard"],
                  cache_valid=_HTTP["cache_valid"]):
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
        piocp_http_options_init(&self._options)
        self._options.listing = 1 if listing else 0
        self._options.max_head = max_head
        self._options.header_timeout_ms = _milliseconds(header_timeout, "header_timeout")
        self._options.keepalive_timeout_ms = _milliseconds(keepalive_timeout, "keepalive_timeout")
        self._options.max_discard = max_discard
        # 0 is allowed: every request then checks the file with fstat
        self._options.cache_valid_ms = _milliseconds(cache_valid, "cache_valid")
        if log_format not in _LOG_FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}, "
                             f"not {log_format!r}")
        self._options.log_format = _LOG_FORMATS[log_format]
        if access_log is not None:
            self._options.access_log_fd = _access_log_file(access_log)
        path = os.fsencode(self.root)
        rc = piocp_http_server_new(&self._server, path, &self._options)
        if rc < 0:
            raise os_error(rc, None, self.root)
        self._callbacks = &piocp_http_server_callbacks
        self._user = self._server

    def __dealloc__(self):
        if self._server != NULL:
            piocp_http_server_free(self._server)

    def swap_access_log(self, access_log):
        """Writes the access log to `access_log` (a descriptor, or an object
        with fileno()) from now on: the log file opened again after
        logrotate moved it away, say.  Lines logged before the call go to
        the previous file, later ones to the new; none is lost or split.
        Returns once the previous file is no longer used (its earlier lines
        written): the caller may close it then.  The new one, like the first,
        stays the caller's to keep open while serving.  ValueError if this
        server was made without an access log."""
        cdef piocp_file fd = _access_log_file(access_log)
        if self._options.access_log_fd == PIOCP_INVALID_FILE:
            raise ValueError("this server has no access log")
        with nogil:
            piocp_http_server_swap_access_log(self._server, fd)

    @property
    def log_format(self):
        """How access lines are written: "common" (the Common Log Format),
        "combined" (nginx's: common + "referer" "user-agent") or "json" (one
        object per line)."""
        return _LOG_FORMAT_NAMES[self._options.log_format]

    @property
    def listing(self):
        """Whether a directory without index.html is listed (else 403)."""
        return self._options.listing != 0

    @property
    def header_timeout(self):
        """Seconds a request head may take from its first byte."""
        return self._options.header_timeout_ms / 1000

    @property
    def keepalive_timeout(self):
        """Seconds an idle connection is kept between requests."""
        return self._options.keepalive_timeout_ms / 1000

    @property
    def max_head(self):
        """Longest request line + headers, in bytes (longer: 431)."""
        return self._options.max_head

    @property
    def max_discard(self):
        """Request body bytes read and dropped on GET/HEAD (more: 413)."""
        return self._options.max_discard

    @property
    def cache_valid(self):
        """Seconds an open file is served from the cache without a system
        call: inotify drops it sooner when the file changes, and after this
        long its name is opened again and compared.  0: every request checks
        the file with fstat."""
        return self._options.cache_valid_ms / 1000

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


cdef piocp_file _access_log_file(object target) except *:
    """The file an access log writes to: a descriptor, or an object with
    fileno() (flushed first).  The caller keeps it open while serving."""
    if not isinstance(target, int):
        target.flush()
        target = target.fileno()
    return binding_file_from_os_handle(_os_handle(target))
