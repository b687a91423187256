"""The connection file and the runtime folder: owner-only modes, atomic writes, clear errors,
stale files from daemons that are gone."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from neural_style_protocol import connection
from neural_style_protocol.connection import (
    ConnectionInfo,
    is_process_alive,
    new_key,
    read_connection_file,
    remove_connection_file,
    runtime_dir,
    stale,
    write_connection_file,
)
from neural_style_protocol.errors import ConnectionFileError, ConnectionFileMissing

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX modes and pids")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def info(pid: int | None = None) -> ConnectionInfo:
    return ConnectionInfo("tcp://127.0.0.1:5599", new_key(), pid or os.getpid(), "0.1.0")


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the umask a test changes."""
    old = os.umask(0o022)  # the only way to read the umask is to set it
    os.umask(old)
    yield
    os.umask(old)


def test_keys_are_256_random_bits() -> None:
    keys = {new_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(len(key) == 64 and bytes.fromhex(key) for key in keys)
    assert len(info().key_bytes) == 32


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077, 0o277])
def test_the_file_is_0600_whatever_the_umask(tmp_path: Path, umask: None, mask: int) -> None:
    os.umask(mask)
    written = info()
    path = write_connection_file(written, tmp_path / "daemon.json")
    assert mode(path) == 0o600
    assert read_connection_file(path) == written


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    written = info()
    path = write_connection_file(written, tmp_path / "daemon.json")
    assert read_connection_file(path) == written


def test_writing_is_atomic_and_replaces_an_open_file(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text("old and readable")
    path.chmod(0o644)
    written = write_connection_file(info(), path)
    assert mode(written) == 0o600  # a new file, not the old one's mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.json"]  # no temporary left


def test_a_failed_write_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(fd: int, data: bytes) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(connection.os, "write", fail)
    with pytest.raises(OSError, match="disk full"):
        write_connection_file(info(), tmp_path / "daemon.json")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_does_not_end_up_0600_is_refused_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fchmod = os.fchmod
    # A file system that ignores the mode we ask for.
    monkeypatch.setattr(connection.os, "fchmod", lambda fd, _mode: real_fchmod(fd, 0o644))
    with pytest.raises(ConnectionFileError, match="mode 644"):
        write_connection_file(info(), tmp_path / "daemon.json")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConnectionFileMissing, match="is the daemon running"):
        read_connection_file(tmp_path / "daemon.json")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        b'{"endpoint": "tcp://127.0.0.1:1"}',
        b"[" * 10_000,
    ],
)
def test_a_garbled_file_says_so(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "daemon.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConnectionFileError, match="garbled"):
        read_connection_file(path)


@pytest.mark.parametrize(
    "changes",
    [
        {"key": "short"},
        {"key": "ZZ" * 32},
        {"pid": "123"},
        {"pid": True},
        {"pid": 0},
        {"transport": "udp"},
        {"endpoint": "ipc:///tmp/x"},
        {"signature_scheme": "none"},
        {"protocol_version": 1.0},
    ],
)
def test_wrong_values_in_the_file_are_refused(tmp_path: Path, changes: dict) -> None:
    path = write_connection_file(info(), tmp_path / "daemon.json")
    data = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps(data))
    with pytest.raises(ConnectionFileError, match="garbled"):
        read_connection_file(path)


def test_unknown_keys_from_a_newer_daemon_are_skipped(tmp_path: Path) -> None:
    written = info()
    path = write_connection_file(written, tmp_path / "daemon.json")
    path.write_text(json.dumps({**json.loads(path.read_text()), "future": 1}))
    assert read_connection_file(path) == written


def test_a_file_others_can_write_is_not_trusted(tmp_path: Path) -> None:
    path = write_connection_file(info(), tmp_path / "daemon.json")
    path.chmod(0o622)
    with pytest.raises(ConnectionFileError, match="not private"):
        read_connection_file(path)


def test_remove_only_our_own_file(tmp_path: Path) -> None:
    path = write_connection_file(info(pid=os.getpid()), tmp_path / "daemon.json")
    assert not remove_connection_file(path, pid=os.getpid() + 1)
    assert path.exists()
    assert remove_connection_file(path, pid=os.getpid())
    assert not path.exists()
    assert not remove_connection_file(path)


def exited_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_file_from_a_daemon_that_exited_is_stale() -> None:
    assert stale(info(pid=exited_pid()))
    assert not stale(info(pid=os.getpid()))


def test_process_liveness() -> None:
    assert is_process_alive(os.getpid())
    assert is_process_alive(1)  # init: alive, even where we may not signal it
    assert not is_process_alive(exited_pid())
    assert not is_process_alive(0) and not is_process_alive(-1)


# ---- the runtime folder ----------------------------------------------------------------------


def test_the_runtime_folder_under_xdg_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: None
) -> None:
    os.umask(0o000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    folder = runtime_dir()
    assert folder == tmp_path / "neural-style"
    assert mode(folder) == 0o700
    assert connection.default_connection_file() == folder / "daemon.json"


def test_without_xdg_a_per_user_folder_in_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = runtime_dir()
    assert folder == tmp_path / f"neural-style-{os.getuid()}"
    assert mode(folder) == 0o700 and folder.stat().st_uid == os.getuid()


def test_an_open_runtime_folder_of_ours_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "neural-style").mkdir(mode=0o755)
    (tmp_path / "neural-style").chmod(0o755)
    assert mode(runtime_dir()) == 0o700


def test_a_planted_symlink_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / f"neural-style-{os.getuid()}").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConnectionFileError, match="symlink"):
        runtime_dir()


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root to make a folder that another user owns",
)
def test_a_folder_owned_by_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    folder = tmp_path / "neural-style"
    folder.mkdir(mode=0o700)
    os.chown(folder, 12345, 12345)
    with pytest.raises(ConnectionFileError, match="another user"):
        runtime_dir()
