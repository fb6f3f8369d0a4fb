"""Engine.call_later / call_at: asyncio's TimerHandle shape on the
engine's timer heap."""
from __future__ import annotations

import threading
import time

import pytest


def test_timers_run_in_due_order_on_workers(make_engine):
    engine = make_engine()
    engine.start()
    fired, done = [], threading.Event()
    start = engine.time()
    for delay, name in ((0.15, "c"), (0.05, "a"), (0.1, "b"), (0.1, "b2")):
        engine.call_later(delay, fired.append, name)
    engine.call_later(0.2, done.set)
    assert done.wait(5)
    assert fired == ["a", "b", "b2", "c"]
    assert engine.time() - start >= 0.2


def test_a_timer_never_fires_early(make_engine):
    engine = make_engine()
    engine.start()
    seen = []
    done = threading.Event()
    due = engine.time() + 0.1
    handle = engine.call_at(due, lambda: (seen.append(engine.time()), done.set()))
    assert handle.when() == due
    assert done.wait(5)
    assert seen[0] >= due


def test_cancel_from_any_thread(make_engine):
    engine = make_engine()
    engine.start()
    fired = []
    handles = [engine.call_later(0.1, fired.append, i) for i in range(20)]
    threading.Thread(target=lambda: [h.cancel() for h in handles[::2]]).start()
    time.sleep(0.4)
    assert sorted(fired) == list(range(1, 20, 2))
    assert all(h.cancelled() for h in handles[::2])
    assert not any(h.cancelled() for h in handles[1::2])
    handles[0].cancel()                               # twice: nothing
    handles[1].cancel()                               # after it ran: nothing
    assert handles[1].cancelled()


def test_pending_timers_are_dropped_at_stop(make_engine):
    engine = make_engine()
    engine.start()
    fired = []
    engine.call_later(60, fired.append, 1)
    start = time.monotonic()
    engine.stop()
    assert time.monotonic() - start < 5 and fired == []
    with pytest.raises(RuntimeError):
        engine.call_later(0, fired.append, 2)


def test_an_exception_in_a_timer_is_logged(make_engine, caplog):
    engine = make_engine()
    engine.start()
    done = threading.Event()

    def boom():
        raise ValueError("boom")

    engine.call_later(0, boom)
    engine.call_later(0.05, done.set)
    assert done.wait(5)
    assert "boom" in caplog.text


def test_bad_arguments(make_engine):
    engine = make_engine()
    with pytest.raises(TypeError):
        engine.call_later("1", print)
    with pytest.raises(TypeError):
        engine.call_later(1, "not callable")
    with pytest.raises(TypeError):
        engine.call_at(float("nan"), print)
