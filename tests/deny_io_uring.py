"""Runs a Python command line with io_uring_setup(2) refused (EPERM) by a
seccomp filter, as Docker's default profile does:

    python tests/deny_io_uring.py -m pyiocp serve ROOT ...

Installed with prctl through ctypes (no extra package); the filter is kept
across exec, so the command runs entirely under it."""
import ctypes
import os
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
NR_IO_URING_SETUP = 425          # the same on every architecture
ARCHES = (0xC000003E, 0xC00000B7)  # AUDIT_ARCH_X86_64, AUDIT_ARCH_AARCH64
RET_ERRNO_EPERM = 0x00050000 | 1
RET_ALLOW = 0x7FFF0000
LD_ABS_W, JEQ_K, RET_K = 0x20, 0x15, 0x06


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]


def install():
    program = [
        SockFilter(LD_ABS_W, 0, 0, 4),                      # A = arch
        SockFilter(JEQ_K, 1, 0, ARCHES[0]),                 # known arch: go on
        SockFilter(JEQ_K, 0, 3, ARCHES[1]),                 # else allow
        SockFilter(LD_ABS_W, 0, 0, 0),                      # A = syscall number
        SockFilter(JEQ_K, 0, 1, NR_IO_URING_SETUP),
        SockFilter(RET_K, 0, 0, RET_ERRNO_EPERM),
        SockFilter(RET_K, 0, 0, RET_ALLOW),
    ]
    filters = (SockFilter * len(program))(*program)
    fprog = SockFprog(len(program), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


if __name__ == "__main__":
    install()
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
