"""Starts a program the way systemd's socket activation does, for
tests/test_socket_activation.py: makes sockets, puts them at descriptors
3, 4, ..., sets LISTEN_FDS and LISTEN_PID and execs the program, which
keeps this process's pid (so LISTEN_PID=self is the activated process's
own).  Prints "passed HOST:PORT ..." ("-" for a descriptor with no address)
on stdout first.

usage: socket_activation_launcher.py [--kind KIND]... [--fds N] [--pid self|parent]
                                     -- PROGRAM ARGS...
KIND, once per descriptor: listening (the default; TCP on 127.0.0.1, an
unused port), bound (TCP, bound but not listening), udp, file (a regular
file).  --fds N: LISTEN_FDS (default: as many as were made; more leaves the
rest closed).  --pid parent: LISTEN_PID is this process's parent, so the
variables are not for the program."""
import argparse
import os
import socket
import tempfile

FIRST_FD = 3


def make(kind):
    """(descriptor, "HOST:PORT" or "-")."""
    if kind == "file":
        fd, path = tempfile.mkstemp()
        os.unlink(path)
        return fd, "-"
    sock = socket.socket(socket.AF_INET,
                         socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    if kind == "listening":
        sock.listen(16)
    host, port = sock.getsockname()
    return sock.detach(), f"{host}:{port}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", action="append",
                        choices=["listening", "bound", "udp", "file"])
    parser.add_argument("--fds")   # text: a malformed value is a test case
    parser.add_argument("--pid", choices=["self", "parent"], default="self")
    parser.add_argument("program", nargs="+")
    args = parser.parse_args()
    kinds = args.kind or ["listening"]
    # Made first, then copied above them, then put in place: the copies
    # cannot be in 3.. 3+N-1, which the made ones (or others) fill.
    made = [make(kind) for kind in kinds]
    copies = [os.dup(fd) for fd, _ in made]
    for fd, _ in made:
        os.close(fd)
    for target, fd in enumerate(copies, FIRST_FD):
        os.dup2(fd, target)   # inheritable: what the program gets
    for fd in copies:
        os.close(fd)
    env = dict(os.environ)
    env["LISTEN_FDS"] = str(len(kinds)) if args.fds is None else args.fds
    env["LISTEN_PID"] = str(os.getpid() if args.pid == "self" else os.getppid())
    env["LISTEN_FDNAMES"] = ":".join(kinds)
    print("passed " + " ".join(where for _, where in made), flush=True)
    os.execve(args.program[0], args.program, env)


if __name__ == "__main__":
    main()
