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
from libc.errno cimport errno, ENOTCONN, EINVAL, EISDIR, ENOMEM, ETIMEDOUT

cdef extern from "<errno.h>":
    int ECANCELED
from libc.stdint cimport uint64_t, int64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset, strlen
from posix.fcntl cimport open as c_open, O_RDONLY, O_CLOEXEC
from posix.unistd cimport close as c_close
from posix.stat cimport struct_stat, fstat, S_ISREG, S_ISDIR

from ._engine_api cimport *

import atexit
import logging
import math
import os
import signal
import socket
import threading
import time
import weakref

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
    int F_DUPFD_CLOEXEC
    int F_GETFL
    int fcntl(int fd, int cmd, ...)

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
# needs neither the GIL nor the Python object.  (Larger ones are copied too,
# unless they are `bytes`, which cannot change under the kernel.)
cdef enum:
    COPY_LIMIT = 16384

# asyncio's default write buffer marks (transports' set_write_buffer_limits).
cdef enum:
    DEFAULT_WRITE_HIGH = 65536
    DEFAULT_WRITE_LOW = 16384

cdef enum ItemKind:
    ITEM_ACCEPT = 1
    ITEM_RECV = 2
    ITEM_SEND = 3
    ITEM_CLOSED = 4
    ITEM_CALL = 5
    ITEM_RESUME = 6
    ITEM_CONNECT_FAILED = 7
    ITEM_TIMER = 8
    ITEM_LEND = 9


cdef object os_error(ssize_t rc, str context=None, object filename=None):
    """The one place an error code becomes an exception (after uvloop's
    convert_error).  `rc` is the C API's -errno.  Returns OSError(errno,
    strerror[, filename]), which CPython turns into ConnectionResetError,
    FileNotFoundError and the rest by itself; `context` prefixes the
    message ("send: Broken pipe")."""
    cdef int error = <int>-rc
    message = os.strerror(error)
    if context:
        message = f"{context}: {message}"
    if filename is None:
        return OSError(error, message)
    return OSError(error, message, filename)

include "_dispatch.pxi"
include "_addresses.pxi"
include "_connection.pxi"
include "_timers.pxi"
include "_lend.pxi"
include "_natives.pxi"
include "_engine.pxi"
