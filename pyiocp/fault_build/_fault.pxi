# The fault build's drivers (setup.py, PYIOCP_FAULT_INJECTION=1, puts this
# folder on Cython's include path; a release build includes
# pyiocp/release_build/_fault.pxi, which has none of this).  Private: the
# tests' way into engine/core/fault.h (tests/fault/sweep.py).  Errors are
# positive errno values, as Python's errno module has them.

cdef extern from "core/fault.h" nogil:
    ctypedef struct piocp_fault_spec:
        const char *point
        unsigned nth
        unsigned times
        int error
        ptrdiff_t keep
    ctypedef struct piocp_fault_site:
        char point[32]
        unsigned passes
        int can_short
    void piocp_fault_arm_spec(const piocp_fault_spec *spec)
    void piocp_fault_disarm()
    unsigned piocp_fault_fired()
    unsigned piocp_fault_passes()
    void piocp_fault_record(int on)
    size_t piocp_fault_recorded(piocp_fault_site *sites, size_t max)
    long piocp_fault_allocs()
    size_t piocp_fault_points(const char **names, size_t max)
    int piocp_fault_point_errors(const char *point, int *errors, size_t max)

cdef extern from "binding_fault.h" nogil:
    long binding_fault_allocs()

cdef extern from "errors.h":
    int PIOCP_EAGAIN

_FAULT_INJECTION = True

# The binding's points (binding_fault.h, dispatch_queue.h) and the errors
# their real operation has: the allocations fail with ENOMEM; a push or a
# claim cannot fail and is only ever cut short (preempted, split).
_BINDING_POINTS = {
    "py_conn_state": (PIOCP_ENOMEM,),
    "py_recv_buffer": (PIOCP_ENOMEM,),
    "py_send": (PIOCP_ENOMEM,),
    "py_shutdown": (PIOCP_ENOMEM,),
    "py_call": (PIOCP_ENOMEM,),
    "py_connect": (PIOCP_ENOMEM,),
    "py_timer": (PIOCP_ENOMEM,),
    "py_lend": (PIOCP_ENOMEM,),
    "py_metrics_text": (PIOCP_ENOMEM,),
    "py_dispatch_init": (PIOCP_ENOMEM, PIOCP_EAGAIN),
    "py_dispatch_push": (),
    "py_dispatch_claim": (),
}


cdef unsigned _fault_count(object n, str name) except? 0:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 0xFFFFFFFF:
        raise ValueError(f"{name} must be an integer in 1..2**32-1, not {n!r}")
    return n


def _fault_arm(point, nth, error, times=1):
    """Passes nth..nth+times-1 through `point` (counted from now) fail with
    `error` (an errno); times=None: every pass from nth on."""
    cdef piocp_fault_spec spec
    encoded = point.encode()
    if not 0 < error < 4096:
        raise ValueError(f"error must be an errno, not {error!r}")
    memset(&spec, 0, sizeof(spec))
    spec.point = encoded
    spec.nth = _fault_count(nth, "nth")
    spec.times = 0xFFFFFFFF if times is None else _fault_count(times, "times")
    spec.error = error
    piocp_fault_arm_spec(&spec)


def _fault_arm_short(point, nth, keep=0):
    """The nth pass through the length-taking `point` is cut to `keep`
    (0: half)."""
    cdef piocp_fault_spec spec
    encoded = point.encode()
    memset(&spec, 0, sizeof(spec))
    spec.point = encoded
    spec.nth = _fault_count(nth, "nth")
    spec.keep = keep
    piocp_fault_arm_spec(&spec)


def _fault_disarm():
    piocp_fault_disarm()


def _fault_fired():
    """Passes faulted since the last arm."""
    return piocp_fault_fired()


def _fault_passes():
    """Passes through the armed point since it was armed."""
    return piocp_fault_passes()


def _fault_record(bint on):
    """Recording on (clears what was recorded) or off (keeps it)."""
    piocp_fault_record(on)


def _fault_recorded():
    """[(point, passes, can_short)] in the order first passed."""
    cdef piocp_fault_site sites[256]
    cdef size_t n = piocp_fault_recorded(sites, 256)
    if n > 256:
        raise RuntimeError(f"{n} points recorded, more than the 256 read")
    return [(sites[i].point.decode(), sites[i].passes, bool(sites[i].can_short))
            for i in range(n)]


def _fault_points():
    """Every point: the engine's (both platforms') and the binding's."""
    cdef const char *names[256]
    cdef size_t n = piocp_fault_points(names, 256)
    if n > 256:
        raise RuntimeError(f"the engine has {n} points, more than the 256 read")
    return [names[i].decode() for i in range(n)] + list(_BINDING_POINTS)


def _fault_point_errors(point):
    """The errors the real call at `point` can return (an empty tuple: it
    can only be cut short); None for an unknown point."""
    cdef int errors[16]
    cdef int n
    if point in _BINDING_POINTS:
        return _BINDING_POINTS[point]
    encoded = point.encode()
    n = piocp_fault_point_errors(encoded, errors, 16)
    if n < 0:
        return None
    if n > 16:
        raise RuntimeError(f"{point} has {n} errors, more than the 16 read")
    return tuple(errors[i] for i in range(n))


def _fault_allocs():
    """(engine, binding): allocations alive now, to compare across a run."""
    return piocp_fault_allocs(), binding_fault_allocs()
