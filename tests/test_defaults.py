"""One source of truth for defaults and backend names: the C engine
(piocp_config_init, piocp_raw_options_init, piocp_http_options_init,
piocp_backend_names in pyiocp.h).  Every Python layer that shows a default
or a backend choice -- EngineConfig, Engine's signature, the native
handlers, the CLI -- must show exactly what C says."""
from __future__ import annotations

import dataclasses
import inspect

import pytest

import pyiocp
from pyiocp import _core, cli, config


def test_engine_defaults_come_from_c():
    c = _core.engine_defaults()
    assert set(c) == {"threads", "backend", "max_connections", "idle_timeout"}
    assert c["backend"] == "auto"
    assert isinstance(c["max_connections"], int) and c["max_connections"] > 0
    fields = {f.name: f.default for f in dataclasses.fields(pyiocp.EngineConfig)}
    assert {name: fields[name] for name in c} == c
    # Engine's own signature repeats nothing: it shows EngineConfig's defaults
    signature = inspect.signature(pyiocp.Engine.__init__).parameters
    assert {name: signature[name].default for name in fields} == fields


def test_an_engine_with_defaults_gets_the_c_defaults():
    engine = pyiocp.Engine()
    try:
        assert engine.config.max_connections == _core.engine_defaults()["max_connections"]
        assert engine.backend == pyiocp.available_backends()[0]
    finally:
        engine.stop()


def test_limits_and_default_threads_come_from_c(tmp_path):
    assert config.MAX_THREADS == _core.MAX_THREADS >= 1
    assert pyiocp.default_threads() == _core.default_threads()
    assert 1 <= pyiocp.default_threads() <= config.MAX_THREADS
    pyiocp.EngineConfig(threads=_core.MAX_THREADS)
    with pytest.raises(ValueError, match="threads"):
        pyiocp.EngineConfig(threads=_core.MAX_THREADS + 1)
    # the raw server's longest name: what C can open (PATH_MAX - 1), no more
    assert pyiocp.RawFileServer(tmp_path, max_name=4095).max_name == 4095
    with pytest.raises(ValueError, match="4095"):
        pyiocp.RawFileServer(tmp_path, max_name=4096)


def test_backend_names_come_from_c():
    names = pyiocp.backend_names()
    assert names and "auto" not in names and len(set(names)) == len(names)
    assert config.BACKENDS == ("auto", *names)
    # what this kernel allows is a subset of what is compiled in, same order
    available = pyiocp.available_backends()
    assert available == [name for name in names if name in available]


def test_native_handlers_default_to_the_c_options(tmp_path):
    http = _core.http_defaults()
    assert set(http) == {"listing", "access_log", "header_timeout", "keepalive_timeout",
                         "max_head", "max_discard", "cache_valid", "log_format"}
    assert http["cache_valid"] > 0              # a hit makes no system call by default
    assert http["access_log"] is None           # 'none', not descriptor 0 (stdin)
    served = pyiocp.StaticFiles(tmp_path)
    assert {name: getattr(served, name) for name in http if name != "access_log"} == \
        {name: value for name, value in http.items() if name != "access_log"}
    raw = _core.raw_defaults()
    assert raw["access_log"] is None and raw["max_name"] > 0
    assert pyiocp.RawFileServer(tmp_path).max_name == raw["max_name"]


def test_native_handler_options_are_applied(tmp_path):
    served = pyiocp.StaticFiles(tmp_path, listing=False, header_timeout=2.5,
                                keepalive_timeout=0.25, max_head=4096, max_discard=10, cache_valid=0.5)
    assert (served.listing, served.header_timeout, served.keepalive_timeout, served.max_head,
            served.max_discard, served.cache_valid) == (False, 2.5, 0.25, 4096, 10, 0.5)
    assert pyiocp.StaticFiles(tmp_path, cache_valid=0).cache_valid == 0     # 0: check every request
    with pytest.raises(ValueError, match="cache_valid"):
        pyiocp.StaticFiles(tmp_path, cache_valid=-1)
    assert pyiocp.RawFileServer(tmp_path, max_name=100).max_name == 100


def test_cli_defaults_and_choices_come_from_c():
    args = cli.build_parser().parse_args(["serve"])
    engine, http = _core.engine_defaults(), _core.http_defaults()
    assert (args.threads, args.backend, args.max_connections) == \
        (engine["threads"], engine["backend"], engine["max_connections"])
    assert (args.header_timeout, args.keepalive_timeout, args.cache_valid) == \
        (http["header_timeout"], http["keepalive_timeout"], http["cache_valid"])
    assert args.listing == http["listing"]
    for name in config.BACKENDS:
        assert cli.build_parser().parse_args(["serve", "--backend", name]).backend == name


def test_cli_refuses_a_backend_not_compiled_in(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["serve", "--backend", "kqueue"])
    assert "invalid choice: 'kqueue'" in capsys.readouterr().err
