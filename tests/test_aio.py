"""pyiocp.aio: asyncio programs send files through the engine, on the
default loop and on uvloop, on every engine backend."""
from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import os
import shutil
import socket
import ssl
import struct
import subprocess

import aiohttp
import pytest
from aiohttp import web

import pyiocp
import pyiocp.aio
from aio_helpers import MiB, run

pytestmark = pytest.mark.usefixtures("uvloop_globals")
from conftest import tool_env


@pytest.fixture
def engine(make_engine):
    engine = make_engine()
    engine.start()
    return engine


def pattern(size: int, seed: int = 0) -> bytes:
    block = bytes((i * 7 + seed) & 0xFF for i in range(65536 + 256))
    out = bytearray()
    while len(out) < size:
        out += block[seed % 256: seed % 256 + 65536]
        seed += 1
    return bytes(out[:size])


@pytest.fixture
def files(tmp_path):
    sizes = {"empty.bin": 0, "1k.bin": 1024, "64k.bin": 65536, "3m.bin": 3 * MiB}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(pattern(size, len(name)))
    return tmp_path


def tcp_pair():
    """A connected loopback TCP pair, both non-blocking."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        a = socket.create_connection(server.getsockname())
        b, _ = server.accept()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def read_exactly(loop, sock, size):
    got = bytearray()
    while len(got) < size:
        chunk = await loop.sock_recv(sock, min(1 << 20, size - len(got)))
        if not chunk:
            break
        got += chunk
    return bytes(got)


# ----------------------------------------------------------- sockets --

def test_sock_sendfile_hands_the_socket_back(loop_kind, engine, files):
    path = files / "3m.bin"
    data = path.read_bytes()
    offset, count = 1000, 2 * MiB

    async def main():
        loop = asyncio.get_running_loop()
        pyiocp.aio.install(loop, bridge=pyiocp.aio.Bridge(engine))
        a, b = tcp_pair()
        with a, b, open(path, "rb") as f:
            nodelay = a.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            before = engine.stats()
            reader = asyncio.ensure_future(read_exactly(loop, b, count))
            assert await loop.sock_sendfile(a, f, offset, count) == count
            assert f.tell() == offset + count
            assert await reader == data[offset:offset + count]
            after = engine.stats()
            # what the socket took at once went in place, the rest was lent
            assert after["borrowed"] == before["borrowed"] + 1
            in_place = after["sent_in_place_bytes"] - before["sent_in_place_bytes"]
            assert in_place <= 262144
            assert after["borrowed_bytes"] - before["borrowed_bytes"] == count - in_place
            # handed back unchanged, and still the loop's to use both ways
            assert a.gettimeout() == 0
            assert a.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == nodelay
            await loop.sock_sendall(a, b"after")
            assert await read_exactly(loop, b, 5) == b"after"
            await loop.sock_sendall(b, b"back")
            assert await read_exactly(loop, a, 4) == b"back"

    run(loop_kind, main)


def test_sendfile_with_head_and_to_the_end(loop_kind, engine, files):
    path = files / "64k.bin"
    data = path.read_bytes()

    async def main():
        loop = asyncio.get_running_loop()
        bridge = pyiocp.aio.Bridge(engine)
        a, b = tcp_pair()
        with a, b, open(path, "rb") as f:
            reader = asyncio.ensure_future(read_exactly(loop, b, 5 + len(data) - 100))
            sent = await pyiocp.aio.sendfile(a, f, 100, head=b"HEAD:", bridge=bridge)
            assert sent == len(data) - 100           # file bytes, as loop.sendfile counts
            assert f.tell() == len(data)
            assert await reader == b"HEAD:" + data[100:]

    run(loop_kind, main)


def test_send_in_place_sends_what_the_socket_takes_now(make_engine, files):
    """Engine.send_in_place: the head and the file go out on the calling
    thread, up to `limit`, the file's end, or a full socket, never waiting."""
    engine = make_engine()         # needs no running workers
    data = (files / "1k.bin").read_bytes()
    big = (files / "3m.bin").read_bytes()
    a, b = tcp_pair()
    with a, b, open(files / "1k.bin", "rb") as f, open(files / "3m.bin", "rb") as g:
        before = engine.stats()
        assert engine.send_in_place(a.fileno(), f.fileno(), head=b"H:") == (2, 1024, True, 0)
        b.setblocking(True)
        assert recv_all(b, 2 + 1024) == b"H:" + data
        after = engine.stats()
        assert after["sent_in_place"] == before["sent_in_place"] + 1
        assert after["sent_in_place_bytes"] == before["sent_in_place_bytes"] + 1024
        assert after["borrowed"] == before["borrowed"]
        # past the file's end: what there is, and finished (asyncio's rule)
        assert engine.send_in_place(a.fileno(), f.fileno(), 1000, 100) == (0, 24, True, 0)
        assert recv_all(b, 24) == data[1000:]
        # the limit: at most that much, not finished
        assert engine.send_in_place(a.fileno(), g.fileno(), 5, None, limit=4096) == \
            (0, 4096, False, 0)
        assert recv_all(b, 4096) == big[5:5 + 4096]
        # a full socket: what it took, not finished, no error
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        offset = 0
        while True:
            head_sent, sent, finished, error = engine.send_in_place(
                a.fileno(), g.fileno(), offset, None, limit=len(big))
            assert (head_sent, finished, error) == (0, False, 0)
            offset += sent
            if sent == 0 or offset >= len(big):
                break
        assert 0 < offset < len(big)               # nobody reads b: it filled up
        assert recv_all(b, offset) == big[:offset]
        # a reset peer: its errno, nothing raised
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        b.close()
        _, _, finished, error = engine.send_in_place(a.fileno(), f.fileno())
        if error == 0:                              # the reset had not arrived yet
            _, _, finished, error = engine.send_in_place(a.fileno(), f.fileno())
        assert not finished and error in (errno.ECONNRESET, errno.EPIPE)
        # bad input
        with pytest.raises(ValueError, match="offset"):
            engine.send_in_place(a.fileno(), f.fileno(), -1)
        with pytest.raises(ValueError, match="count"):
            engine.send_in_place(a.fileno(), f.fileno(), 0, -1)
        with pytest.raises(ValueError, match="limit"):
            engine.send_in_place(a.fileno(), f.fileno(), limit=-1)
        a.setblocking(True)
        with pytest.raises(ValueError, match="non-blocking"):
            engine.send_in_place(a.fileno(), f.fileno())
    with pytest.raises(OSError) as info:            # a closed descriptor
        engine.send_in_place(a.fileno(), 0)
    assert info.value.errno == errno.EBADF


def recv_all(sock, size):
    got = bytearray()
    while len(got) < size:
        chunk = sock.recv(size - len(got))
        if not chunk:
            break
        got += chunk
    return bytes(got)


def test_a_small_file_goes_out_in_place_without_lending(loop_kind, engine, files):
    data = (files / "64k.bin").read_bytes()

    async def main():
        loop = asyncio.get_running_loop()
        bridge = pyiocp.aio.Bridge(engine)
        a, b = tcp_pair()
        with a, b, open(files / "64k.bin", "rb") as f:
            before = engine.stats()
            assert await pyiocp.aio.sendfile(a, f, 10, 1000, head=b"H", bridge=bridge) == 1000
            assert f.tell() == 1010
            assert await read_exactly(loop, b, 1001) == b"H" + data[10:1010]
            after = engine.stats()
            assert after["borrowed"] == before["borrowed"]
            assert after["sent_in_place"] == before["sent_in_place"] + 1
            # a reset peer: the matching OSError from the in-place send, and
            # the file position where it stopped
            b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            b.close()
            await asyncio.sleep(0.05)
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                for _ in range(3):
                    await pyiocp.aio.sendfile(a, f, 0, 1000, bridge=bridge)
            assert f.tell() == 0

    run(loop_kind, main)


def test_parameters_checked_as_asyncio_does(loop_kind, engine, files):
    async def main():
        loop = asyncio.get_running_loop()
        pyiocp.aio.install(loop, bridge=pyiocp.aio.Bridge(engine))
        a, b = tcp_pair()
        with a, b, open(files / "1k.bin", "rb") as f:
            with pytest.raises(ValueError, match="count must be a positive integer"):
                await loop.sock_sendfile(a, f, 0, 0)
            with pytest.raises(ValueError, match="offset must be a non-negative integer"):
                await loop.sock_sendfile(a, f, -1)
            with open(files / "1k.bin", "r") as text:
                with pytest.raises(ValueError, match="binary mode"):
                    await loop.sock_sendfile(a, text)
            a.setblocking(True)
            with pytest.raises(ValueError, match="non-blocking"):
                await loop.sock_sendfile(a, f)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setblocking(False)
        with udp, open(files / "1k.bin", "rb") as f:
            with pytest.raises(ValueError, match="SOCK_STREAM"):
                await loop.sock_sendfile(udp, f)

    run(loop_kind, main)


def test_cancel_stops_the_transfer_and_keeps_the_connection(loop_kind, engine, files):
    """The reader stalls, the task is cancelled: CancelledError, the file
    position says exactly how many bytes went out, and the connection still
    works (no reset)."""
    big = files / "big.bin"
    big.write_bytes(pattern(64 * MiB, 3))

    async def main():
        loop = asyncio.get_running_loop()
        bridge = pyiocp.aio.Bridge(engine)
        a, b = tcp_pair()
        with a, b, open(big, "rb") as f:
            task = asyncio.ensure_future(pyiocp.aio.sendfile(a, f, 10, bridge=bridge))
            await asyncio.sleep(0.3)                # the socket buffers fill; it stalls
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            sent = f.tell() - 10
            assert 0 < sent < 64 * MiB - 10
            # everything sent arrives, then nothing more: the stream was cut
            # where the position says, not reset
            got = await read_exactly(loop, b, sent)
            assert got == pattern(64 * MiB, 3)[10:10 + sent]
            await loop.sock_sendall(a, b"!")
            assert await read_exactly(loop, b, 1) == b"!"

    run(loop_kind, main)


def test_peer_reset_raises_the_matching_oserror(loop_kind, engine, files):
    big = files / "big.bin"
    big.write_bytes(pattern(32 * MiB, 5))

    async def main():
        bridge = pyiocp.aio.Bridge(engine)
        a, b = tcp_pair()
        with a, open(big, "rb") as f:
            task = asyncio.ensure_future(pyiocp.aio.sendfile(a, f, bridge=bridge))
            await asyncio.sleep(0.2)
            b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            b.close()                               # a reset, with data unread
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                await task
            assert 0 < f.tell() < 32 * MiB
            assert a.fileno() >= 0                  # ours to close, not the engine's

    run(loop_kind, main)


CERT = os.path.join(os.path.dirname(__file__), "data", "selfsigned.pem")


def tls_contexts():
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(CERT)
    client = ssl.create_default_context(cafile=CERT)
    return server, client


def test_tls_transports_go_the_loops_own_way(loop_kind, engine, files):
    """Bytes on a TLS transport must be encrypted: pyiocp.aio.sendfile and an
    installed loop.sendfile send them the loop's own way (uvloop: a read
    and write loop), correctly, and the engine sends nothing."""
    data = (files / "3m.bin").read_bytes()
    server_ctx, client_ctx = tls_contexts()

    async def main():
        loop = asyncio.get_running_loop()
        bridge = pyiocp.aio.Bridge(engine)
        pyiocp.aio.install(loop, bridge=bridge)
        sent = []

        async def serve(reader, writer):
            with open(files / "3m.bin", "rb") as f:
                sent.append(await pyiocp.aio.sendfile(writer.transport, f, 100, 2 * MiB,
                                                      head=b"HEAD", bridge=bridge))
                sent.append(await loop.sendfile(writer.transport, f, 0, 1000))
                assert f.tell() == 1000
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        before = engine.stats()
        async with server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
            got = await reader.read()
            writer.close()
        assert got == b"HEAD" + data[100:100 + 2 * MiB] + data[:1000]
        assert sent == [2 * MiB, 1000]
        after = engine.stats()
        assert after["borrowed"] == before["borrowed"]
        assert after["sent_in_place"] == before["sent_in_place"]

    run(loop_kind, main)


def test_aiohttp_over_tls_with_install(loop_kind, engine, files):
    server_ctx, client_ctx = tls_contexts()

    async def main():
        pyiocp.aio.install(asyncio.get_running_loop(), bridge=pyiocp.aio.Bridge(engine))
        async def file(request):
            return web.FileResponse(files / request.match_info["name"])
        app = web.Application()
        app.router.add_get("/files/{name}", file)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        before = engine.stats()
        try:
            async with aiohttp.ClientSession() as client:
                for name in ("1k.bin", "3m.bin"):
                    url = f"https://localhost:{port}/files/{name}"
                    async with client.get(url, ssl=client_ctx) as response:
                        assert response.status == 200
                        assert await response.read() == (files / name).read_bytes()
        finally:
            await runner.cleanup()
        assert engine.stats()["borrowed"] == before["borrowed"]

    run(loop_kind, main)


def test_files_that_are_not_regular_go_the_loops_own_way(loop_kind, engine):
    """A BytesIO (no descriptor) through an installed sock_sendfile and
    sendfile: read and written in chunks, on uvloop too."""
    payload = pattern(300_000, 9)

    async def main():
        loop = asyncio.get_running_loop()
        pyiocp.aio.install(loop, bridge=pyiocp.aio.Bridge(engine))
        a, b = tcp_pair()
        with a, b:
            reader = asyncio.ensure_future(read_exactly(loop, b, len(payload) - 7))
            assert await loop.sock_sendfile(a, io.BytesIO(payload), 7) == len(payload) - 7
            assert await reader == payload[7:]
        got = []

        async def serve(reader, writer):
            got.append(await pyiocp.aio.sendfile(writer.transport, io.BytesIO(payload), 0, 1000,
                                                 head=b"H"))
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        async with server:
            r, w = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
            assert await r.read() == b"H" + payload[:1000]
            w.close()
        assert got == [1000]
        assert engine.stats()["borrowed"] == 0

    run(loop_kind, main)


def test_default_bridge_is_refused_in_a_forked_child():
    bridge = pyiocp.aio.default_bridge()
    assert pyiocp.aio.default_bridge() is bridge
    pid = os.fork()
    if pid == 0:    # pragma: no cover - the child
        try:
            pyiocp.aio.default_bridge()
        except RuntimeError as exc:
            os._exit(0 if "before a fork" in str(exc) else 2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# ----------------------------------------------------------- aiohttp --

class App:
    """An aiohttp app serving `root` with web.FileResponse, plus a JSON
    endpoint, on 127.0.0.1."""

    def __init__(self, root):
        self.root = root

    async def __aenter__(self):
        async def file(request):
            return web.FileResponse(self.root / request.match_info["name"])

        async def hello(request):
            return web.json_response({"hello": "world"})

        app = web.Application()
        app.router.add_get("/files/{name}", file)
        app.router.add_get("/hello", hello)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()


def test_aiohttp_file_response_goes_through_the_engine(loop_kind, engine, files):
    async def main():
        loop = asyncio.get_running_loop()
        pyiocp.aio.install(loop, bridge=pyiocp.aio.Bridge(engine))
        async with App(files) as app, aiohttp.ClientSession() as client:
            for name in ("empty.bin", "1k.bin", "64k.bin", "3m.bin"):
                before = engine.stats()
                async with client.get(f"{app.url}/files/{name}") as response:
                    assert response.status == 200
                    body = await response.read()
                assert body == (files / name).read_bytes()
                after = engine.stats()
                lent = after["borrowed_bytes"] - before["borrowed_bytes"]
                in_place = after["sent_in_place_bytes"] - before["sent_in_place_bytes"]
                # every byte went zero-copy: in place, or by the engine's workers
                assert lent + in_place == len(body), f"{name}: {lent} lent, {in_place} in place"
                if len(body) > 262144:
                    assert lent > 0, f"{name}: the engine moved nothing"
            headers = {"Range": "bytes=100-1099"}
            async with client.get(f"{app.url}/files/64k.bin", headers=headers) as response:
                assert response.status == 206
                assert await response.read() == (files / "64k.bin").read_bytes()[100:1100]
            async with client.get(f"{app.url}/hello") as response:
                assert await response.json() == {"hello": "world"}

    run(loop_kind, main)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_aiohttp_downloads_with_curl(loop_kind, engine, files):
    async def main():
        loop = asyncio.get_running_loop()
        pyiocp.aio.install(loop, bridge=pyiocp.aio.Bridge(engine))
        async with App(files) as app:
            for name in ("1k.bin", "3m.bin"):
                out = files / f"curl-{name}"
                proc = await asyncio.create_subprocess_exec(
                    "curl", "-sS", "-o", str(out), f"{app.url}/files/{name}", env=tool_env())
                assert await proc.wait() == 0
                assert out.read_bytes() == (files / name).read_bytes()
            proc = await asyncio.create_subprocess_exec(
                "curl", "-sS", "-r", "5-9", f"{app.url}/files/1k.bin",
                stdout=subprocess.PIPE, env=tool_env())
            out, _ = await proc.communicate()
            assert out == (files / "1k.bin").read_bytes()[5:10]

    run(loop_kind, main)


def test_aiohttp_many_concurrent_downloads(loop_kind, engine, files):
    one = files / "1m.bin"
    one.write_bytes(pattern(MiB, 9))
    expected = one.read_bytes()

    async def main():
        loop = asyncio.get_running_loop()
        pyiocp.aio.install(loop, bridge=pyiocp.aio.Bridge(engine))
        async with App(files) as app:
            connector = aiohttp.TCPConnector(limit=100)
            async with aiohttp.ClientSession(connector=connector) as client:
                async def fetch():
                    async with client.get(f"{app.url}/files/1m.bin") as response:
                        return await response.read()
                bodies = await asyncio.gather(*(fetch() for _ in range(100)))
        assert all(body == expected for body in bodies)

    run(loop_kind, main)


def test_aiohttp_big_downloads_and_a_client_that_resets(loop_kind, engine, files):
    big = files / "100m.bin"
    big.write_bytes(pattern(100 * MiB, 11))
    expected = hashlib.sha256(big.read_bytes()).hexdigest()

    async def main():
        loop = asyncio.get_running_loop()
        pyiocp.aio.install(loop, bridge=pyiocp.aio.Bridge(engine))
        async with App(files) as app:
            # a client that reads a little and resets
            reader, writer = await asyncio.open_connection("127.0.0.1", app.port)
            writer.write(b"GET /files/100m.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readexactly(65536)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            async with aiohttp.ClientSession() as client:
                async def fetch():
                    digest = hashlib.sha256()
                    async with client.get(f"{app.url}/files/100m.bin") as response:
                        async for chunk in response.content.iter_chunked(1 << 20):
                            digest.update(chunk)
                    return digest.hexdigest()
                digests = await asyncio.gather(*(fetch() for _ in range(4)))
        assert digests == [expected] * 4

    run(loop_kind, main, timeout=120.0)


def test_aiohttp_handler_cancelled_mid_transfer(loop_kind, engine, files):
    """A handler whose sendfile is cancelled (here by a timeout, as a
    framework cancels a handler): the file position says what went out and
    the server goes on serving."""
    big = files / "big.bin"
    big.write_bytes(pattern(64 * MiB, 13))

    async def main():
        loop = asyncio.get_running_loop()
        pyiocp.aio.install(loop, bridge=pyiocp.aio.Bridge(engine))
        positions = []

        async def slow(request):
            with open(big, "rb") as f:
                response = web.StreamResponse()
                response.content_length = 64 * MiB
                await response.prepare(request)
                try:
                    await asyncio.wait_for(loop.sendfile(request.transport, f, 0, 64 * MiB), 0.5)
                finally:
                    positions.append(f.tell())
            return response

        app = web.Application()
        app.router.add_get("/slow", slow)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readexactly(1000)          # then stalls: reads no more
            for _ in range(200):
                if positions:
                    break
                await asyncio.sleep(0.05)
            assert positions and 0 < positions[0] < 64 * MiB
            writer.close()
            async with aiohttp.ClientSession() as client:
                async with client.get(f"http://127.0.0.1:{port}/hello-missing") as response:
                    assert response.status == 404      # still serving
        finally:
            await runner.cleanup()

    run(loop_kind, main, timeout=120.0)


def test_serve_next_to_an_aiohttp_app(loop_kind, backend, files, no_fd_leak):
    async def main():
        async with App(files) as app, \
                pyiocp.aio.serve(pyiocp.StaticFiles(str(files)), "127.0.0.1", 0,
                                 backend=backend) as listener:
            native = f"http://127.0.0.1:{listener.address[1]}"
            async with aiohttp.ClientSession() as client:
                async with client.get(f"{native}/64k.bin") as response:
                    assert response.status == 200
                    assert await response.read() == (files / "64k.bin").read_bytes()
                async with client.get(f"{app.url}/hello") as response:
                    assert await response.json() == {"hello": "world"}
            port = listener.address[1]
        with pytest.raises(OSError):    # stopped with the block
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

    run(loop_kind, main)


def test_lend_transmit_refuses_bad_input_clearly(make_engine, files):
    engine = make_engine()
    engine.start()
    a, b = tcp_pair()
    with a, b, open(files / "1k.bin", "rb") as f:
        def done(sent, error, returned_error):
            pass
        with pytest.raises(TypeError, match="done must be callable"):
            engine.lend_transmit(a.fileno(), f.fileno(), done=None)
        with pytest.raises(ValueError, match="offset"):
            engine.lend_transmit(a.fileno(), f.fileno(), -1, done=done)
        with pytest.raises(ValueError, match="count"):
            engine.lend_transmit(a.fileno(), f.fileno(), 0, -5, done=done)
        with pytest.raises(OSError):                 # a file is not a socket to borrow
            engine.lend_transmit(f.fileno(), f.fileno(), done=done)
        a.setblocking(True)
        with pytest.raises(OSError):                 # a blocking socket is refused, unchanged
            engine.lend_transmit(a.fileno(), f.fileno(), done=done)
        assert a.gettimeout() is None
        engine.stop(1.0)
        with pytest.raises(RuntimeError, match="stopped"):
            engine.lend_transmit(a.fileno(), f.fileno(), done=done)
