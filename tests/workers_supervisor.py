"""A serve_workers() supervisor for tests/test_workers.py, run as its own
process (the test process never forks with threads running).  Each worker
answers a line with its pid: "pid?" and then closes, "who?" and stays
open.  Prints "READY <port>" once serving.

usage: workers_supervisor.py N [--reuse-port] [--engine-before-fork]"""
import logging
import os
import sys

import pyiocp


class AnswerPid(pyiocp.Handler):
    def connection_made(self, conn):
        conn.recv()

    def data_received(self, conn, data):
        if data.endswith(b"\n"):
            conn.send(b"%d\n" % os.getpid())
            if data.endswith(b"who?\n"):
                conn.recv()
            else:
                conn.close()
        else:
            conn.recv()


def main():
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    workers = int(sys.argv[1])
    early = pyiocp.Engine(threads=1) if "--engine-before-fork" in sys.argv else None

    def setup(sock):
        if early is not None:
            try:
                early.listen(sock=sock, handler=AnswerPid)
            except RuntimeError as exc:
                print(f"REFUSED {exc}", flush=True)
                raise
        engine = pyiocp.Engine(threads=2)
        engine.listen(sock=sock, handler=AnswerPid)
        return engine

    def ready(address):
        print(f"READY {address[1]}", flush=True)

    return pyiocp.serve_workers(workers, setup, address=("127.0.0.1", 0),
                                reuse_port="--reuse-port" in sys.argv, drain_timeout=2.0,
                                on_ready=ready)


if __name__ == "__main__":
    sys.exit(main())
