"""Worker threads and Python: one thread state per worker for its whole life,
and engines that are still running when the interpreter exits."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import pyiocp
from conftest import connect, recv_exactly


@pytest.mark.parametrize("threads", [1, 3])
def test_a_worker_keeps_its_thread_state_between_batches(make_engine, threads):
    """threading.local data lives in the thread state: a worker that made a
    fresh state for every batch (as CPython does for a thread without one)
    would lose it after every message of a ping-pong, where each batch is a
    single completion."""
    local = threading.local()
    states_seen = []                    # one entry per new thread state

    class Echo(pyiocp.Handler):
        def connection_made(self, conn):
            conn.recv()

        def data_received(self, conn, data):
            if not getattr(local, "mark", False):
                local.mark = True
                states_seen.append(threading.get_ident())
            conn.send(data)
            conn.recv()

    engine = make_engine(threads=threads)
    listener = engine.listen(("127.0.0.1", 0), Echo)
    engine.start()
    with connect(listener.address) as sock:
        for i in range(200):
            message = b"%d" % i
            sock.sendall(message)
            assert recv_exactly(sock, len(message)) == message
    assert 1 <= len(states_seen) <= threads, states_seen


def run_script(body: str, backend: str, tmp_path, timeout=30):
    """Runs `body` in a fresh interpreter with an Echo handler and a client
    helper defined; returns (returncode, stdout, stderr)."""
    prelude = textwrap.dedent(f"""\
        import socket, sys, threading, time, pyiocp
        BACKEND = {backend!r}

        class Echo(pyiocp.Handler):
            def connection_made(self, conn):
                conn.recv()
            def data_received(self, conn, data):
                conn.send(data)
                conn.recv()
            def connection_lost(self, conn, exc):
                print("lost", exc, flush=True)

        def hammer(address, started):
            # ping-pong for as long as the process lives
            sock = socket.create_connection(address)
            started.set()
            try:
                while True:
                    sock.sendall(b"x" * 100)
                    got = 0
                    while got < 100:
                        chunk = sock.recv(100 - got)
                        if not chunk:
                            return
                        got += len(chunk)
            except OSError:
                return
        """)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(pyiocp.__file__)))
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(body)],
                          capture_output=True, cwd=tmp_path, env=env, timeout=timeout)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_an_engine_left_running_is_stopped_at_exit(backend, tmp_path):
    """A program that starts an engine and ends without stopping it, while a
    client is busy: the engine is stopped before the interpreter finalises
    (no worker may touch Python after that), its connection is told, and the
    process exits normally."""
    rc, out, err = run_script("""
        engine = pyiocp.Engine(threads=2, backend=BACKEND)
        listener = engine.listen(("127.0.0.1", 0), Echo)
        engine.start()
        started = threading.Event()
        threading.Thread(target=hammer, args=(listener.address, started), daemon=True).start()
        started.wait(5)
        time.sleep(0.3)             # messages in flight while the program ends
        print("exiting", flush=True)
        """, backend, tmp_path)
    assert rc == 0, err
    assert out.splitlines()[0] == "exiting"
    assert any(line.startswith("lost") for line in out.splitlines()[1:]), out
    assert "Fatal Python error" not in err and "Traceback" not in err, err


def test_run_in_a_daemon_thread_is_stopped_at_exit(backend, tmp_path):
    rc, out, err = run_script("""
        engine = pyiocp.Engine(threads=2, backend=BACKEND)
        listener = engine.listen(("127.0.0.1", 0), Echo)
        returned = []
        def serve():
            engine.run()
            returned.append(True)
        threading.Thread(target=serve, daemon=True).start()
        started = threading.Event()
        threading.Thread(target=hammer, args=(listener.address, started), daemon=True).start()
        started.wait(5)
        time.sleep(0.3)
        print("exiting", flush=True)
        """, backend, tmp_path)
    assert rc == 0, err
    assert any(line.startswith("lost") for line in out.splitlines()), out
    assert "Fatal Python error" not in err and "Traceback" not in err, err


def test_a_stopped_engine_is_not_stopped_again_at_exit(backend, tmp_path):
    rc, out, err = run_script("""
        engine = pyiocp.Engine(threads=2, backend=BACKEND)
        engine.listen(("127.0.0.1", 0), Echo)
        engine.start()
        engine.stop()
        print("stopped", flush=True)
        """, backend, tmp_path)
    assert rc == 0, err
    assert out.split() == ["stopped"]
    assert err == ""


def test_a_second_stop_waits_for_the_first(make_engine):
    """stop() from two threads: the second returns only once the first has
    finished (every connection told), as the atexit hook relies on."""
    told = []
    first_stop_running = threading.Event()

    class Slow(pyiocp.Handler):
        def connection_made(self, conn):
            conn.recv()

        def data_received(self, conn, data):
            conn.recv()

        def connection_lost(self, conn, exc):
            first_stop_running.set()
            time.sleep(0.3)        # the first stop() is busy telling us
            told.append(exc)

    engine = make_engine(threads=2)
    listener = engine.listen(("127.0.0.1", 0), Slow)
    engine.start()
    with connect(listener.address):
        deadline = time.monotonic() + 5
        while engine.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        first = threading.Thread(target=engine.stop)
        first.start()
        assert first_stop_running.wait(5)
        engine.stop()
        assert len(told) == 1
        first.join(5)
