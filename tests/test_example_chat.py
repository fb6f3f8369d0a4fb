"""examples/chat_server.py, run as a server process on each backend:
broadcast, overlong lines, and its slow-reader policy (a client that does
not read is dropped, by its queue's size or by time, while the others are
served and the server's memory stays bounded)."""
from __future__ import annotations

import socket
import time

import pytest

from example_process import ExampleProcess

MAX_LINE = 4096
MAX_BACKLOG = 256 * 1024


@pytest.fixture
def start_chat(backend, tmp_path):
    servers = []

    def start(*args: str, measure_memory: bool = False) -> ExampleProcess:
        server = ExampleProcess("chat_server.py", "--port", "0", "--threads", "2",
                                "--backend", backend, *args,
                                stderr_path=str(tmp_path / f"chat{len(servers)}.err"),
                                measure_memory=measure_memory)
        servers.append(server)
        return server

    yield start
    for server in servers:
        status = server.stop()
        assert status == 0, f"exit status {status}: {server.stderr()}"


class Client:
    """A chat client that reads lines, each within a timeout."""

    def __init__(self, server: ExampleProcess, rcvbuf: int = 0, timeout: float = 10.0):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(server.address)
        self.buffer = b""
        # the greeting says it is in the room: what others send from now
        # on reaches it
        welcome = self.readline()
        assert welcome.startswith(b"* you are "), welcome
        self.name = welcome[len(b"* you are "):-1].decode()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readline(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed; unterminated: {self.buffer[:100]!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(max(65536, size - len(self.buffer)))
            if not chunk:
                raise EOFError(f"closed after {len(self.buffer)} of {size} bytes")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_to_end(self) -> bytes:
        """What comes until the end of stream (a reset also ends it)."""
        data = self.buffer
        self.buffer = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def clients():
    made = []
    yield made
    for client in made:
        client.close()


def join(server: ExampleProcess, clients: list, **options) -> Client:
    client = Client(server, **options)
    clients.append(client)
    return client


def test_lines_reach_everyone_but_the_sender(start_chat, clients):
    server = start_chat()
    a, b, c = (join(server, clients) for _ in range(3))
    assert len({a.name, b.name, c.name}) == 3
    a.send(b"hello\r\n\n" + b"y" * MAX_LINE + b"\n")   # "\r" dropped, blank line ignored
    for other in (b, c):
        assert other.readline() == f"{a.name}: hello\n".encode()
        assert other.readline() == f"{a.name}: ".encode() + b"y" * MAX_LINE + b"\n"
    b.send(b"from b\n")
    # a's first line is b's: none of its own came back before it
    assert a.readline() == f"{b.name}: from b\n".encode()
    assert c.readline() == f"{b.name}: from b\n".encode()
    b.close()
    assert server.wait_for(f"^{b.name} left", 10) is not None
    c.send(b"still here\n")
    assert a.readline() == f"{c.name}: still here\n".encode()


@pytest.mark.parametrize("ended", [True, False], ids=["with-newline", "unterminated"])
def test_overlong_line_gets_an_error_and_the_end(start_chat, clients, ended):
    server = start_chat()
    talker, listener = join(server, clients), join(server, clients)
    overlong = b"x" * (MAX_LINE + 1) + (b"\n" if ended else b"x" * 2000)
    talker.send(b"fine\n" + overlong + (b"after\n" if ended else b""))
    assert talker.read_to_end() == f"ERROR: line too long (over {MAX_LINE} bytes)\n".encode()
    assert listener.readline() == f"{talker.name}: fine\n".encode()
    assert server.wait_for(f"^{talker.name} refused: line too long", 10) is not None
    # nothing of the overlong line or after it reached the room: the next
    # line the listener gets is a newcomer's
    newcomer = join(server, clients)
    newcomer.send(b"marker\n")
    assert listener.readline() == f"{newcomer.name}: marker\n".encode()


def test_a_client_that_never_reads_is_dropped_and_memory_stays_bounded(start_chat, clients):
    """A writer sends 48 MiB of lines, a fast reader reads them all as they
    come, a third client never reads.  The server drops the third once its
    queue reaches --max-backlog, instead of keeping 48 MiB for it, and goes
    on serving the other two; its resident memory grows by a few MiB at
    most (a server that queued for the stalled client would grow by tens)."""
    server = start_chat("--max-backlog", str(MAX_BACKLOG), "--slow-timeout", "60",
                        measure_memory=True)
    stalled = join(server, clients, rcvbuf=4096)
    reader = join(server, clients)
    writer = join(server, clients)
    baseline = peak = server.rss_kib()
    lines = [b"%05d " % i + b"m" * 1017 + b"\n" for i in range(128)]   # 128 KiB
    batch = b"".join(lines)
    expected = b"".join(writer.name.encode() + b": " + line for line in lines)
    dropped_at = None
    for index in range(384):
        writer.send(batch)
        # the reader keeps up: the writer goes on once it has everything
        assert reader.read_exactly(len(expected)) == expected, f"batch {index}"
        peak = max(peak, server.rss_kib())
        if dropped_at is None and server.wait_for(f"^{stalled.name} dropped", 0):
            dropped_at = index
    growth = peak - baseline
    assert growth < 12 * 1024, f"RSS grew by {growth} KiB (from {baseline} KiB)"
    assert dropped_at is not None, "the client that never reads was not dropped"
    drop = server.wait_for(f"^{stalled.name} dropped: (.*)", 0)
    assert drop.group(1) == f"{MAX_BACKLOG} bytes queued"
    # dropped once the socket buffers and its queue were full (a few MiB),
    # not later: the rest of the 48 MiB was never kept for it
    assert dropped_at < 128, dropped_at
    # the dropped client sees its stream end (reset: what was queued is gone)
    start = time.monotonic()
    stalled.read_to_end()
    assert time.monotonic() - start < 10
    # the others were never dropped
    assert server.wait_for(f"^({reader.name}|{writer.name}) (dropped|left)", 0) is None
    writer.send(b"done\n")
    assert reader.readline() == f"{writer.name}: done\n".encode()


def test_a_client_behind_for_too_long_is_dropped(start_chat, clients):
    """With a queue bound too large to be reached, the time bound drops a
    client that stays behind (paused) for --slow-timeout seconds."""
    server = start_chat("--max-backlog", str(256 << 20), "--slow-timeout", "1")
    stalled = join(server, clients, rcvbuf=4096)
    reader = join(server, clients)
    writer = join(server, clients)
    line = b"z" * 1023 + b"\n"
    batch = line * 128
    expected = (writer.name.encode() + b": " + line) * 128
    # enough to fill the stalled client's socket buffers and pass the high
    # mark; then the writer goes quiet, and the timer alone must act
    for index in range(96):
        writer.send(batch)
        assert reader.read_exactly(len(expected)) == expected, f"batch {index}"
    sent_at = time.monotonic()
    drop = server.wait_for(f"^{stalled.name} dropped: (.*)", 15)
    assert drop is not None, "the client behind for too long was not dropped"
    assert drop.group(1) == "behind for more than 1 s"
    assert time.monotonic() - sent_at < 15
    assert server.wait_for(f"^({reader.name}|{writer.name}) (dropped|left)", 0) is None
    writer.send(b"done\n")
    assert reader.readline() == f"{writer.name}: done\n".encode()
