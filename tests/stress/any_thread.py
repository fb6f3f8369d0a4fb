"""Stress: Connection methods called from a thread pool while clients come,
talk, go and reset, and while the engine stops.  Run as a script (tests
start it in a subprocess, so that a crash is a failed test, not a dead
pytest):

    python tests/stress/any_thread.py BACKEND SECONDS

Prints one line of JSON with what happened; exits 0 if every client that
finished normally got its echo back whole.
"""
import concurrent.futures
import json
import os
import random
import socket
import struct
import sys
import threading
import time

import pyiocp


class PoolEcho(pyiocp.Handler):
    """Everything happens on the pool: the echo, the next recv, and now and
    then a close or an abort, or a call on a connection that is long gone."""
    pool = None
    graveyard = []          # closed connections, poked again later
    lock = threading.Lock()

    def connection_made(self, conn):
        self.pool.submit(self.start, conn)

    def start(self, conn):
        conn.recv()

    def data_received(self, conn, data):
        self.pool.submit(self.answer, conn, bytes(data))

    def answer(self, conn, data):
        roll = random.random()
        if roll < 0.02:
            conn.abort()
        elif roll < 0.04:
            conn.close()
        buffer = bytearray(data)
        conn.send(buffer)
        if not os.environ.get("NO_MUTATE"):
            buffer[:] = b"x" * len(buffer)   # after send(): must not change what is sent
        conn.recv()                      # may race the previous recv's dispatch
        conn.recv() if roll > 0.98 else None
        with self.lock:
            if self.graveyard:
                old = random.choice(self.graveyard)
                old.send(b"late")        # must return False, never reach a new connection
                old.recv()
                old.close()

    def connection_lost(self, conn, exc):
        with self.lock:
            self.graveyard.append(conn)
            del self.graveyard[:-64]


def client(address, stop_at, counts):
    while time.monotonic() < stop_at:
        try:
            sock = socket.create_connection(address, timeout=5)
        except OSError:
            counts["connect_errors"] += 1
            continue
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(random.randint(1, 20)):
                message = os.urandom(random.choice((1, 100, 3000, 20000)))
                sock.sendall(message)
                got = b""
                while len(got) < len(message):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionResetError("closed")
                    got += chunk
                if got != message:
                    counts["corrupt"] += 1
                    return
                counts["echoes"] += 1
            if random.random() < 0.3:   # leave with a reset
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (OSError, socket.timeout):
            counts["dropped"] += 1      # the server closed or aborted it: allowed
        finally:
            sock.close()


def main():
    backend, seconds = sys.argv[1], float(sys.argv[2])
    pool = concurrent.futures.ThreadPoolExecutor(8)
    PoolEcho.pool = pool
    engine = pyiocp.Engine(backend=backend, threads=2)
    listener = engine.listen(("127.0.0.1", 0), PoolEcho)
    engine.start()
    counts = {"echoes": 0, "dropped": 0, "corrupt": 0, "connect_errors": 0}
    stop_at = time.monotonic() + seconds
    clients = [threading.Thread(target=client, args=(listener.address, stop_at, counts))
               for _ in range(6)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    # stop while the pool may still be posting
    engine.stop(drain_timeout=0.5)
    pool.shutdown(wait=True)
    for conn in PoolEcho.graveyard:     # after stop: everything must be refused, quietly
        assert conn.send(b"x") is False
        assert conn.recv() is False
        conn.close()
        conn.abort()
    print(json.dumps(counts))
    return 1 if counts["corrupt"] or not counts["echoes"] else 0


if __name__ == "__main__":
    sys.exit(main())
