"""The error a node's object store answers a request it cannot serve with."""
from __future__ import annotations

from typing import Optional

__all__ = ["StoreError"]


class StoreError(Exception):
    """A request the store cannot serve; ``kind`` is the error kind sent to the caller."""

    def __init__(self, kind: str, message: str, data: Optional[bytes] = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.data = data
