"""One node's shared-memory objects: one file per object under /dev/shm.

Layout: ``/dev/shm/ember-<session>-<node8>/<object id hex>``, plus ``owner.pid``
(``"<pid> <create_time>"`` of the node daemon) so a later daemon can sweep the
directories of daemons that died without cleaning up.

An object is written to ``<hex>.<pid>.tmp`` and renamed to ``<hex>`` when sealed, so
readers only ever see complete objects.  Readers map the file read-only; the
memoryview returned by :meth:`ShmStore.open` keeps the mapping alive, and a
deleted (unlinked) object stays readable by whoever mapped it.

Accounting (capacity, pins, what to spill) is not here: it is the pure
``ember.logic.node.object_table.ObjectTable``.  This module only moves bytes.
"""
from __future__ import annotations

import mmap
import os
import shutil
from typing import Optional, Union

import psutil

from ember.shells.serialization import SerializedObject

__all__ = [
    "ShmStore",
    "PendingObject",
    "node_store_directory",
    "node_spill_directory",
    "create_owned_dir",
    "sweep_stale",
    "default_capacity_bytes",
    "DEFAULT_SHM_ROOT",
    "STORE_DIR_PREFIX",
    "SPILL_DIR_PREFIX",
]

DEFAULT_SHM_ROOT = "/dev/shm"
STORE_DIR_PREFIX = "ember-"
SPILL_DIR_PREFIX = "ember-spill-"
OWNER_FILE = "owner.pid"
_TMP_SUFFIX = ".tmp"

# Ray's defaults: 30% of system memory, at most 200 GB, at least 75 MB.
OBJECT_STORE_MEMORY_FRACTION = 0.3
OBJECT_STORE_MAX_BYTES = 200 * 10**9
OBJECT_STORE_MIN_BYTES = 75 * 1024 * 1024
# Free space kept on /dev/shm for everyone else.
SHM_MARGIN_MIN_BYTES = 64 * 1024 * 1024
SHM_MARGIN_FRACTION = 0.05

Buffer = Union[bytes, bytearray, memoryview]


def node_store_directory(session_name: str, node_id_hex: str,
                         root: str = DEFAULT_SHM_ROOT) -> str:
    """``<root>/ember-<session>-<first 8 hex digits of the node id>``."""
    return os.path.join(root, f"{STORE_DIR_PREFIX}{session_name}-{node_id_hex[:8]}")


def node_spill_directory(spill_root: str, session_name: str, node_id_hex: str) -> str:
    """``<spill_root>/ember-spill-<session>-<node8>``: one node's spill files."""
    return os.path.join(spill_root, f"{SPILL_DIR_PREFIX}{session_name}-{node_id_hex[:8]}")


def create_owned_dir(directory: str) -> None:
    """Create ``directory`` (0700) with ``owner.pid`` naming this process, so that
    ``sweep_stale`` can remove it once this process is dead."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    proc = psutil.Process(os.getpid())
    owner_tmp = os.path.join(directory, f"{OWNER_FILE}.{proc.pid}{_TMP_SUFFIX}")
    with open(owner_tmp, "w") as f:
        f.write(f"{proc.pid} {proc.create_time()!r}\n")
    os.rename(owner_tmp, os.path.join(directory, OWNER_FILE))


def _write_all(fd: int, data: Buffer, offset: int) -> int:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    written = 0
    total = view.nbytes
    while written < total:
        written += os.pwrite(fd, view[written:], offset + written)
    return total


class PendingObject:
    """An object being written in place (e.g. by a transfer), not yet visible."""

    def __init__(self, object_id: bytes, tmp_path: str, fd: int, size_bytes: int) -> None:
        self.object_id = object_id
        self.tmp_path = tmp_path
        self.size_bytes = size_bytes
        self._fd = fd
        self._mmap: Optional[mmap.mmap] = None
        self._view: Optional[memoryview] = None

    @property
    def buffer(self) -> memoryview:
        """A writable view of the whole object (mapped on first use)."""
        if self._view is None:
            if self.size_bytes == 0:
                self._view = memoryview(bytearray(0))
            else:
                self._mmap = mmap.mmap(self._fd, self.size_bytes)
                self._view = memoryview(self._mmap)
        return self._view

    def write_at(self, offset: int, data: Buffer) -> int:
        """Copy ``data`` to ``offset`` with pwrite (no mapping needed); returns bytes."""
        size = memoryview(data).nbytes
        if offset < 0 or offset + size > self.size_bytes:
            raise ValueError(f"chunk [{offset}, {offset + size}) outside object of {self.size_bytes} bytes")
        return _write_all(self._fd, data, offset)

    def close(self) -> None:
        """Drop the mapping and the file descriptor (idempotent)."""
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:  # a caller still holds a slice: GC unmaps it later
                pass
            self._mmap = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class ShmStore:
    """Files of one node's objects in one directory (normally on tmpfs)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._pending: dict[bytes, PendingObject] = {}

    # --- directory ---------------------------------------------------------------
    def create_dir(self) -> None:
        """Create the directory and record this process as its owner."""
        create_owned_dir(self.directory)

    def remove_dir(self) -> None:
        """Remove the directory and every object in it."""
        for pending in list(self._pending.values()):
            pending.close()
        self._pending.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    # --- paths --------------------------------------------------------------------
    def _path(self, object_id: bytes) -> str:
        return os.path.join(self.directory, object_id.hex())

    def _tmp_path(self, object_id: bytes) -> str:
        return os.path.join(self.directory, f"{object_id.hex()}.{os.getpid()}{_TMP_SUFFIX}")

    def path_of(self, object_id: bytes) -> str:
        """Where the sealed object lives (whether or not it exists)."""
        return self._path(object_id)

    # --- writing ----------------------------------------------------------------------
    def _open_tmp(self, object_id: bytes, size_bytes: int) -> tuple[str, int]:
        tmp = self._tmp_path(object_id)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size_bytes)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        return tmp, fd

    def _write_parts(self, object_id: bytes, parts: list[Union[bytes, memoryview]],
                     size_bytes: int) -> int:
        tmp, fd = self._open_tmp(object_id, size_bytes)
        try:
            offset = 0
            for part in parts:
                offset += _write_all(fd, part, offset)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.rename(tmp, self._path(object_id))
        return size_bytes

    def write(self, object_id: bytes, obj: SerializedObject) -> int:
        """Write and seal a serialized object; returns its size in bytes.

        Uses pwrite rather than mmap+memcpy: on tmpfs it is about twice as fast
        (no page fault per page), see docs/object_store.md.
        """
        return self._write_parts(object_id, obj.chunks(), obj.total_bytes)

    def write_bytes(self, object_id: bytes, data: Buffer) -> int:
        """Write and seal an already-encoded object (e.g. received whole)."""
        return self._write_parts(object_id, [memoryview(data)], memoryview(data).nbytes)

    def create_for_write(self, object_id: bytes, size_bytes: int) -> PendingObject:
        """Start an object to be filled in place; ``seal`` makes it visible."""
        if object_id in self._pending:
            raise ValueError(f"object {object_id.hex()} is already being written")
        tmp, fd = self._open_tmp(object_id, size_bytes)
        pending = PendingObject(object_id, tmp, fd, size_bytes)
        self._pending[object_id] = pending
        return pending

    def seal(self, object_id: bytes) -> int:
        """Make a ``create_for_write`` object visible; returns its size."""
        pending = self._pending.pop(object_id)
        pending.close()
        os.rename(pending.tmp_path, self._path(object_id))
        return pending.size_bytes

    def abort(self, object_id: bytes) -> None:
        """Throw away a ``create_for_write`` object that will not be sealed."""
        pending = self._pending.pop(object_id, None)
        if pending is not None:
            pending.close()
            _unlink_quietly(pending.tmp_path)

    # --- reading ------------------------------------------------------------------------
    def open(self, object_id: bytes) -> Optional[memoryview]:
        """A read-only view of a sealed object (kept mapped while referenced), or None."""
        try:
            fd = os.open(self._path(object_id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            if os.fstat(fd).st_size == 0:
                return memoryview(b"")
            return memoryview(mmap.mmap(fd, 0, access=mmap.ACCESS_READ))
        finally:
            os.close(fd)

    def contains(self, object_id: bytes) -> bool:
        return os.path.exists(self._path(object_id))

    def size_of(self, object_id: bytes) -> Optional[int]:
        try:
            return os.stat(self._path(object_id)).st_size
        except FileNotFoundError:
            return None

    def list_objects(self) -> list[bytes]:
        """Ids of sealed objects (pending and bookkeeping files excluded), sorted."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        ids = []
        for name in names:
            if "." in name:
                continue
            try:
                ids.append(bytes.fromhex(name))
            except ValueError:
                continue
        return sorted(ids)

    def delete(self, object_id: bytes) -> bool:
        """Unlink a sealed object; processes that mapped it keep their pages."""
        return _unlink_quietly(self._path(object_id))

    def remove_partial(self, object_id: bytes) -> int:
        """Unlink unsealed ``<hex>.<pid>.tmp`` files of an object (a writer died while
        writing it); returns how many were removed."""
        prefix = object_id.hex() + "."
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return 0
        return sum(_unlink_quietly(os.path.join(self.directory, name)) for name in names
                   if name.startswith(prefix) and name.endswith(_TMP_SUFFIX))

    # --- spilling -----------------------------------------------------------------------
    def spill(self, object_id: bytes, spill_dir: str) -> str:
        """Copy the object to ``spill_dir`` (atomically), then unlink it from shm."""
        os.makedirs(spill_dir, mode=0o700, exist_ok=True)
        target = os.path.join(spill_dir, object_id.hex())
        tmp = f"{target}.{os.getpid()}{_TMP_SUFFIX}"
        try:
            shutil.copyfile(self._path(object_id), tmp)
            os.rename(tmp, target)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        self.delete(object_id)
        return target

    def restore(self, object_id: bytes, path: str) -> int:
        """Copy a spilled file back into shm (the spill file is kept); returns bytes."""
        tmp = self._tmp_path(object_id)
        try:
            shutil.copyfile(path, tmp)
            os.rename(tmp, self._path(object_id))
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return os.stat(self._path(object_id)).st_size

    @staticmethod
    def delete_spill_file(path: str) -> bool:
        """Remove a spill file once its object is freed; False if it was gone."""
        return _unlink_quietly(path)


def _unlink_quietly(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


# --- node-level helpers ---------------------------------------------------------------


def _owner_is_alive(directory: str) -> Optional[bool]:
    """True/False from ``owner.pid``; None if the directory has no readable owner file."""
    try:
        with open(os.path.join(directory, OWNER_FILE)) as f:
            fields = f.read().split()
        pid = int(fields[0])
        create_time = float(fields[1]) if len(fields) > 1 else None
    except (OSError, ValueError, IndexError):
        return None
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 1.0:
            return False  # the pid was reused by another process
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def sweep_stale(prefix: str = DEFAULT_SHM_ROOT + "/" + STORE_DIR_PREFIX) -> list[str]:
    """Remove store directories whose owning daemon is dead; returns what was removed.

    Directories without an ``owner.pid`` (for example one being created right now)
    are left alone.
    """
    parent, base = os.path.split(prefix)
    try:
        names = sorted(os.listdir(parent or "."))
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        path = os.path.join(parent, name)
        if not name.startswith(base) or not os.path.isdir(path) or os.path.islink(path):
            continue
        if _owner_is_alive(path) is False:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _cgroup_memory_limit_bytes() -> Optional[int]:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None


def system_memory_bytes() -> int:
    """Total memory, or the container's cgroup limit when that is lower."""
    total = int(psutil.virtual_memory().total)
    limit = _cgroup_memory_limit_bytes()
    return min(total, limit) if limit is not None else total


def default_capacity_bytes(shm_root: str = DEFAULT_SHM_ROOT) -> int:
    """Ray's rule: 30% of system memory (75 MB .. 200 GB), capped by free /dev/shm.

    The cap keeps ``max(64 MiB, 5% of the tmpfs)`` free for other users of /dev/shm.
    """
    capacity = int(system_memory_bytes() * OBJECT_STORE_MEMORY_FRACTION)
    capacity = max(OBJECT_STORE_MIN_BYTES, min(capacity, OBJECT_STORE_MAX_BYTES))
    try:
        usage = shutil.disk_usage(shm_root)
    except OSError:
        return capacity
    margin = max(SHM_MARGIN_MIN_BYTES, int(usage.total * SHM_MARGIN_FRACTION))
    return max(0, min(capacity, usage.free - margin))
