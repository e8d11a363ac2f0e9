"""The session root is per user, created 0700, refused when another user could plant files in it, and
files in it are never written or read through symbolic links (issue #8, "trust nothing in a shared
temporary directory")."""
import json
import os
import stat
import subprocess
import sys

import pytest

from ember.shells.wire import session

NOBODY_UID = 65534
is_root = os.geteuid() == 0


@pytest.fixture
def root(tmp_path, monkeypatch):
    path = tmp_path / "root"
    monkeypatch.setenv("EMBER_TMPDIR", str(path))
    return path


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "ember.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_default_root_is_per_user(monkeypatch, tmp_path):
    monkeypatch.delenv("EMBER_TMPDIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))  # not used: absent under cron and sudo
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert session.root() == os.path.join(str(tmp_path), f"ember-{os.geteuid()}")
    monkeypatch.setenv("EMBER_TMPDIR", str(tmp_path / "mine"))
    assert session.root() == str(tmp_path / "mine") == session.ROOT


def test_root_is_created_0700(root):
    session.ensure_root()
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700


@pytest.mark.skipif(not is_root, reason="chown to another user needs root")
def test_root_owned_by_another_user_is_refused(root):
    root.mkdir(mode=0o700)
    os.chown(root, NOBODY_UID, NOBODY_UID)
    with pytest.raises(session.UnsafeSessionRoot, match=f"owned by uid {NOBODY_UID}"):
        session.ensure_root()
    with pytest.raises(session.UnsafeSessionRoot):
        session.read_current_cluster()  # a planted record is never believed
    done = _cli("status", env=dict(os.environ))
    assert done.returncode == 1 and "refuses to use the session directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_group_or_world_writable_root_is_refused(root):
    root.mkdir()
    for mode in (0o770, 0o703):
        os.chmod(root, mode)
        with pytest.raises(session.UnsafeSessionRoot, match="writable by group or others"):
            session.new_session_dir()
    assert os.listdir(root) == []


def test_default_root_must_not_be_a_link(monkeypatch, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    monkeypatch.delenv("EMBER_TMPDIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    os.symlink(target, tmp_path / f"ember-{os.geteuid()}")
    with pytest.raises(session.UnsafeSessionRoot, match="symbolic link"):
        session.ensure_root()


def test_planted_current_cluster_link_is_refused_and_its_target_untouched(root, tmp_path):
    session.ensure_root()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, root / "current_cluster")
    with pytest.raises(session.UnsafeSessionRoot, match="symbolic link"):
        session.write_current_cluster("127.0.0.1:1", str(root / "session_x"))
    with pytest.raises(session.UnsafeSessionRoot, match="symbolic link"):
        session.read_current_cluster()
    assert victim.read_text() == "precious"
    assert os.path.islink(root / "current_cluster")


def test_planted_token_link_is_refused_and_its_target_untouched(root, tmp_path):
    session_dir = session.new_session_dir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, session.token_path(session_dir))
    with pytest.raises(FileExistsError):
        session.create_token(session_dir)
    with pytest.raises(FileExistsError):
        session.write_token(session_dir, b"attacker")
    with pytest.raises(session.UnsafeSessionRoot, match="symbolic link"):
        session.read_token(session.token_path(session_dir))  # a daemon never reads a token through a link
    os.symlink(victim, session.pids_path(session_dir))
    with pytest.raises(session.UnsafeSessionRoot):
        session.record_pid(session_dir, pid=1, create_time=0.0, role="node_daemon", address="x")
    assert victim.read_text() == "precious"


def test_current_cluster_is_replaced_atomically_with_private_mode(root):
    session.write_current_cluster("127.0.0.1:1", "/a")
    session.write_current_cluster("127.0.0.1:2", "/b")
    assert session.read_current_cluster() == {"address": "127.0.0.1:2", "session_dir": "/b"}
    assert stat.S_IMODE(os.stat(root / "current_cluster").st_mode) == 0o600
    assert sorted(os.listdir(root)) == ["current_cluster"]  # no temp file left behind
    (root / "current_cluster").write_text("{not json")
    assert session.read_current_cluster() is None


def test_session_latest_follows_the_newest_session(root):
    first = session.new_session_dir()
    second = session.new_session_dir()
    assert os.readlink(root / "session_latest") == os.path.basename(second)
    assert stat.S_IMODE(os.stat(second).st_mode) == 0o700
    session.remove_session_dir(second)
    assert os.readlink(root / "session_latest") == os.path.basename(first)
    session.remove_session_dir(first)
    assert not os.path.lexists(root / "session_latest")
    assert session.session_dirs() == []


def test_token_source_is_named(root, tmp_path, monkeypatch):
    monkeypatch.delenv("EMBER_CLUSTER_TOKEN", raising=False)
    session_dir = session.new_session_dir()
    session.create_token(session_dir)
    session.write_cluster_record(session_dir, {"address": "127.0.0.1:5", "started_by": "init"})
    token, source = session.find_token_and_source("127.0.0.1:5")
    assert source == f"the file {session.token_path(session_dir)}" and len(token) == 64
    monkeypatch.setenv("EMBER_CLUSTER_TOKEN", "abc")
    assert session.find_token_and_source("127.0.0.1:5") == (b"abc", "the environment variable EMBER_CLUSTER_TOKEN")
    own = tmp_path / "tok"
    own.write_text("xyz\n")
    assert session.find_token_and_source("127.0.0.1:5", token_file=str(own)) == (b"xyz", f"the file {own}")
    record = json.loads((root / os.path.basename(session_dir) / "cluster.json").read_text())
    assert record["address"] == "127.0.0.1:5"


def test_init_and_start_refuse_an_unsafe_root_before_starting_anything(root, tmp_path):
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)
    env = dict(os.environ)
    done = subprocess.run([sys.executable, "-c", "import ember; ember.init(num_cpus=1)"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "UnsafeSessionRoot" in done.stderr and "mode 0777" in done.stderr
    os.chmod(root, 0o700)
    os.symlink(tmp_path / "victim", root / "current_cluster")
    started = _cli("start", "--head", "--port", "0", "--num-cpus", "1", env=env)
    assert started.returncode == 1 and "symbolic link" in started.stderr, started.stderr
    assert not [n for n in os.listdir(root) if n.startswith("session_")], "nothing was started"
    assert not (tmp_path / "victim").exists()
