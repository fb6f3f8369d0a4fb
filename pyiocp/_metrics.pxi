# Metrics: the engine's counters as a dict (Engine.stats) and as Prometheus
# text (Engine.listen_metrics), and areas of them shared by the processes
# of a pre-fork server (pyiocp.serve_workers).
# Included by _core.pyx (one extension module, several files).

import mmap


cdef list _describe_metrics():
    """Each series' (family name, label values), by index."""
    cdef piocp_metric_desc d
    series = []
    for i in range(PIOCP_METRICS):
        piocp_metric_describe(i, &d)
        values = tuple(d.label_value[k].decode() for k in range(2) if d.label_name[k] != NULL)
        series.append((d.name.decode(), values))
    return series


_SERIES = None


cdef dict _metrics_dict(const uint64_t *v):
    """The counters a person or a program reads from Engine.stats():
    requests by operation, errors by operation and errno (those seen),
    bytes sent by source, HTTP answers by status class, and the rest by
    name."""
    global _SERIES
    if _SERIES is None:
        _SERIES = _describe_metrics()
    requests, errors, sent, http = {}, {}, {}, {}
    plain = {}
    for i, (name, labels) in enumerate(_SERIES):
        value = v[i]
        if name == "pyiocp_requests_total":
            if labels[0] != "accept":    # not a request: "accepted"
                requests[labels[0]] = value
        elif name == "pyiocp_errors_total":
            if value:
                errors.setdefault(labels[0], {})[labels[1]] = value
        elif name == "pyiocp_sent_bytes_total":
            sent[labels[0]] = value
        elif name == "pyiocp_http_responses_total":
            http[labels[0]] = value
        elif name == "pyiocp_connections_refused_total":
            plain["refused_" + labels[0]] = value
        else:
            plain[name[len("pyiocp_"):].removesuffix("_total")] = value
    return {"requests": requests, "errors": errors, "sent_bytes": sent,
            "http_responses": http,
            "received_bytes": plain["received_bytes"],
            "connections_opened": plain["connections_opened"],
            "connections_closed": plain["connections_closed"],
            "refused_max_connections": plain["refused_max_connections"],
            "refused_stopping": plain["refused_stopping"],
            "python_completions": plain["python_completions"],
            "python_batches": plain["python_batches"]}


cdef class MetricsArea:
    """Counters of several processes' engines in memory they share: made
    before fork (an anonymous shared mapping), each worker's engine counts
    into a cell of it, and any process holding it renders every worker's
    series and their sum.  `slots` workers of `threads` threads each.

    A worker restarted or reloaded gets a fresh cell for its slot; what
    the old one counted stays in the slot's series (counts never go back),
    and connections it left open count as closed."""
    cdef object _map
    cdef unsigned char[::1] _bytes    # the mapping, exported: it cannot close under us
    cdef void *_area
    cdef readonly int slots
    cdef readonly int threads

    def __cinit__(self, int slots, int threads):
        cdef size_t size = piocp_metrics_area_size(slots, threads)
        if size == 0:
            raise ValueError(f"a metrics area needs 1..4096 slots and 1..{PIOCP_MAX_THREADS} "
                             f"threads, not {slots} and {threads}")
        # MAP_SHARED | MAP_ANONYMOUS on POSIX: forked children count into
        # the same pages.  Page-aligned, and zeroed.
        self._map = mmap.mmap(-1, size)
        self._bytes = self._map
        self._area = &self._bytes[0]
        self.slots = slots
        self.threads = threads
        rc = piocp_metrics_area_init(self._area, size, slots, threads)
        if rc < 0:
            raise os_error(rc, "metrics area")

    def claim(self, int slot):
        """Takes a free cell for worker `slot` (zeroed) and returns its
        index, for the worker's engine (Engine._use_metrics_cell)."""
        cdef void *cell
        cdef size_t size
        rc = piocp_metrics_area_claim(self._area, slot, &cell, &size)
        if rc == -PIOCP_EBUSY:
            raise RuntimeError(f"no free metrics cell for slot {slot}")
        if rc < 0:
            raise ValueError(f"slot must be in 0..{self.slots - 1}, not {slot}")
        return rc

    def release(self, int cell):
        """Frees a cell once its process has exited; its counts stay in
        its slot's series."""
        if piocp_metrics_area_release(self._area, cell) < 0:
            raise ValueError(f"{cell} is not a claimed cell of this area")

    def render(self):
        """The Prometheus text of every slot and their sum."""
        return _render_metrics(NULL, self._area)


cdef str _render_metrics(const piocp_engine *engine, const void *area):
    cdef size_t cap, n
    cdef char *buf
    cap = piocp_metrics_render(engine, area, NULL, 0) + 1024
    while True:
        buf = <char *>binding_malloc(b"py_metrics_text", cap)
        if buf == NULL:
            raise MemoryError()
        try:
            n = piocp_metrics_render(engine, area, buf, cap)
            if n < cap:
                return buf[:n].decode()
        finally:
            binding_free(buf)
        cap = n + 1024


cdef class _MetricsHandler(NativeHandler):
    """Serves GET /metrics for the engine that made it (Engine.listen_metrics):
    that engine's counters, or an area's.  Its C server reads the engine's
    memory, so no other engine may listen with it (Engine.listen checks)."""
    cdef piocp_metrics_server *_server
    cdef readonly object engine
    cdef object area                     # kept alive while served

    cdef int _attach(self, object engine, const piocp_engine *c_engine,
                     MetricsArea area) except -1:
        cdef int rc = piocp_metrics_server_new(&self._server, c_engine,
                                               NULL if area is None else area._area)
        if rc < 0:
            raise os_error(rc, "metrics server")
        self.engine = engine
        self.area = area
        self._callbacks = &piocp_metrics_server_callbacks
        self._user = self._server
        return 0

    def __dealloc__(self):
        if self._server != NULL:
            piocp_metrics_server_free(self._server)
