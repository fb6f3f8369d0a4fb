"""pyiocp.aio streams: a Connection awaited from coroutines, on both loops
and every backend, with reads and writes bounded as asyncio's streams are."""
from __future__ import annotations

import asyncio
import os

import pytest

import pyiocp
import pyiocp.aio
from aio_helpers import MiB, run

pytestmark = pytest.mark.usefixtures("uvloop_globals")


async def echo(stream: pyiocp.aio.Stream) -> None:
    while True:
        line = await stream.readline()
        if not line:
            break
        stream.write(line.upper())
        await stream.drain()
    stream.close()
    await stream.wait_closed()


def test_echo_server_and_client(loop_kind, backend, no_fd_leak):
    async def main():
        async with await pyiocp.aio.start_server(echo, backend=backend, threads=2) as server:
            host, port = server.address[:2]
            # an asyncio client against the engine's server...
            reader, writer = await asyncio.open_connection(host, port)
            for i in range(100):
                writer.write(b"line %d\n" % i)
                await writer.drain()
                assert await reader.readline() == b"LINE %d\n" % i
            writer.write_eof()
            assert await reader.read() == b""      # the server closed after our EOF
            writer.close()
            await writer.wait_closed()
            # ...and the engine's client against it, through the engine
            engine = pyiocp.Engine(threads=2, backend=backend)
            engine.start()
            try:
                bridge = pyiocp.aio.Bridge(engine)
                stream = await pyiocp.aio.connect(host, port, bridge=bridge)
                stream.write(b"abc\ndef\n")
                await stream.drain()
                assert await stream.readexactly(8) == b"ABC\nDEF\n"
                stream.write_eof()
                assert await stream.read() == b""
                assert stream.at_eof()
                stream.close()
                await stream.wait_closed()
            finally:
                await asyncio.get_running_loop().run_in_executor(None, engine.stop, 1.0)

    run(loop_kind, main)


def test_connect_failure_raises(loop_kind, backend):
    async def main():
        engine = pyiocp.Engine(threads=2, backend=backend)
        engine.start()
        try:
            bridge = pyiocp.aio.Bridge(engine)
            import socket
            with socket.create_server(("127.0.0.1", 0)) as s:
                port = s.getsockname()[1]
            with pytest.raises(ConnectionRefusedError):
                await pyiocp.aio.connect("127.0.0.1", port, bridge=bridge)
        finally:
            await asyncio.get_running_loop().run_in_executor(None, engine.stop, 1.0)

    run(loop_kind, main)


def test_a_fast_sender_waits_in_the_kernel_not_in_memory(loop_kind, backend):
    """The server reads nothing for a while: the client's 64 MiB do not pile
    up in the server's memory (at most `limit` plus one recv wait unread),
    the sender is held back, and every byte arrives once the server reads."""
    total, limit = 64 * MiB, 256 * 1024
    seen = {}

    async def slow_reader(stream):
        await asyncio.sleep(1.0)
        seen["buffered"] = len(stream._buffer)     # what waits unread on the loop side
        got = 0
        while True:
            chunk = await stream.read(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        seen["got"] = got
        stream.close()

    async def main():
        async with await pyiocp.aio.start_server(slow_reader, backend=backend, threads=2,
                                                 limit=limit) as server:
            reader, writer = await asyncio.open_connection(*server.address[:2])
            block = os.urandom(MiB)

            async def send():
                for _ in range(total // MiB):
                    writer.write(block)
                    await writer.drain()
                writer.write_eof()
            sender = asyncio.ensure_future(send())
            await asyncio.sleep(0.7)
            assert not sender.done()               # held back while the server sleeps
            await asyncio.wait_for(sender, 30)
            assert await reader.read() == b""
            writer.close()
            for _ in range(100):
                if "got" in seen:
                    break
                await asyncio.sleep(0.05)
            assert seen["got"] == total
            assert seen["buffered"] <= limit + (1 << 16), seen   # + one recv of 64 KiB

    run(loop_kind, main)


def test_drain_waits_for_a_slow_reader(loop_kind, backend):
    """The server writes faster than the client reads: drain() holds it at
    the high mark, and resumes once the client catches up."""
    state = {}

    async def flood(stream):
        stream.set_write_buffer_limits(high=256 * 1024)
        block = b"x" * 65536
        sent = 0
        for _ in range(512):              # 32 MiB
            stream.write(block)
            sent += len(block)
            state["max_buffer"] = max(state.get("max_buffer", 0), stream.get_write_buffer_size())
            await stream.drain()
        state["sent"] = sent
        stream.close()

    async def main():
        async with await pyiocp.aio.start_server(flood, backend=backend, threads=2) as server:
            reader, writer = await asyncio.open_connection(*server.address[:2])
            await asyncio.sleep(0.5)         # not reading yet: the server must be waiting
            assert "sent" not in state
            got = 0
            while True:
                chunk = await reader.read(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
            writer.close()
            assert got == 32 * MiB == state["sent"]
            assert state["max_buffer"] <= 256 * 1024 + 65536

    run(loop_kind, main)


def test_readuntil_limits_and_incomplete_reads(loop_kind, backend):
    results = {}

    async def handler(stream):
        try:
            await stream.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            results["overrun"] = exc.consumed
        try:
            await stream.readexactly(10 ** 9)
        except asyncio.IncompleteReadError as exc:
            results["partial"] = len(exc.partial)
        stream.close()

    async def main():
        async with await pyiocp.aio.start_server(handler, backend=backend, threads=2,
                                                 limit=1024) as server:
            reader, writer = await asyncio.open_connection(*server.address[:2])
            writer.write(b"y" * 5000)
            writer.write_eof()
            await writer.drain()
            assert await reader.read() == b""
            writer.close()
            for _ in range(100):
                if "partial" in results:
                    break
                await asyncio.sleep(0.05)
        assert results["overrun"] >= 1024
        assert results["partial"] == 5000

    run(loop_kind, main)
