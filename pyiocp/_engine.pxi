# The Engine: lifecycle, listeners, run/stop, signals.
# Included by _core.pyx (one extension module, several files).

_backend_choice_logged = False

# PIOCP_METRICS, as the compile-time constant an array's size must be
cdef extern from "pyiocp.h":
    enum: METRICS_SIZE "PIOCP_METRICS"


def _log_backend_choice_once(chosen, note):
    global _backend_choice_logged
    if not _backend_choice_logged:
        _backend_choice_logged = True
        log.warning("pyiocp: using the %s backend (%s)", chosen, note)


def engine_defaults():
    """The engine's defaults, as piocp_config_init (pyiocp.h) sets them, in
    the Python API's terms: threads None (the engine picks default_threads()),
    idle_timeout None (never) or seconds."""
    cdef piocp_config config
    piocp_config_init(&config)
    return {"threads": config.threads or None,
            "backend": config.backend.decode(),
            "max_connections": config.max_connections,
            "idle_timeout": config.idle_timeout_ms / 1000 if config.idle_timeout_ms else None}


MAX_THREADS = PIOCP_MAX_THREADS


def default_threads():
    """The worker count an engine gets by default (piocp_default_threads):
    twice the CPUs this process may use (cpu_info()["usable"]), as the
    classic IOCP server sized its pool."""
    return piocp_default_threads()


cdef bytes _c_path(object path, str name):
    encoded = os.fsencode(path)
    if b"\0" in encoded:
        raise ValueError(f"{name}: embedded null byte")
    return encoded


def cpu_info(cgroup_root=None, proc_self_cgroup=None):
    """The CPUs this process may use (piocp_cpu_info_read): a dict with
    online (the machine's), affinity (its affinity mask: taskset, a
    cpuset), quota_cpus (the tightest cgroup CPU quota, e.g. 1.5, or None
    for no limit) and usable (min(affinity, quota rounded up), at least 1).
    cgroup_root and proc_self_cgroup default to the real /sys/fs/cgroup
    and /proc/self/cgroup; tests point them at a fake tree."""
    cdef piocp_cpu_info info
    cdef bytes root = None if cgroup_root is None else _c_path(cgroup_root, "cgroup_root")
    cdef bytes listing = (None if proc_self_cgroup is None
                          else _c_path(proc_self_cgroup, "proc_self_cgroup"))
    cdef const char *c_root = NULL
    cdef const char *c_listing = NULL
    if root is not None:
        c_root = root
    if listing is not None:
        c_listing = listing
    with nogil:   # reads files
        piocp_cpu_info_read(&info, c_root, c_listing)
    return {"online": info.online,
            "affinity": info.affinity,
            "quota_cpus": info.quota_cpus if info.quota_cpus > 0 else None,
            "usable": info.usable}


def backend_names():
    """Every backend compiled into this build, best first, whether or not
    this kernel allows it: the names Engine(backend=...) accepts besides
    "auto"."""
    cdef const char *names[16]
    cdef int n = piocp_backend_names(names, 16)
    return [names[i].decode() for i in range(n)]


def available_backends():
    """The backends this build and kernel support, best first."""
    cdef const char *names[16]
    cdef int n = piocp_backends_available(names, 16)
    return [names[i].decode() for i in range(n)]


def describe_backend(name):
    """One line on what this kernel offers the backend `name`."""
    cdef char buf[512]
    encoded = name.encode()
    return piocp_backend_describe(encoded, buf, sizeof(buf)).decode()


def _check_listening_socket(sock, address, backlog, reuse_port):
    """The checks on listen(sock=...) that Python can make with a clear
    message (the engine checks again: SO_ACCEPTCONN, SOCK_STREAM)."""
    if not isinstance(sock, socket.socket):
        raise TypeError("sock must be a socket.socket (for a bare descriptor: "
                        f"socket.socket(fileno=fd)), not {type(sock).__name__}")
    if address is not None:
        raise ValueError("listen() takes an address or sock, not both")
    if backlog >= 0:
        raise ValueError("backlog applies to a socket listen() binds; sock already listens")
    if reuse_port:
        raise ValueError("reuse_port applies to a socket listen() binds; "
                         "set SO_REUSEPORT on sock before binding it")
    if sock.fileno() < 0:
        raise ValueError("sock is closed")
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError(f"sock must be an IPv4 or IPv6 socket, not {sock.family!r}")
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"sock must be a stream (TCP) socket, not {sock.type!r}")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise ValueError("sock is not listening: call sock.listen() first")


# Engines started and not yet stopped: stopped at interpreter exit, before
# finalisation, when no worker may touch Python any more.
_running_engines = weakref.WeakSet()


def _wake_pair():
    """run()'s wake-up: readable once request_stop() or a signal wrote to
    the other end.  Both ends non-blocking and not inherited."""
    read, write = socket.socketpair()
    read.setblocking(False)
    write.setblocking(False)
    return read, write


def _stop_engines_at_exit():
    cdef Engine engine
    for engine in list(_running_engines):
        if engine.creator_pid != os.getpid():
            continue   # a forked child's copy of its parent's engine
        try:
            if engine._in_run:
                engine.request_stop()   # a run() in a daemon thread returns
            # One started with start() is stopped here: request_stop() would
            # start a thread for it, which Python 3.12+ refuses at exit.
            engine.stop()
        except BaseException:
            log.exception("pyiocp: stopping an engine at exit failed")


atexit.register(_stop_engines_at_exit)


cdef uint64_t _file_offset(object offset) except? 0:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative integer, not {offset!r}")
    return offset


cdef uint64_t _file_count(object count) except? 0:
    """A byte count, or PIOCP_TRANSMIT_TO_EOF for None."""
    if count is None:
        return PIOCP_TRANSMIT_TO_EOF
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative integer or None, not {count!r}")
    return count


@cython.no_gc_clear   # its listeners must stay valid while it frees itself
cdef class Engine:
    """The completion engine: a pool of worker threads around one completion
    queue.  Use pyiocp.Engine (which validates its configuration)."""
    cdef object __weakref__
    cdef piocp_engine *_c
    cdef engine_shared _shared
    cdef bint _queue_ready
    cdef list _listeners
    cdef object _natives
    # run()'s wake-up: a socket pair, not a pipe, because Windows'
    # signal.set_wakeup_fd and WSAPoll take sockets only (asyncio's own
    # loops use one for the same reason); None once closed
    cdef object _wake_read, _wake_write
    cdef readonly bint started
    cdef bint _stopped
    cdef bint _stop_requested
    # Set once stop() has finished; the thread running it.  A second stop()
    # from another thread waits for the first: the atexit hook must not
    # return (and let the interpreter finalise) while a run() in a daemon
    # thread is still stopping the engine.
    cdef object _stop_done
    cdef object _stopping_thread
    cdef readonly object config
    # The process that made it: its threads, inotify watches and log
    # writer do not survive fork(); a child must make its own engine.
    cdef readonly int creator_pid
    cdef object _backend_name
    cdef int _threads
    # Connections whose connection_lost has not run yet: for the stopping
    # hooks.  Touched with the GIL held (dispatch).
    cdef set _open_connections
    cdef double _drain_timeout
    # A run() is polling the wake pair: stop() from another thread must
    # leave the pair to it (run() closes it on its way out).
    cdef bint _in_run
    # The listener state of connections no listener made (connect, adopt).
    cdef listener_state _outbound
    cdef bint _stop_thread_started
    cdef dict _final_stats
    cdef object _metrics_area    # counted into (serve_workers): kept while the engine is
    # send_in_place's counters (changed with the GIL held)
    cdef uint64_t _in_place_sends, _in_place_bytes
    # Requests the engine posts to itself where a failed allocation could
    # not be reported (_post_own): the wake-up of _wake_dispatch, which
    # runs after the caller's send or adopt has succeeded, and the stopping
    # hooks' call.  Posted (flag set) from post until dispatched.
    cdef call_request _wake_call, _stopping_call
    cdef bint _wake_posted, _stopping_posted

    def __cinit__(self, *args, **kwargs):
        self._c = NULL
        self._queue_ready = 0
        self._wake_read = self._wake_write = None
        self._stop_done = threading.Event()
        self._open_connections = set()

    def __init__(self, config):
        cdef piocp_config c
        cdef int rc
        if self._queue_ready:
            # a second __init__ would leak (and orphan the workers of) the first engine
            raise RuntimeError("the engine is already initialised")
        self.config = config
        self.creator_pid = os.getpid()
        rc = dispatch_queue_init(&self._shared.queue)
        if rc < 0:
            raise os_error(rc, "dispatch queue")
        self._queue_ready = 1
        self._shared.engine = <PyObject *>self
        write_budget_init(&self._shared.budget, config.max_write_buffer)
        self._outbound.shared = &self._shared
        self._outbound.listener = NULL
        self._outbound.recv_size = config.recv_buffer_size
        backend = config.backend.encode()
        piocp_config_init(&c)
        c.threads = config.threads or 0
        c.backend = backend
        c.max_connections = config.max_connections
        # rounded up: a timeout under 1 ms must not become 0, "never"
        c.idle_timeout_ms = _milliseconds(config.idle_timeout) if config.idle_timeout else 0
        c.linger_ms = max(1, _milliseconds(config.linger_timeout, "linger_timeout"))
        c.batch_end = batch_end
        c.worker_start = worker_start
        c.worker_stop = worker_stop
        c.stopping = engine_stopping
        c.user = &self._shared
        rc = piocp_engine_new(&self._c, &c)
        if rc < 0:
            self._c = NULL
            if config.backend != "auto":
                raise os_error(rc, f"backend {config.backend!r} is not available")
            raise os_error(rc, "engine")
        self._shared.c_engine = self._c
        self._listeners = []
        self._backend_name = piocp_engine_backend(self._c).decode()
        note = piocp_engine_backend_note(self._c).decode()
        if note:
            # said once per process: the reason matters, the repetition not
            _log_backend_choice_once(self._backend_name, note)
        self._threads = piocp_engine_threads(self._c)
        self._wake_read, self._wake_write = _wake_pair()

    cdef _check_process(self):
        if self.creator_pid != os.getpid():
            raise RuntimeError(f"this Engine was created in process {self.creator_pid} before "
                               "a fork; create engines in the worker (after the fork)")

    cdef bint _inherited(self):
        """True in a child forked after the engine was made: its worker
        threads are not here to join, so the child must not stop or free
        it (the memory is the child's to lose; the parent still serves)."""
        return self.creator_pid != 0 and self.creator_pid != os.getpid()

    def __dealloc__(self):
        if self._inherited():
            return
        if self._c != NULL:
            with nogil:
                piocp_engine_stop(self._c, 0)
            dispatch_pending(&self._shared, False)   # only releases what was queued
        self._free(False)

    cdef _free(self, bint run_handlers=True):
        """Gives back every descriptor and byte: called once stopped and
        drained, when every Connection has been told it closed but those
        no worker ever served (an engine never started, or one whose stop
        gave up on a connection): piocp_engine_free closes these, and they
        are told here, once the engine is gone (shared.c_engine NULL: their
        dispatch touches nothing of it)."""
        cdef Listener listener
        if self._c != NULL:
            for listener in self._listeners or ():
                listener._refused_at_stop = piocp_listener_refused(listener._listener)
            self._shared.c_engine = NULL
            piocp_engine_free(self._c)
            self._c = NULL
            dispatch_pending(&self._shared, run_handlers)
        if self._queue_ready:
            dispatch_queue_destroy(&self._shared.queue)
            self._queue_ready = 0
        if self._wake_read is not None and not self._in_run:
            self._close_wake_pair()

    cdef _close_wake_pair(self):
        self._wake_read.close()
        self._wake_write.close()
        self._wake_read = self._wake_write = None

    @property
    def backend(self):
        """The backend in use: one of backend_names()."""
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

    def stats(self):
        """The engine's counters, read from C without stopping it, as a
        dict (after stop(): the final values):

        - accepted, refused (refused_max_connections + refused_stopping),
          accept_errors, accept_pauses, connections (open now),
          connections_opened and connections_closed;
        - requests: completed requests by operation (recv, send, transmit,
          shutdown, user, timer, connect); errors: by operation, then by
          errno name, those seen ({"recv": {"ECONNRESET": 2}}; ECANCELED
          counts requests ended by a close);
        - received_bytes; sent_bytes: {"memory": ..., "file": ...} (file:
          by transmits); transmit_file_bytes (the same file bytes) and
          transmit_copied_bytes (of those, read and sent as a copy:
          Windows' read + WSASend path; 0 on Linux);
        - python_completions and python_batches: completions handed to
          Python and the batches they came in (one GIL acquisition each);
        - http_responses: the native HTTP server's answers by status class;
        - borrowed and borrowed_bytes (sockets lent by pyiocp.aio and the
          bytes sent on them), sent_in_place and sent_in_place_bytes (its
          sends finished by send_in_place, and the file bytes it sent);
        - completed_inline (IOCP: operations handled as posted, without a
          completion packet; 0 on Linux);
        - backend, and backend_note (why "auto" passed over a preferred
          backend, or "")."""
        cdef piocp_engine_stats s
        # on the stack (about 1 KiB): stop() reads the final stats before it
        # frees the engine, so this must not fail for want of memory
        cdef uint64_t values[METRICS_SIZE]
        if self._c == NULL:
            return dict(self._final_stats) if self._final_stats else {}
        piocp_engine_get_stats(self._c, &s)
        piocp_engine_read_metrics(self._c, values)
        counted = _metrics_dict(values)
        stats = {"accepted": s.accepted, "refused": s.refused,
                 "accept_errors": s.accept_errors, "accept_pauses": s.accept_pauses,
                 "connections": s.connections, "transmit_file_bytes": s.transmit_file_bytes,
                 "borrowed": s.borrowed, "borrowed_bytes": s.borrowed_bytes,
                 "sent_in_place": self._in_place_sends,
                 "sent_in_place_bytes": self._in_place_bytes,
                 "transmit_copied_bytes": s.transmit_copied_bytes,
                 "completed_inline": s.completed_inline,
                 "backend": self._backend_name,
                 "backend_note": piocp_engine_backend_note(self._c).decode()}
        stats.update(counted)
        return stats

    def metrics_text(self):
        """The counters in the Prometheus text exposition format, as
        listen_metrics serves them."""
        if self._c == NULL:
            raise RuntimeError("the engine is stopped")
        return _render_metrics(self._c, NULL)

    def listen_metrics(self, address=None, *, sock=None, MetricsArea area=None,
                       int backlog=-1):
        """Serves the counters in Prometheus' text format at GET /metrics
        on (host, port) or `sock`, rendered in C on a worker (no Python per
        scrape).  With `area`, the area's: every worker's series (a
        `worker` label) and their sum (pyiocp.serve_workers passes it).
        Returns the Listener.  Keep it on a private address: counters tell
        an outsider about traffic."""
        cdef _MetricsHandler handler
        self._check_process()
        if self._c == NULL or self._stopped:
            raise RuntimeError("the engine is stopped")
        handler = _MetricsHandler.__new__(_MetricsHandler)
        handler._attach(self, self._c, area)
        return self.listen(address, handler, sock=sock, backlog=backlog)

    def _use_metrics_cell(self, MetricsArea area not None, int cell):
        """Counts into cell `cell` of `area` from now on (before start()):
        how serve_workers' workers share their counters."""
        cdef void *memory
        cdef size_t size
        cdef int rc
        self._check_process()
        if self._c == NULL or self._stopped:
            raise RuntimeError("the engine is stopped")
        rc = piocp_metrics_area_cell(area._area, cell, &memory, &size)
        if rc == 0:
            rc = piocp_engine_use_metrics_cell(self._c, memory, size)
        if rc == -PIOCP_EBUSY:
            raise RuntimeError("the engine has started: choose its metrics cell before start()")
        if rc < 0:
            raise ValueError(f"cell {cell} does not fit this engine "
                             f"({self._threads} threads; the area has {area.threads})")
        self._metrics_area = area

    @property
    def write_buffer_used(self):
        """Bytes held in memory for sends across all connections (counted
        against max_write_buffer)."""
        return write_budget_used(&self._shared.budget)

    cdef _wake_dispatch(self):
        """Makes a worker end a batch soon, so that what was queued for
        Python without a completion behind it (a resume) is dispatched.
        Allocates nothing, so it cannot fail after its caller's work is
        done; one wake-up on its way is enough (the batch it ends
        dispatches everything queued before it)."""
        self._post_own(&self._wake_call, &self._wake_posted, _nothing)

    cdef int _post_own(self, call_request *cr, bint *posted, object callback) except? -1:
        """Posts one of the engine's own call requests (see _wake_call),
        unless it is posted already; returns 0 or the post's -errno."""
        cdef int rc
        if self._c == NULL:
            return -PIOCP_ENOTCONN
        if posted[0]:
            return 0
        memset(cr, 0, sizeof(call_request))
        cr.req.complete = on_call_done
        dispatch_node_init(&cr.node, ITEM_CALL, cr)
        cr.shared = &self._shared
        cr.callback = <PyObject *>callback
        cr.posted = posted
        Py_INCREF(callback)
        rc = piocp_post(self._c, &cr.req, 0)
        if rc < 0:
            Py_DECREF(callback)
            return rc
        posted[0] = 1
        return 0

    # -- connections the engine did not accept --

    def connect(self, address, factory, *, timeout=None):
        """Connects to (host, port) without blocking and returns the handler
        `factory()` made for it: its connection_made(conn) follows once
        connected, or connection_failed(exc) with the OSError
        (ConnectionRefusedError, TimeoutError after `timeout` seconds...).
        A numeric address is posted at once; a name is resolved in a helper
        thread (never on a worker), and `timeout` covers the lookup too."""
        self._check_process()
        if self._c == NULL or self._stopped:
            raise RuntimeError("the engine is stopped")
        if not isinstance(address, tuple) or len(address) < 2:
            raise TypeError(f"address must be a (host, port) tuple, not {address!r}")
        host, port = address[0], address[1]
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
            raise ValueError(f"port must be an integer in 1..65535, not {port!r}")
        if not isinstance(host, str):
            raise TypeError(f"host must be a str, not {host!r}")
        timeout_ms = 0 if timeout is None else max(1, _milliseconds(timeout, "timeout"))
        handler = factory()
        try:
            numeric = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                         flags=socket.AI_NUMERICHOST)
        except socket.gaierror:
            numeric = None
        if numeric is not None:
            self._connect_resolved(numeric[0], timeout_ms, handler)
            return handler
        deadline = None if timeout is None else time.monotonic() + timeout
        threading.Thread(target=self._resolve_and_connect, name="pyiocp-resolve",
                         args=(host, port, deadline, handler), daemon=True).start()
        return handler

    def _resolve_and_connect(self, host, port, deadline, handler):
        """In a helper thread: getaddrinfo may block for seconds."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            if not infos:
                raise OSError(PIOCP_EINVAL, f"no address for {host!r}")
            timeout_ms = 0
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(PIOCP_ETIMEDOUT, f"connect: resolving {host!r} timed out")
                timeout_ms = max(1, _milliseconds(left))
            self._connect_resolved(infos[0], timeout_ms, handler)
        except BaseException as exc:
            self._tell_failed(handler, exc)

    def _tell_failed(self, handler, exc):
        """connection_failed on a worker, in order with the other callbacks
        (here, if the workers are gone)."""
        try:
            self.post(lambda: connection_failed(handler, exc))
        except (OSError, RuntimeError, MemoryError):
            connection_failed(handler, exc)

    def _connect_resolved(self, info, int timeout_ms, handler):
        cdef sockaddr_storage addr
        cdef socklen_t length
        cdef connect_request *cr
        cdef int rc
        family, _, _, _, ip_port = info
        length = ip_to_sockaddr(family, ip_port[0], ip_port[1], &addr)
        if self._c == NULL:
            raise RuntimeError("the engine is stopped")
        cr = <connect_request *>binding_calloc(b"py_connect", 1, sizeof(connect_request))
        if cr == NULL:
            raise MemoryError()
        dispatch_node_init(&cr.node, ITEM_CONNECT_FAILED, cr)
        cr.ls = &self._outbound
        cr.handler = <PyObject *>handler
        Py_INCREF(handler)
        rc = piocp_connect(self._c, <sockaddr *>&addr, length, timeout_ms, on_connect_done, cr)
        if rc < 0:
            Py_DECREF(handler)
            binding_free(cr)
            raise os_error(rc, f"connect to {ip_port[0]!r} port {ip_port[1]}")

    def adopt(self, sock, factory):
        """Serves a connected stream socket made elsewhere (a socketpair, a
        connection handed over by another process): the engine takes it
        over (sock is detached, as asyncio's transports own theirs) and
        returns the handler factory() made, whose connection_made follows
        on a worker."""
        cdef piocp_conn *conn
        cdef conn_state *cs
        cdef int rc
        cdef piocp_socket fd
        self._check_process()
        if self._c == NULL or self._stopped:
            raise RuntimeError("the engine is stopped")
        if not isinstance(sock, socket.socket):
            raise TypeError(f"sock must be a socket.socket, not {sock!r}")
        if sock.fileno() < 0:
            raise ValueError("sock is closed")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"sock must be a stream socket, not {sock.type!r}")
        try:
            sock.getpeername()
        except OSError:
            raise ValueError("sock is not connected") from None
        handler = factory()
        fd = sock.detach()
        rc = piocp_adopt(self._c, fd, &conn)
        if rc < 0:
            socket.socket(fileno=fd).close()
            raise os_error(rc, "adopt")
        cs = new_conn_state(&self._outbound, conn)
        if cs == NULL:
            piocp_conn_set_callbacks(conn, NULL, NULL)
            piocp_abort(conn)
            raise MemoryError()
        piocp_conn_retain(conn)
        piocp_conn_set_callbacks(conn, on_closed, cs)   # ends the claim: it may run now
        cs.handler = <PyObject *>handler
        Py_INCREF(handler)
        dispatch_queue_push(&self._shared.queue, &cs.accept_node, 0)
        self._wake_dispatch()
        return handler

    def lend_transmit(self, piocp_socket sock_fd, int file_fd, offset=0, count=None, head=b"", *,
                      done):
        """Transmits `head`, then `count` bytes (None: to the end) of the
        file `file_fd` from `offset`, zero-copy, on a connected non-blocking
        stream socket that something else owns (an asyncio transport's),
        and hands the socket back unchanged: the engine changes no option or
        flag on it, and never closes, shuts down or resets it.  Returns a
        Lending (cancel()); done(sent, error, returned_error) follows once,
        on a worker thread, when the socket is its owner's again.  The file
        descriptor is duplicated: the caller may close its own at once.
        pyiocp.aio.sendfile is built on this."""
        self._check_process()
        if self._c == NULL or self._stopped:
            raise RuntimeError("the engine is stopped")
        if not callable(done):
            raise TypeError("done must be callable")
        return lend_transmit(self, sock_fd, file_fd, _file_offset(offset), _file_count(count),
                             head, done)

    def send_in_place(self, piocp_socket sock_fd, int file_fd, offset=0, count=None, head=b"", *,
                      limit=262144):
        """What lend_transmit would send, but only what the non-blocking
        socket takes at once, at most `limit` file bytes, on this thread
        (with the GIL released; it never waits).  Returns (head bytes sent,
        file bytes sent, finished, errno): finished when the whole head and
        `count` bytes (or the file up to its end) went out; errno is 0, or
        the connection's failure.  pyiocp.aio sends a small file this way,
        and lends the socket only for the rest."""
        self._check_process()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a non-negative integer, not {limit!r}")
        rc = binding_socket_is_nonblocking(sock_fd)   # refused on Windows: nothing to ask
        if rc < 0:
            raise os_error(rc, "sendfile")
        if rc == 0:
            raise ValueError("the socket must be non-blocking")
        return send_in_place(self, sock_fd, file_fd, _file_offset(offset), _file_count(count),
                             head, limit)

    # -- timers --

    def time(self):
        """The clock of call_at: time.monotonic(), as asyncio's loop.time()."""
        return time.monotonic()

    def call_later(self, delay, callback, *args):
        """Runs callback(*args) once on a worker, at least `delay` seconds
        from now; returns a TimerHandle (cancel()).  Timers due together run
        in the order they were made.  Pending ones are dropped when the
        engine stops."""
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay != delay:
            raise TypeError(f"delay must be a number of seconds, not {delay!r}")
        self._check_process()
        return schedule_timer(self, time.monotonic() + delay, callback, args)

    def call_at(self, when, callback, *args):
        """call_later, at `when` on the time() clock."""
        if isinstance(when, bool) or not isinstance(when, (int, float)) or when != when:
            raise TypeError(f"when must be a time.monotonic() value, not {when!r}")
        self._check_process()
        return schedule_timer(self, when, callback, args)

    def _run_stopping_hooks(self):
        """From the engine's stopping hook, on the stopping thread: runs
        every open connection's Handler.stopping on a worker, in the order
        of its other callbacks, and waits (at most the drain timeout) for
        them to have run."""
        if not self._open_connections:
            return
        done = threading.Event()
        def run_hooks():
            cdef Connection conn
            try:
                for conn in list(self._open_connections):
                    conn._stopping()
            finally:
                done.set()
        # the engine's own request: a stop must not fail for want of memory
        if self._post_own(&self._stopping_call, &self._stopping_posted, run_hooks) < 0:
            return   # the workers are already gone
        done.wait(self._drain_timeout)

    def listen(self, address=None, handler=None, *, int backlog=-1, sock=None,
               bint reuse_port=False):
        """Listens on (host, port), or on `sock`, a listening socket.socket
        made elsewhere (a pre-fork supervisor's, systemd's): exactly one of
        the two.  The engine serves a dup() of sock's descriptor, so sock
        stays valid and closing it is the caller's business (as with
        asyncio's create_server(sock=...)).  reuse_port: SO_REUSEPORT on the
        socket bound here, so that several processes bind one port and the
        kernel spreads connections over them.  `handler` is a factory
        called once per connection to make a pyiocp.Handler, or a native
        protocol handler (a pyiocp.NativeHandler: RawFileServer,
        StaticFiles).  Returns the Listener."""
        cdef sockaddr_storage addr
        cdef piocp_listen_options options
        cdef Listener listener = Listener.__new__(Listener)
        cdef const piocp_listener_callbacks *callbacks
        cdef NativeHandler native
        cdef void *user
        cdef int rc
        self._check_process()
        if self._stopped:
            raise RuntimeError("the engine is stopped")
        if handler is None:
            raise TypeError("listen() needs a handler: a Handler factory or a native handler")
        piocp_listen_options_init(&options)
        if sock is None:
            if address is None:
                raise ValueError("listen() needs an address (host, port) or sock")
            options.addrlen = tuple_to_sockaddr(address, &addr)
            options.addr = <sockaddr *>&addr
            options.backlog = self.config.backlog if backlog < 0 else backlog
            options.reuse_port = reuse_port
        else:
            _check_listening_socket(sock, address, backlog, reuse_port)
        listener._engine = self
        if isinstance(handler, _MetricsHandler) and (<_MetricsHandler>handler).engine is not self:
            raise ValueError("a metrics handler serves the engine that made it: "
                             "use this engine's listen_metrics()")
        if isinstance(handler, NativeHandler):
            native = <NativeHandler>handler
            if native._callbacks == NULL:
                raise TypeError(f"{handler!r} is not a usable native handler "
                                "(the base class, or not initialised)")
            listener.native = handler     # keeps its C server alive
            callbacks = native._callbacks
            user = native._user
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
        if sock is not None:
            # last, after every check: from here the engine owns the dup
            # (piocp_listen_ex closes it also when it fails)
            options.fd = sock.dup().detach()   # os.dup takes no socket on Windows
        rc = piocp_listen_ex(self._c, &options, callbacks, user, &listener._listener)
        if rc < 0:
            raise os_error(rc, f"cannot listen on {address if sock is None else sock!r}")
        self._listeners.append(listener)
        return listener

    def start(self):
        """Starts the worker threads (background serving)."""
        cdef int rc
        self._check_process()
        if self._stopped:
            raise RuntimeError("the engine is stopped; make a new one")
        if self.started:
            return
        with nogil:   # the workers take the GIL as they start
            rc = piocp_engine_start(self._c)
        if rc < 0:
            raise os_error(rc, "start")
        self.started = True
        _running_engines.add(self)

    def post(self, callback):
        """Runs callback() once on a worker thread (with the GIL)."""
        cdef call_request *cr
        cdef int rc
        self._check_process()
        if not callable(callback):
            raise TypeError("callback must be callable")
        if self._c == NULL:
            raise RuntimeError("the engine is stopped")
        cr = new_call_request(&self._shared, callback)
        rc = piocp_post(self._c, &cr.req, 0)
        if rc < 0:
            free_call_request(cr)
            raise os_error(rc, "post")

    def request_stop(self):
        """Asks the engine to stop gracefully and returns at once: run()
        stops it and returns; an engine started with start() is stopped by
        a thread made for that.  Safe from any thread and from handlers."""
        self._request_stop(5.0)

    cdef _request_stop(self, drain_timeout):
        self._stop_requested = True
        if self._inherited():
            return   # its wake-up pair is shared with the parent's run()
        wake = self._wake_write
        if wake is not None:
            try:
                wake.send(b"s")
            except BlockingIOError:
                pass     # its buffer is full, so run() is awake anyway
        if (self.started and not self._in_run and not self._stopped
                and not self._stop_thread_started):
            # nobody polls for the request: a worker cannot join itself,
            # and the caller may be one
            self._stop_thread_started = True
            threading.Thread(target=self.stop, args=(drain_timeout,),
                             name="pyiocp-stop").start()

    def stop(self, drain_timeout=5.0):
        """Stops accepting, lets running transfers finish for up to
        drain_timeout seconds, closes everything and joins the workers.
        From inside a handler this only requests the stop."""
        cdef int drain_ms = _milliseconds(drain_timeout, "drain_timeout")
        if self._inherited():
            return   # the parent's engine: nothing of it runs here
        if piocp_worker_index() >= 0:
            # a worker cannot join itself: run()'s thread stops the engine,
            # or, for one started with start(), a thread made for it
            self._request_stop(drain_timeout)
            return
        if self._stopped:
            if self._stopping_thread != threading.get_ident():
                self._stop_done.wait()   # another thread is stopping it
            return
        self._stopped = True
        self._stopping_thread = threading.get_ident()
        self._drain_timeout = drain_ms / 1000.0
        _running_engines.discard(self)
        self._request_stop(drain_timeout)   # a run() in another thread returns
        try:
            with nogil:
                piocp_engine_stop(self._c, drain_ms)
            dispatch_pending(&self._shared, True)   # what the workers left
            self._final_stats = self.stats()
            self._free()
        finally:
            self._stop_done.set()

    def run(self, drain_timeout=5.0):
        """Serves in the foreground until Ctrl-C, SIGTERM (unless the program
        handles it itself) or request_stop(), then stops gracefully."""
        cdef piocp_socket wake_fd
        self._check_process()
        previous = previous_term = None
        in_main = threading.current_thread() is threading.main_thread()
        if self._in_run:
            raise RuntimeError("run() is already running in another thread")
        if self._stopped:
            raise RuntimeError("the engine is stopped; make a new one")
        self._in_run = True
        try:
            if in_main:
                # a signal handled by any thread still wakes the poll below
                previous = signal.set_wakeup_fd(self._wake_write.fileno(),
                                                warn_on_full_buffer=False)
                # SIGTERM, like Ctrl-C, stops gracefully, unless the program
                # has a handler of its own
                if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                    previous_term = signal.signal(signal.SIGTERM,
                                                  lambda signum, frame: self.request_stop())
            # after the handlers: once connections are served, signals stop it
            self.start()
            wake_fd = self._wake_read.fileno()
            while True:
                # compiled code never passes through the eval loop's signal
                # check: run handlers of signals that came before the wake-up
                # fd was set, or they would be seen only after the next one
                PyErr_CheckSignals()
                if self._stop_requested:
                    break
                with nogil:
                    binding_wait_readable(wake_fd)   # EINTR: the signal check above
                try:
                    while self._wake_read.recv(64):
                        pass
                except BlockingIOError:
                    pass
        except KeyboardInterrupt:
            pass
        finally:
            if in_main and previous is not None:
                signal.set_wakeup_fd(previous)
            try:
                self.stop(drain_timeout)   # waits if another thread is stopping it
            finally:
                self._in_run = False
                if self._c == NULL and self._wake_read is not None:
                    # freed while this run() polled: the pair was left to it
                    self._close_wake_pair()
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()


def _nothing():
    pass


cdef piocp_listener_callbacks python_callbacks
python_callbacks.on_connection = on_connection
