"""Issue #11: the same cases against every control store storage backend (memory, SQLite, Redis).

The Redis cases start their own ``redis-server`` on a free port in a temp dir (never a system
service); ``scripts/install_test_deps.sh`` installs it.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from ember.shells.control.storage import (
    IncompatibleStorage, StorageError, StorageUnavailable, open_storage)
from ember.shells.control.storage.base import META_TABLE, SCHEMA_KEY

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, tmp: str, password: str = "") -> None:
        self.dir, self.port, self.password, self.proc = tmp, _free_port(), password, None
        self.start()

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"


needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server missing: run scripts/install_test_deps.sh")


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(str(tmp_path))
    yield server
    server.stop()


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=needs_redis)])
def backend(request, tmp_path):
    """A function that (re)opens the same storage, and the backend's name."""
    if request.param == "memory":
        from ember.shells.control.storage.memory import MemoryStorage
        shared = MemoryStorage()  # "reopening" memory gives the same object: it lives in the process
        yield (lambda **kw: shared), "memory"
        return
    if request.param == "sqlite":
        url = f"file://{tmp_path}/state.db"
        yield (lambda **kw: open_storage(url, **kw)), "sqlite"
        return
    server = RedisServer(str(tmp_path))
    request.addfinalizer(server.stop)
    yield (lambda **kw: open_storage(server.url, **kw)), "redis"


def test_put_get_delete_scan(backend):
    reopen, _ = backend
    s = reopen()
    s.put("t", b"a1", b"x")
    s.put("t", b"a2", b"y")
    s.put("t", b"b1", b"z")
    s.put("other", b"a1", b"w")
    assert s.get("t", b"a1") == b"x"
    assert s.get("t", b"nope") is None
    assert s.scan("t", b"a") == [(b"a1", b"x"), (b"a2", b"y")]
    assert [k for k, _ in s.scan("t")] == [b"a1", b"a2", b"b1"]
    assert s.delete("t", b"a1") is True
    assert s.delete("t", b"a1") is False
    s.write_batch([("t", b"c", b"1"), ("t", b"a2", None), ("u", b"k", b"v")])
    assert s.scan("t") == [(b"b1", b"z"), (b"c", b"1")]
    assert s.get("u", b"k") == b"v"
    assert s.compare_and_set("lease", b"epoch", None, b"1") is True
    assert s.compare_and_set("lease", b"epoch", None, b"2") is False
    assert s.compare_and_set("lease", b"epoch", b"1", b"2") is True
    assert s.get("lease", b"epoch") == b"2"


def test_reopen_keeps_data(backend):
    reopen, _ = backend
    s = reopen()
    s.write_batch([("kv", b"k%d" % i, b"v%d" % i) for i in range(100)])
    s.close()
    s2 = reopen()
    assert len(s2.scan("kv")) == 100
    assert s2.get("kv", b"k42") == b"v42"
    s2.close()


def test_concurrent_writers(backend):
    reopen, name = backend
    stores = [reopen() for _ in range(4)]
    errors = []

    def writer(i: int) -> None:
        try:
            for j in range(50):
                stores[i].put("c", f"{i}-{j}".encode(), b"v")
                stores[i].write_batch([("c", f"b{i}-{j}".encode(), b"w")])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(stores[0].scan("c")) == 400


def test_incompatible_version_refused(backend):
    reopen, name = backend
    s = reopen()
    s.put(META_TABLE, SCHEMA_KEY, b"999")
    s.put(META_TABLE, b"ember_version", b"9.9.9")
    if name == "memory":
        from ember.shells.control.storage.base import check_schema
        with pytest.raises(IncompatibleStorage, match=r"ember 9\.9\.9.*this is ember 0\.1\.0"):
            check_schema(s, "0.1.0")
        return
    s.close()
    with pytest.raises(IncompatibleStorage, match=r"written by ember 9\.9\.9 \(storage schema 999\).*this is ember"):
        reopen()


@needs_redis
def test_redis_goes_away_and_comes_back(redis_server):
    s = open_storage(redis_server.url, retry_timeout_s=20)
    s.put("kv", b"before", b"1")
    redis_server.stop()
    restarter = threading.Timer(1.0, redis_server.start)
    restarter.start()
    s.put("kv", b"during", b"2")  # retried with backoff until the server is back
    restarter.join()
    assert s.get("kv", b"before") == b"1"  # appendonly: the data survived the server restart
    assert s.get("kv", b"during") == b"2"
    redis_server.stop()
    s._retry_timeout_s = 0.5
    with pytest.raises(StorageUnavailable, match=r"Redis storage at 127\.0\.0\.1:\d+ could not be reached"):
        s.get("kv", b"before")
    s.close()


@needs_redis
def test_redis_wrong_password(tmp_path):
    server = RedisServer(str(tmp_path), password="right")
    try:
        good = open_storage(server.url)
        good.put("kv", b"k", b"v")
        good.close()
        with pytest.raises(StorageError, match="password"):
            open_storage(f"redis://:wrong@127.0.0.1:{server.port}/0")
        with pytest.raises(StorageError, match="password"):
            open_storage(f"redis://127.0.0.1:{server.port}/0")
    finally:
        server.stop()


def test_sqlite_bad_locations(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"file://{tmp_path}/missing/dir/state.db")
    with pytest.raises(StorageError, match="unknown storage URL"):
        open_storage("ftp://x")
    bad = tmp_path / "notadb"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="cannot open SQLite storage"):
        open_storage(f"file://{bad}")


@pytest.mark.parametrize("url,message", [
    ("ftp://x", "unknown storage URL 'ftp://x'"),
    ("redis://127.0.0.1:1/0", r"StorageUnavailable: Redis storage at 127\.0\.0\.1:1 could not be reached"),
])
def test_ember_start_head_with_bad_storage_says_why(tmp_path, url, message):
    import re
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("EMBER_ADDRESS", "RAY_ADDRESS")}
    env["EMBER_TMPDIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-m", "ember.cli.main", "start", "--head", "--port", str(_free_port()),
                           "--storage", url, "--include-dashboard", "false"], env=env, capture_output=True,
                          text=True, timeout=90)
    assert done.returncode != 0
    assert "the head failed to start" in done.stderr and re.search(message, done.stderr), done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_guarded_batch_applies_all_or_nothing(backend):
    reopen, _ = backend
    s = reopen()
    assert s.guarded_batch([("g", b"fence", None)], [("g", b"fence", b"1"), ("d", b"x", b"1")]) is True
    assert s.guarded_batch([("g", b"fence", None)], [("d", b"y", b"1")]) is False  # not absent any more
    assert s.guarded_batch([("g", b"fence", b"1"), ("g", b"other", b"no")], [("d", b"y", b"1")]) is False
    assert s.get("d", b"y") is None
    assert s.guarded_batch([("g", b"fence", b"1")], [("d", b"x", None), ("d", b"z", b"2")]) is True
    assert s.scan("d") == [(b"z", b"2")]


def test_fenced_writes_stop_landing_once_a_newer_epoch_exists(backend):
    """Two heads' storages: the older epoch's writes are refused, atomically, from the takeover on."""
    from ember.logic.control import leadership as L
    from ember.shells.control.storage.fenced import Deposed, FencedStorage
    reopen, _ = backend
    s_old, s_new = reopen(), reopen()
    s_old.put(L.TABLE, L.EPOCH_KEY, b"1")
    fenced_calls = []
    old = FencedStorage(s_old, 1, lambda: fenced_calls.append(1))
    old.put("kv", b"a", b"old")
    old.write_batch([("kv", b"b", b"old")])
    assert s_new.guarded_batch([(L.TABLE, L.EPOCH_KEY, b"1")], [(L.TABLE, L.EPOCH_KEY, b"2")])
    new = FencedStorage(s_new, 2, lambda: None)
    new.put("kv", b"a", b"new")
    with pytest.raises(Deposed, match=r"epoch 1\) was deposed.*newer epoch \(2\)"):
        old.put("kv", b"a", b"late")
    with pytest.raises(Deposed):
        old.delete("kv", b"b")
    assert fenced_calls == [1, 1]
    assert s_new.get("kv", b"a") == b"new" and s_new.get("kv", b"b") == b"old"
    assert new.compare_and_set("kv", b"c", None, b"1") is True
    assert new.compare_and_set("kv", b"c", None, b"2") is False  # its own guard, not the fence


def test_concurrent_takeovers_one_winner(backend):
    """Standbys racing for the same expired lease: exactly one guarded takeover wins."""
    reopen, _ = backend
    stores = [reopen() for _ in range(4)]
    stores[0].write_batch([("leader", b"lease", b"old"), ("leader", b"epoch", b"1")])
    wins = []

    def take(i: int) -> None:
        if stores[i].guarded_batch([("leader", b"lease", b"old"), ("leader", b"epoch", b"1")],
                                   [("leader", b"lease", b"%d" % i), ("leader", b"epoch", b"2")]):
            wins.append(i)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(wins) == 1 and stores[0].get("leader", b"lease") == b"%d" % wins[0]
