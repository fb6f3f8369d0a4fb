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
from libc.stdint cimport uint64_t, int64_t, intptr_t
from libc.string cimport memcpy, memset, strlen

from ._engine_api cimport *

# The binding allocates and frees only through these (binding_fault.h): in
# a fault build each site is an injection point and the live count is
# kept; otherwise they are malloc, calloc and free.
cdef extern from "binding_fault.h" nogil:
    void *binding_malloc(const char *point, size_t size)
    void *binding_calloc(const char *point, size_t count, size_t size)
    void binding_free(void *p)

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

if os.name == "nt":
    import msvcrt

    def _os_handle(fd):
        """A Python file descriptor's Windows HANDLE (OSError if bad)."""
        return msvcrt.get_osfhandle(fd)
else:
    def _os_handle(fd):
        return fd

# What the binding asks of the system, POSIX or Windows (binding_platform.h):
# nothing below includes a POSIX-only header.  Errors are -PIOCP_E*.
cdef extern from "binding_platform.h" nogil:
    int PIOCP_ENOTCONN, PIOCP_EINVAL, PIOCP_EISDIR, PIOCP_ENOMEM, PIOCP_ETIMEDOUT, PIOCP_EBUSY
    int PIOCP_ECANCELED, PIOCP_EBADF
    int BINDING_FILE_REGULAR, BINDING_FILE_DIRECTORY
    int binding_open_file(const char *path, piocp_file *out)
    piocp_file binding_file_from_os_handle(intptr_t handle)
    int binding_file_info(piocp_file f, int *kind, uint64_t *size)
    int binding_file_readable(piocp_file f)
    void binding_close_file(piocp_file f)
    int binding_dup_file(piocp_file f, piocp_file *out)
    int binding_socket_is_nonblocking(piocp_socket s)
    int binding_wait_readable(piocp_socket s)
    const char *piocp_error_text(int err, char *buf, size_t len)

cdef extern from "binding_platform.h" nogil:   # <arpa/inet.h>, <ws2tcpip.h>
    int inet_pton(int af, const char *src, void *dst)
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)
    unsigned short htons(unsigned short)
    unsigned short ntohs(unsigned short)

cdef extern from "binding_platform.h" nogil:   # <netinet/in.h>, <winsock2.h>
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
    cdef char text[256]
    # not os.strerror: on Windows it calls the Winsock numbers Python's
    # errno uses for socket errors "Unknown error"
    message = piocp_error_text(error, text, sizeof(text)).decode("utf-8", "replace")
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
include "_metrics.pxi"
include "_engine.pxi"
include "_fault.pxi"
