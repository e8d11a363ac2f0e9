"""One node's shared-memory objects: one file per object under /dev/shm.

Layout: ``/dev/shm/ember-<session>-<node8>/<object id hex>``, plus ``owner.pid``
(``"<pid> <create_time>"`` of the node daemon) so a later daemon can sweep the
directories of daemons that died without cleaning up.

An object is written to ``<hex>.<pid>.tmp`` and renamed to ``<hex>`` when sealed, so
readers only ever see complete objects.  Readers map the file read-only; the
memoryview returned by :meth:`ShmStore.open` keeps the mapping alive, and a
deleted (unlinked) object stays readable by whoever mapped it.

Recycling.  Every reader's mapping holds a shared ``flock`` on its file (taken on the
descriptor that the mmap object keeps, so it lasts exactly as long as the mapping and
the kernel drops it when the process dies).  The node daemon turns a freed object's
file into a pooled file ``pool.<n>`` only when it gets the exclusive lock, i.e. when no
process maps it; a reader that opened the file just before checks, once it holds its
lock, that the path still names the same inode.  A writer handed a pooled file
(renamed to ``<hex>.r<n>.tmp``) resizes it and writes into pages that are already in
memory, through a mapping it keeps for the next time it gets the same file.  Files
that are deleted while nobody maps them are truncated first, so that no writer's
kept mapping can hold their pages.

Accounting (capacity, pins, what to spill) is not here: it is the pure
``ember.logic.node.object_table.ObjectTable``.  This module only moves bytes.
"""
from __future__ import annotations

import fcntl
import mmap
import os
import shutil
import threading
from collections import OrderedDict
from typing import Optional, Union

import psutil

from ember.shells.shared.serialization import SerializedObject

__all__ = [
    "ShmStore",
    "PendingObject",
    "node_store_directory",
    "node_spill_directory",
    "create_owned_dir",
    "sweep_stale",
    "default_capacity_bytes",
    "capped_capacity_bytes",
    "shm_room_bytes",
    "map_spill_file",
    "DEFAULT_SHM_ROOT",
    "STORE_DIR_PREFIX",
    "SPILL_DIR_PREFIX",
]

DEFAULT_SHM_ROOT = "/dev/shm"
STORE_DIR_PREFIX = "ember-"
SPILL_DIR_PREFIX = "ember-spill-"
OWNER_FILE = "owner.pid"
_TMP_SUFFIX = ".tmp"
POOL_PREFIX = "pool."
# A writer keeps this many mappings of recycled files (LRU); below this size it just
# pwrites into them (mapping costs more than the copy).
WRITE_MAPPINGS_MAX = 16
WRITE_MAPPING_MIN_BYTES = 1024 * 1024

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


_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


class PendingObject:
    """An object being written in place (e.g. by a transfer), not yet visible."""

    def __init__(self, object_id: bytes, tmp_path: str, fd: int, size_bytes: int) -> None:
        self.object_id = object_id
        self.tmp_path = tmp_path
        self.size_bytes = size_bytes
        self._fd = fd
        self._mmap: Optional[mmap.mmap] = None
        self._view: Optional[memoryview] = None
        self.is_populated = False  # map with MAP_POPULATE: fill page tables up front (transfers)

    @property
    def fd(self) -> int:
        """The open file (to splice into, or pwrite)."""
        return self._fd

    @property
    def buffer(self) -> memoryview:
        """A writable view of the whole object (mapped on first use)."""
        if self._view is None:
            if self.size_bytes == 0:
                self._view = memoryview(bytearray(0))
            else:
                flags = mmap.MAP_SHARED | (_MAP_POPULATE if self.is_populated else 0)
                self._mmap = mmap.mmap(self._fd, self.size_bytes, flags=flags)
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


class _WriteMappings:
    """A writer's writable mappings of recycled files, by inode, most recent last.

    Writing through a mapping whose page tables are already filled runs at memcpy
    speed; pwrite into the same (resident) pages is ~3x slower, and a fresh mapping
    pays a fault per page.  An entry whose file was deleted (no links) or emptied is
    dropped by ``prune``.  Used from user threads and the I/O thread: locked.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, int], tuple[int, mmap.mmap]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def view(self, fd: int, size_bytes: int) -> memoryview:
        """A writable view of the first ``size_bytes`` of the file open as ``fd``."""
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None and len(entry[1]) < size_bytes:
                _close_mapping(*entry)
                entry = None
            if entry is None:
                flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
                mapping = mmap.mmap(fd, size_bytes, flags=flags)
                entry = (os.dup(fd), mapping)
            self._entries[key] = entry
            while len(self._entries) > WRITE_MAPPINGS_MAX:
                _close_mapping(*self._entries.popitem(last=False)[1])
        return memoryview(entry[1])[:size_bytes]

    def prune(self) -> int:
        """Drop mappings of deleted or emptied files; returns how many are kept."""
        with self._lock:
            for key, (fd, mapping) in list(self._entries.items()):
                st = os.fstat(fd)
                if st.st_nlink == 0 or st.st_size == 0:
                    del self._entries[key]
                    _close_mapping(fd, mapping)
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            for fd, mapping in self._entries.values():
                _close_mapping(fd, mapping)
            self._entries.clear()


def _close_mapping(fd: int, mapping: mmap.mmap) -> None:
    try:
        mapping.close()
    except BufferError:  # a view is still exported: the GC unmaps it later
        pass
    os.close(fd)


class ShmStore:
    """Files of one node's objects in one directory (normally on tmpfs)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._pending: dict[bytes, PendingObject] = {}
        self.write_mappings = _WriteMappings()

    # --- directory ---------------------------------------------------------------
    def create_dir(self) -> None:
        """Create the directory and record this process as its owner."""
        create_owned_dir(self.directory)

    def remove_dir(self) -> None:
        """Remove the directory and every object in it."""
        for pending in list(self._pending.values()):
            pending.close()
        self._pending.clear()
        self.write_mappings.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    # --- paths --------------------------------------------------------------------
    def _path(self, object_id: bytes) -> str:
        return os.path.join(self.directory, object_id.hex())

    def _tmp_path(self, object_id: bytes) -> str:
        return os.path.join(self.directory, f"{object_id.hex()}.{os.getpid()}{_TMP_SUFFIX}")

    def _pool_path(self, file_id: int) -> str:
        return os.path.join(self.directory, f"{POOL_PREFIX}{file_id}")

    def path_of(self, object_id: bytes) -> str:
        """Where the sealed object lives (whether or not it exists)."""
        return self._path(object_id)

    # --- writing ----------------------------------------------------------------------
    def _open_tmp(self, object_id: bytes, size_bytes: int,
                  recycled_name: str = "") -> tuple[str, int, bool]:
        """Open the file to write: the recycled one the node daemon named (kept, not
        truncated, so its pages stay) or a new one.  Returns (path, fd, is_recycled)."""
        fd = -1
        if recycled_name:
            tmp = os.path.join(self.directory, os.path.basename(recycled_name))
            try:
                fd = os.open(tmp, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = -1
        is_recycled = fd >= 0
        if not is_recycled:
            tmp = self._tmp_path(object_id)
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            old_size_bytes = os.fstat(fd).st_size if is_recycled else 0
            os.ftruncate(fd, size_bytes)
            if is_recycled and size_bytes > old_size_bytes:
                # Allocate the grown part now: a full /dev/shm is then ENOSPC here, not a
                # SIGBUS when the kept mapping writes there.
                os.posix_fallocate(fd, old_size_bytes, size_bytes - old_size_bytes)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        return tmp, fd, is_recycled

    def _write_parts(self, object_id: bytes, parts: list[Union[bytes, memoryview]],
                     size_bytes: int, recycled_name: str = "") -> int:
        tmp, fd, is_recycled = self._open_tmp(object_id, size_bytes, recycled_name)
        try:
            if is_recycled and size_bytes >= WRITE_MAPPING_MIN_BYTES:
                _copy_parts(self.write_mappings.view(fd, size_bytes), parts)
            else:
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

    def write(self, object_id: bytes, obj: SerializedObject, recycled_name: str = "") -> int:
        """Write and seal a serialized object; returns its size in bytes.

        A new file is filled with pwrite (on tmpfs about twice as fast as faulting in
        a fresh mapping); a recycled one (``recycled_name``, from the node daemon)
        through a kept mapping, see docs/object_store.md.
        """
        if len(self.write_mappings):
            self.write_mappings.prune()
        return self._write_parts(object_id, obj.chunks(), obj.total_bytes, recycled_name)

    def write_bytes(self, object_id: bytes, data: Buffer, recycled_name: str = "") -> int:
        """Write and seal an already-encoded object (e.g. received whole)."""
        return self._write_parts(object_id, [memoryview(data)], memoryview(data).nbytes,
                                 recycled_name)

    def create_for_write(self, object_id: bytes, size_bytes: int,
                         recycled_name: str = "") -> PendingObject:
        """Start an object to be filled in place; ``seal`` makes it visible."""
        if object_id in self._pending:
            raise ValueError(f"object {object_id.hex()} is already being written")
        tmp, fd, _ = self._open_tmp(object_id, size_bytes, recycled_name)
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
        """A read-only view of a sealed object (kept mapped while referenced), or None.

        The mapping holds a shared flock on the file for as long as it lives, so the
        node daemon never recycles a file someone reads (see the module docstring).
        """
        path = self._path(object_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            st = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                return None  # recycled or deleted between our open and our lock
            if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
                return None
            if st.st_size == 0:
                return memoryview(b"")
            return memoryview(mmap.mmap(fd, 0, access=mmap.ACCESS_READ))  # keeps a dup: the lock
        finally:
            os.close(fd)

    def open_fd(self, object_id: bytes) -> Optional[int]:
        """A read-only descriptor of a sealed object holding a shared flock (as ``open``, so
        the file is not recycled while it is read), or None; the caller closes it.  Used
        to ``sendfile`` an object to another node without mapping it."""
        path = self._path(object_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            st = os.fstat(fd)
            now = os.stat(path)
            if (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
                fd, kept = -1, fd
                return kept
            return None
        except FileNotFoundError:
            return None  # recycled or deleted between our open and our lock
        finally:
            if fd >= 0:
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
        """Unlink a sealed object; processes that mapped it keep their pages.  When
        nobody maps it, it is emptied first (a writer's kept mapping holds no pages)."""
        return _delete_file(self._path(object_id))

    # --- recycling -------------------------------------------------------------------------
    def recycle(self, object_id: bytes, file_id: int) -> bool:
        """Make a freed object's file pooled file ``file_id`` if no process maps it;
        otherwise delete it (readers keep their pages).  True when pooled."""
        path = self._path(object_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                _unlink_quietly(path)
                return False
            os.rename(path, self._pool_path(file_id))
            return True
        finally:
            os.close(fd)

    def take_pool_file(self, file_id: int, object_id: bytes) -> str:
        """Rename pooled file ``file_id`` for a writer of ``object_id``; returns the
        name to hand the writer (``<hex>.r<n>.tmp``), or "" if the file is gone."""
        name = f"{object_id.hex()}.r{file_id}{_TMP_SUFFIX}"
        try:
            os.rename(self._pool_path(file_id), os.path.join(self.directory, name))
        except FileNotFoundError:
            return ""
        return name

    def trim_pool_file(self, file_id: int) -> bool:
        """Delete pooled file ``file_id`` (emptied first: writers may keep it mapped)."""
        return _delete_file(self._pool_path(file_id))

    def list_pool_files(self) -> list[int]:
        """Numbers of the pooled files in the directory, sorted."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(int(n[len(POOL_PREFIX):]) for n in names
                      if n.startswith(POOL_PREFIX) and n[len(POOL_PREFIX):].isdigit())

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


def _delete_file(path: str) -> bool:
    """Unlink ``path``; empty it first when no reader holds its lock, so that its pages
    are freed even if a writer still maps it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
        except BlockingIOError:
            pass  # a reader maps it: it keeps the pages
        return _unlink_quietly(path)
    finally:
        os.close(fd)


def _copy_parts(view: memoryview, parts: list[Union[bytes, memoryview]]) -> None:
    """Copy consecutive pieces into ``view`` (every byte written: padding included)."""
    offset = 0
    try:
        for part in parts:
            src = memoryview(part)
            if src.format != "B" or src.ndim != 1:
                src = src.cast("B")
            view[offset:offset + src.nbytes] = src
            offset += src.nbytes
    finally:
        view.release()


def map_spill_file(path: str) -> Optional[memoryview]:
    """A read-only view of a spilled object's file (on disk: its pages are page cache, not
    shared memory), or None if it is gone.  Spill files are never recycled (only deleted,
    which leaves a mapping valid), so no lock is taken."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if os.fstat(fd).st_size == 0:
            return memoryview(b"")
        return memoryview(mmap.mmap(fd, 0, access=mmap.ACCESS_READ))
    finally:
        os.close(fd)


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


def shm_room_bytes(shm_root: str = DEFAULT_SHM_ROOT) -> Optional[int]:
    """Free bytes of the tmpfs at ``shm_root`` less 5% of its size (left to others), or
    None when it cannot be measured."""
    try:
        usage = shutil.disk_usage(shm_root)
    except OSError:
        return None
    return max(0, usage.free - int(usage.total * SHM_MARGIN_FRACTION))


def capped_capacity_bytes(requested_bytes: int, shm_root: str = DEFAULT_SHM_ROOT) -> tuple[int, str]:
    """The capacity a node can really hold in ``shm_root``, and a warning when it is less
    than ``requested_bytes`` (0: ``default_capacity_bytes``, which is capped already).

    A configured capacity above what the tmpfs can hold would let puts fail with a raw
    ENOSPC; it is capped at the free bytes of the tmpfs, less 5% of its size for others.
    """
    if not requested_bytes:
        return default_capacity_bytes(shm_root), ""
    room = shm_room_bytes(shm_root)
    if room is None or requested_bytes <= room:
        return requested_bytes, ""
    return room, (f"the object store was asked for {requested_bytes} bytes but {shm_root} has only "
                  f"{room} bytes to spare; using {room} bytes. Make {shm_root} larger "
                  f"(e.g. docker --shm-size) or set EMBER_SHM_DIR to a larger tmpfs.")
