"""Values <-> bytes: cloudpickle with pickle protocol 5 out-of-band buffers.

``serialize(value)`` returns a :class:`SerializedObject`: the pickle stream
(``metadata``), the large buffers that travel out-of-band (numpy arrays, big
bytes/bytearray, memoryviews, pyarrow buffers) and every :class:`ObjectRef` met
while pickling (``contained_refs``, for borrower bookkeeping).

Contiguous layout written by ``write_to``/``to_bytes`` and read by ``deserialize``
(all integers little-endian)::

    offset 0   magic  b"EMB1"              4 bytes
    offset 4   num_buffers                 u32
    offset 8   metadata_size_bytes         u64
    offset 16  num_buffers x (offset u64, size_bytes u64)
    ...        metadata (the pickle stream)
    ...        each buffer, starting at a multiple of 64 bytes

``deserialize`` hands pickle memoryview slices of its input as the out-of-band
buffers, so a numpy array read from a read-only shared-memory mapping is a
read-only view of that mapping (zero copy).

Small values made only of obvious builtins skip cloudpickle and take plain
``pickle.dumps`` (about 0.2 us).  Registrations of custom serializers are
process-local.
"""
from __future__ import annotations

import io
import pickle
import struct
import types
from typing import Any, Callable, Iterator, Optional, Union

import cloudpickle

from ember.object_ref import ObjectRef

__all__ = [
    "SerializedObject",
    "serialize",
    "deserialize",
    "register_serializer",
    "deregister_serializer",
    "can_pickle",
    "pickle_error",
    "short_repr",
    "children_of",
    "find_unpicklable",
    "OOB_BYTES_THRESHOLD_BYTES",
    "BUFFER_ALIGNMENT_BYTES",
]

MAGIC = b"EMB1"
BUFFER_ALIGNMENT_BYTES = 64
# bytes/bytearray at least this large travel out-of-band instead of inside the stream.
OOB_BYTES_THRESHOLD_BYTES = 64 * 1024

_HEADER = struct.Struct("<4sIQ")
_HEADER_SIZE_BYTES = _HEADER.size  # 16
_ENTRY = struct.Struct("<QQ")
_ENTRY_SIZE_BYTES = _ENTRY.size  # 16
_PADDING = bytes(BUFFER_ALIGNMENT_BYTES)

# The plain-pickle fast path: small builtin trees only.
_PLAIN_SCALARS = frozenset({type(None), bool, int, float, str, complex})
_PLAIN_MAX_LEN = 64
_PLAIN_MAX_DEPTH = 3
# How wide the scan for big bytes inside top-level containers goes (wider containers
# keep their bytes in-band: scanning costs ~50 ns per element on every call).
_WRAP_SCAN_MAX_LEN = 64
_BLOB_TYPES = frozenset({bytes, bytearray})

# cls -> (serializer, deserializer)
_custom_serializers: dict[type, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {}
_BUILTIN_TYPES_REFUSED = frozenset(
    {type(None), bool, int, float, str, complex, bytes, bytearray, list, tuple, dict,
     set, frozenset, type, types.FunctionType}
)


def _align(offset: int) -> int:
    return (offset + BUFFER_ALIGNMENT_BYTES - 1) & ~(BUFFER_ALIGNMENT_BYTES - 1)


class SerializedObject:
    """A pickled value: metadata stream + out-of-band buffers + refs met inside."""

    __slots__ = ("metadata", "buffers", "contained_refs", "_layout")

    def __init__(
        self,
        metadata: bytes,
        buffers: Optional[list[Union[pickle.PickleBuffer, memoryview]]] = None,
        contained_refs: Optional[list[ObjectRef]] = None,
    ) -> None:
        self.metadata = metadata
        self.buffers: list[Union[pickle.PickleBuffer, memoryview]] = buffers if buffers is not None else []
        self.contained_refs: list[ObjectRef] = contained_refs if contained_refs is not None else []
        self._layout: Optional[tuple[int, list[tuple[int, memoryview]]]] = None

    def __repr__(self) -> str:
        return (f"SerializedObject(metadata={len(self.metadata)}B, buffers={len(self.buffers)}, "
                f"refs={len(self.contained_refs)}, total_bytes={self.total_bytes})")

    def _compute_layout(self) -> tuple[int, list[tuple[int, memoryview]]]:
        if self._layout is None:
            offset = _HEADER_SIZE_BYTES + _ENTRY_SIZE_BYTES * len(self.buffers) + len(self.metadata)
            placed: list[tuple[int, memoryview]] = []
            for buf in self.buffers:
                raw = _raw_view(buf)
                offset = _align(offset)
                placed.append((offset, raw))
                offset += raw.nbytes
            self._layout = (offset, placed)
        return self._layout

    @property
    def total_bytes(self) -> int:
        """Size of the contiguous encoding (``len(self.to_bytes())``)."""
        if not self.buffers:
            return _HEADER_SIZE_BYTES + len(self.metadata)
        return self._compute_layout()[0]

    def _header_bytes(self) -> bytes:
        if not self.buffers:
            return _HEADER.pack(MAGIC, 0, len(self.metadata))
        _, placed = self._compute_layout()
        parts = [_HEADER.pack(MAGIC, len(placed), len(self.metadata))]
        parts.extend(_ENTRY.pack(off, raw.nbytes) for off, raw in placed)
        return b"".join(parts)

    def write_to(self, buf: memoryview) -> None:
        """Write the contiguous encoding into ``buf`` (at least ``total_bytes`` long)."""
        total = self.total_bytes
        if buf.nbytes < total:
            raise ValueError(f"buffer of {buf.nbytes} bytes is too small for {total} bytes")
        if buf.format != "B" or buf.ndim != 1:
            buf = buf.cast("B")
        head = self._header_bytes()
        pos = len(head)
        buf[:pos] = head
        meta_end = pos + len(self.metadata)
        buf[pos:meta_end] = self.metadata
        if self.buffers:
            for offset, raw in self._compute_layout()[1]:
                buf[offset:offset + raw.nbytes] = raw

    def chunks(self) -> list[Union[bytes, memoryview]]:
        """The contiguous encoding as consecutive pieces (for writev-style output)."""
        parts: list[Union[bytes, memoryview]] = [self._header_bytes(), self.metadata]
        if self.buffers:
            pos = _HEADER_SIZE_BYTES + _ENTRY_SIZE_BYTES * len(self.buffers) + len(self.metadata)
            for offset, raw in self._compute_layout()[1]:
                if offset > pos:
                    parts.append(_PADDING[: offset - pos])
                parts.append(raw)
                pos = offset + raw.nbytes
        return parts

    def to_bytes(self) -> bytes:
        """The contiguous encoding as one bytes object (for values sent inline)."""
        if not self.buffers:
            return _HEADER.pack(MAGIC, 0, len(self.metadata)) + self.metadata
        return b"".join(self.chunks())


def _raw_view(buf: Union[pickle.PickleBuffer, memoryview]) -> memoryview:
    if isinstance(buf, pickle.PickleBuffer):
        try:
            return buf.raw()
        except BufferError:  # not contiguous: pickle never hands us these, be safe
            return memoryview(memoryview(buf).tobytes())
    mv = memoryview(buf)
    if mv.contiguous:
        return mv.cast("B") if (mv.format != "B" or mv.ndim != 1) else mv
    return memoryview(mv.tobytes())


# --- pickling -----------------------------------------------------------------


class _OutOfBand:
    """Marks a big bytes/bytearray so the pickler sends it as a PickleBuffer."""

    __slots__ = ("data",)

    def __init__(self, data: Union[bytes, bytearray]) -> None:
        self.data = data


def _rebuild_memoryview(buf: Any) -> memoryview:
    return memoryview(buf)


class _Pickler(cloudpickle.CloudPickler):
    """cloudpickle + ObjectRef collection + custom serializers + out-of-band blobs."""

    def __init__(self, file: io.BytesIO, refs: list[ObjectRef],
                 buffer_callback: Callable[[pickle.PickleBuffer], Any]) -> None:
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)
        self._refs = refs

    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        if cls is ObjectRef or isinstance(obj, ObjectRef):
            self._refs.append(obj)
            return obj.__reduce__()
        if _custom_serializers:
            entry = _custom_serializers.get(cls)
            if entry is not None:
                serializer, deserializer = entry
                return (deserializer, (serializer(obj),))
        if cls is _OutOfBand:
            data = obj.data
            return (type(data), (pickle.PickleBuffer(data),))
        if cls is memoryview:
            if obj.contiguous:
                return (_rebuild_memoryview, (pickle.PickleBuffer(obj),))
            return (_rebuild_memoryview, (obj.tobytes(),))
        return super().reducer_override(obj)


def _is_plain(value: Any, depth: int, refs: list[ObjectRef]) -> bool:
    """True for small trees of builtins and ObjectRefs (collected into ``refs``)."""
    cls = type(value)
    if cls in _PLAIN_SCALARS:
        return True
    if cls is bytes:
        return len(value) < OOB_BYTES_THRESHOLD_BYTES
    if cls is ObjectRef:
        refs.append(value)
        return True
    if depth == 0:
        return False
    if cls is tuple or cls is list:
        if len(value) > _PLAIN_MAX_LEN:
            return False
        for item in value:
            if not _is_plain(item, depth - 1, refs):
                return False
        return True
    if cls is dict:
        if len(value) > _PLAIN_MAX_LEN:
            return False
        for key, item in value.items():
            if not (_is_plain(key, 0, refs) and _is_plain(item, depth - 1, refs)):
                return False
        return True
    return False


def _is_big_blob(value: Any) -> bool:
    return type(value) in _BLOB_TYPES and len(value) >= OOB_BYTES_THRESHOLD_BYTES


def _wrap_big_blobs(value: Any) -> Any:
    """Mark big bytes/bytearray at the top level or one container level down.

    The C pickler writes bytes and bytearray in-band without asking any hook, so
    they are swapped for a marker the pickler turns into a PickleBuffer.
    """
    cls = type(value)
    if cls is bytes or cls is bytearray:
        return _OutOfBand(value) if len(value) >= OOB_BYTES_THRESHOLD_BYTES else value
    if (cls is tuple or cls is list) and len(value) <= _WRAP_SCAN_MAX_LEN:
        if any(_is_big_blob(item) for item in value):
            return cls(_OutOfBand(v) if _is_big_blob(v) else v for v in value)
    elif cls is dict and len(value) <= _WRAP_SCAN_MAX_LEN:
        if any(_is_big_blob(item) for item in value.values()):
            return {k: (_OutOfBand(v) if _is_big_blob(v) else v) for k, v in value.items()}
    return value


def _pickle_full(value: Any) -> SerializedObject:
    buffers: list[Union[pickle.PickleBuffer, memoryview]] = []
    refs: list[ObjectRef] = []
    file = io.BytesIO()
    _Pickler(file, refs, buffers.append).dump(_wrap_big_blobs(value))
    if len(refs) > 1:
        refs = list(dict.fromkeys(refs))  # unique by object id, first-seen order
    return SerializedObject(file.getvalue(), buffers, refs)


def serialize(value: Any, *, what: str = "the argument") -> SerializedObject:
    """Pickle ``value``; raises TypeError naming the unpicklable part.

    ``what`` names the value in error messages ("the argument", "the return value",
    "the put value", ...).
    """
    cls = type(value)
    if cls in _PLAIN_SCALARS or (cls is bytes and len(value) < OOB_BYTES_THRESHOLD_BYTES):
        return SerializedObject(pickle.dumps(value, 5))
    refs: list[ObjectRef] = []
    if _is_plain(value, _PLAIN_MAX_DEPTH, refs):
        # ObjectRef.__reduce__ names an importable function: plain pickle is enough.
        return SerializedObject(pickle.dumps(value, 5), None,
                                list(dict.fromkeys(refs)) if len(refs) > 1 else refs)
    try:
        return _pickle_full(value)
    except Exception as exc:  # noqa: BLE001 - every pickling failure is re-described
        raise TypeError(_describe_failure(value, what, exc)) from exc


def deserialize(buf: Union[memoryview, bytes, bytearray]) -> Any:
    """Rebuild a value from the contiguous layout; buffers are slices of ``buf``."""
    if type(buf) is not memoryview:
        buf = memoryview(buf)
    if buf.format != "B" or buf.ndim != 1:
        buf = buf.cast("B")
    try:
        magic, num_buffers, metadata_size_bytes = _HEADER.unpack_from(buf, 0)
    except struct.error:
        raise ValueError("truncated serialized object") from None
    if magic != MAGIC:
        raise ValueError(f"not a serialized ember object (magic {bytes(magic)!r})")
    start = _HEADER_SIZE_BYTES + _ENTRY_SIZE_BYTES * num_buffers
    if start + metadata_size_bytes > buf.nbytes:
        raise ValueError("truncated serialized object")
    metadata = buf[start:start + metadata_size_bytes]
    if num_buffers == 0:
        return pickle.loads(metadata)
    oob: list[memoryview] = []
    for i in range(num_buffers):
        offset, size_bytes = _ENTRY.unpack_from(buf, _HEADER_SIZE_BYTES + _ENTRY_SIZE_BYTES * i)
        if offset + size_bytes > buf.nbytes:
            raise ValueError("truncated serialized object")
        oob.append(buf[offset:offset + size_bytes])
    return pickle.loads(metadata, buffers=oob)


# --- custom serializers ---------------------------------------------------------


def register_serializer(cls: type, *, serializer: Callable[[Any], Any],
                        deserializer: Callable[[Any], Any]) -> None:
    """Use ``deserializer(serializer(obj))`` for instances of exactly ``cls``."""
    if not isinstance(cls, type):
        raise TypeError(f"register_serializer needs a class, got {cls!r}")
    if cls in _BUILTIN_TYPES_REFUSED:
        raise ValueError(f"cannot register a serializer for the builtin type {cls.__name__}")
    if not callable(serializer) or not callable(deserializer):
        raise TypeError("serializer and deserializer must be callable")
    _custom_serializers[cls] = (serializer, deserializer)


def deregister_serializer(cls: type) -> None:
    """Forget a registration; a class never registered is ignored."""
    _custom_serializers.pop(cls, None)


# --- finding what does not pickle ------------------------------------------------


def _discard_buffer(_buf: pickle.PickleBuffer) -> bool:
    return False  # keep it out-of-band, copy nothing


def pickle_error(obj: Any) -> Optional[str]:
    """None if ember's pickler accepts ``obj``, else the error text.

    Big buffers are kept out-of-band and discarded, so nothing large is copied.
    """
    try:
        _Pickler(io.BytesIO(), [], _discard_buffer).dump(obj)
        return None
    except Exception as exc:  # noqa: BLE001
        return str(exc) or type(exc).__name__


def can_pickle(obj: Any) -> bool:
    """True if ember's pickler accepts ``obj``."""
    return pickle_error(obj) is None


def _function_globals(func: types.FunctionType) -> Iterator[str]:
    seen: set[str] = set()
    codes = [func.__code__]
    while codes:
        code = codes.pop()
        for name in code.co_names:
            if name in func.__globals__ and name not in seen:
                seen.add(name)
                yield name
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))


def children_of(obj: Any, limit: int = 1000) -> Iterator[tuple[str, str, Any]]:
    """The parts pickling ``obj`` pickles: (kind, name, child) triples.

    kind is one of "closure variable", "global variable", "attribute", "element",
    "key", "value", "bound object".
    """
    if isinstance(obj, types.FunctionType):
        if obj.__closure__:
            for var, cell in zip(obj.__code__.co_freevars, obj.__closure__):
                try:
                    yield "closure variable", var, cell.cell_contents
                except ValueError:  # empty cell
                    continue
        if obj.__module__ == "__main__" or not _importable(obj):
            for name in _function_globals(obj):
                yield "global variable", name, obj.__globals__[name]
        return
    if isinstance(obj, types.MethodType):
        yield "bound object", "__self__", obj.__self__
        yield "attribute", "__func__", obj.__func__
        return
    if isinstance(obj, dict):
        for i, (key, item) in enumerate(obj.items()):
            if i >= limit:
                return
            yield "key", repr(key), key
            yield "value", repr(key), item
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for i, item in enumerate(obj):
            if i >= limit:
                return
            yield "element", str(i), item
        return
    if isinstance(obj, type) or isinstance(obj, types.ModuleType):
        return
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict):
        for i, (name, item) in enumerate(attrs.items()):
            if i >= limit:
                return
            yield "attribute", str(name), item
    for slot in _slot_names(type(obj)):
        if hasattr(obj, slot):
            yield "attribute", slot, getattr(obj, slot)


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        names.extend(s for s in slots if s not in ("__dict__", "__weakref__"))
    return names


def _importable(func: types.FunctionType) -> bool:
    import sys
    module = sys.modules.get(func.__module__ or "")
    return module is not None and getattr(module, func.__qualname__, None) is func


def _label(parent: Any, kind: str, name: str) -> str:
    owner = getattr(parent, "__name__", None) if isinstance(parent, (types.FunctionType, type)) \
        else type(parent).__name__
    if kind in ("element", "key", "value"):
        noun = {"element": "element", "key": "key", "value": "value for key"}[kind]
        return f"{owner} {noun} {name}"
    return f"{owner} {kind} '{name}'"


def find_unpicklable(obj: Any, max_depth: int = 6) -> tuple[list[str], Any]:
    """Walk ``obj`` to the first part that fails to pickle.

    Returns (labels of the path, the failing object).  An empty path means
    ``obj`` itself is the deepest failing part found.
    """
    path: list[str] = []
    current = obj
    for _ in range(max_depth):
        for kind, name, child in children_of(current):
            if not can_pickle(child):
                path.append(_label(current, kind, name))
                current = child
                break
        else:
            break
    return path, current


def short_repr(obj: Any, limit: int = 80) -> str:
    try:
        text = repr(obj)
    except Exception:  # noqa: BLE001
        text = f"<{type(obj).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_failure(value: Any, what: str, exc: BaseException) -> str:
    try:
        path, leaf = find_unpicklable(value)
    except Exception:  # noqa: BLE001 - the walk is best effort
        path, leaf = [], value
    where = " -> ".join(path) if path else short_repr(leaf)
    return f"Could not serialize {what}: {where} of type {type(leaf)} cannot be pickled ({exc})"
