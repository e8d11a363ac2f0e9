"""An actor's creation spec as the opaque bytes the control store keeps and hands to the worker."""
from __future__ import annotations

from ember.protocol import messages
from ember.protocol.codec import KIND_ONEWAY, decode, encode


def decode_creation_spec(data: bytes) -> messages.ActorCreationSpec:
    _, _, spec = decode(data)
    if not isinstance(spec, messages.ActorCreationSpec):
        raise ValueError("creation_spec is not an ActorCreationSpec")
    return spec


def encode_creation_spec(spec: messages.ActorCreationSpec) -> bytes:
    return encode(KIND_ONEWAY, 0, spec)
