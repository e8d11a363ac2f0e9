"""Packing a local directory into a content-addressed zip, and unpacking it once per node.

Rule 1: a package is named by the hash of its bytes (``gcs://_ember_pkg_<sha256>.zip``), so
the same directory is uploaded once and unpacked once per node, whoever asks for it.
Rule 2: unpacking goes to a temporary directory that is renamed into place, so a reader never
sees half a package; a member whose path would leave the target (zip slip) is refused.
"""
from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import re
import shutil
import tempfile
import zipfile
from typing import Iterable, Optional

from ember.shells.wire import session

URI_PREFIX = "gcs://_ember_pkg_"
KV_NAMESPACE = "_ember_packages"  # the control store KV namespace holding uploaded packages
PACKAGE_MAX_BYTES = int(os.environ.get("EMBER_RUNTIME_ENV_PACKAGE_MAX_BYTES", str(100 * 1024 * 1024)))
_ALWAYS_EXCLUDED = (".git", "__pycache__", ".venv", "*.pyc")


class PackageError(ValueError):
    """A working_dir / py_modules path that cannot be packed (missing, too large, bad zip)."""


def _gitignore_patterns(root: str) -> list[str]:
    try:
        with open(os.path.join(root, ".gitignore")) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [ln.strip().rstrip("/") for ln in lines if ln.strip() and not ln.startswith(("#", "!"))]


def _is_excluded(rel: str, patterns: Iterable[str]) -> bool:
    parts = rel.split("/")
    for pat in patterns:
        pat = pat.lstrip("/")
        if fnmatch.fnmatch(rel, pat) or any(fnmatch.fnmatch(p, pat) for p in parts):
            return True
        if rel.startswith(pat.rstrip("/") + "/"):
            return True
    return False


def pack_dir(path: str, excludes: Optional[list[str]] = None, max_bytes: int = PACKAGE_MAX_BYTES) -> bytes:
    """Zip ``path`` (skipping ``excludes``, its .gitignore, .git and caches) deterministically."""
    if not os.path.isdir(path):
        raise PackageError(f"working_dir {path!r} is not a directory")
    patterns = [*_ALWAYS_EXCLUDED, *(excludes or []), *_gitignore_patterns(path)]
    files: list[tuple[str, str]] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        rel_dir = os.path.relpath(dirpath, path).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not _is_excluded(rel_dir + d, patterns))
        for name in sorted(filenames):
            rel = rel_dir + name
            full = os.path.join(dirpath, name)
            if _is_excluded(rel, patterns) or not os.path.isfile(full):
                continue
            total += os.path.getsize(full)
            if total > max_bytes:
                raise PackageError(f"working_dir {path!r} is over the size limit of {max_bytes} bytes "
                                   "(exclude large files with runtime_env['excludes'] or .gitignore)")
            files.append((rel, full))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, full in files:
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (os.stat(full).st_mode & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(full, "rb") as f:
                zf.writestr(info, f.read())
    return buf.getvalue()


def read_zip(path: str, max_bytes: int = PACKAGE_MAX_BYTES) -> bytes:
    if os.path.getsize(path) > max_bytes:
        raise PackageError(f"{path!r} is over the size limit of {max_bytes} bytes")
    with open(path, "rb") as f:
        data = f.read()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise PackageError(f"{path!r} is not a zip file")
    return data


def package_uri(data: bytes) -> str:
    return f"{URI_PREFIX}{hashlib.sha256(data).hexdigest()[:32]}.zip"


_URI_RE = re.compile(r"^gcs://_ember_pkg_[0-9a-f]{32}\.zip$")


def is_package_uri(value: object) -> bool:
    """A name ``package_uri`` could have made (so it is safe as a path component)."""
    return isinstance(value, str) and _URI_RE.match(value) is not None


def pack_local(path: str, excludes: Optional[list[str]] = None) -> tuple[str, bytes]:
    """(uri, zip bytes) of a local directory or .zip file."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(path):
        raise PackageError(f"working_dir {path!r} does not exist")
    data = read_zip(path) if path.endswith(".zip") and os.path.isfile(path) else pack_dir(path, excludes)
    return package_uri(data), data


def resources_root() -> str:
    return os.path.join(session.ensure_root(), "runtime_resources")


def unpacked_path(uri: str, root: Optional[str] = None) -> str:
    name = uri[len("gcs://"):-len(".zip")]
    return os.path.join(root or resources_root(), "packages", name)


def unpack(uri: str, data: bytes, root: Optional[str] = None) -> str:
    """The directory holding package ``uri``, unpacked from ``data`` unless already there."""
    dest = unpacked_path(uri, root)
    if os.path.isdir(dest):
        return dest
    if package_uri(data) != uri:
        raise PackageError(f"package {uri} does not match its content hash")
    parent = os.path.dirname(dest)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".unpack-", dir=parent)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for member in zf.infolist():
                target = os.path.realpath(os.path.join(tmp, member.filename))
                if not target.startswith(os.path.realpath(tmp) + os.sep):
                    raise PackageError(f"package {uri} holds a path outside itself: {member.filename!r}")
                zf.extract(member, tmp)
                mode = (member.external_attr >> 16) & 0o777
                if mode and not member.is_dir():
                    os.chmod(target, mode)
        try:
            os.rename(tmp, dest)
        except OSError:  # another process unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest

