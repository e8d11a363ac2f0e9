"""Node providers: create, terminate and list nodes with tags.  A cloud adds a module here and an entry in
PROVIDERS; the autoscaler only sees the NodeProvider interface (docs/autoscaler.md)."""
from __future__ import annotations

from .base import NodeProvider, ProviderNode
from .local import LocalNodeProvider
from .ssh import SSHNodeProvider

PROVIDERS = {"local": LocalNodeProvider, "ssh": SSHNodeProvider}


def make_provider(provider_config: dict, **kwargs) -> NodeProvider:
    kind = provider_config.get("type")
    if kind not in PROVIDERS:
        raise ValueError(f"provider.type {kind!r} is not supported here (known: {', '.join(sorted(PROVIDERS))})")
    return PROVIDERS[kind](provider_config, **kwargs)


__all__ = ["NodeProvider", "ProviderNode", "make_provider", "PROVIDERS"]
