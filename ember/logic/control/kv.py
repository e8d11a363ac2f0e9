"""The control store's namespaced key-value table (functions, named things, user KV)."""
from __future__ import annotations


class KvTable:
    def __init__(self) -> None:
        self.data: dict[tuple[str, bytes], bytes] = {}

    def put(self, namespace: str, key: bytes, value: bytes, overwrite: bool) -> bool:
        k = (namespace, key)
        if k in self.data and not overwrite:
            return False
        self.data[k] = value
        return True

    def get(self, namespace: str, key: bytes) -> bytes | None:
        return self.data.get((namespace, key))

    def delete(self, namespace: str, key: bytes) -> bool:
        return self.data.pop((namespace, key), None) is not None

    def keys(self, namespace: str, prefix: bytes) -> list[bytes]:
        return sorted(k for ns, k in self.data if ns == namespace and k.startswith(prefix))
