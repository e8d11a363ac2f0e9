"""How many NVIDIA GPUs a node has, from what the machine shows (Ray's autodetection, as plain code).

The shell (``ember/shells/node/gpu_detect.py``) reads the facts; these functions only parse them:

1. ``CUDA_VISIBLE_DEVICES``, when set, is the answer (as in Ray): its entries are the node's GPUs
   (empty or ``NoDevFiles``: none);
2. else the entries of ``/proc/driver/nvidia/gpus/`` (one directory per GPU, by PCI address);
3. else the lines ``GPU <n>: <name> (UUID: ...)`` printed by ``nvidia-smi -L``.
"""
from __future__ import annotations

from typing import Optional


def visible_devices(value: Optional[str]) -> Optional[list[str]]:
    """The entries of ``CUDA_VISIBLE_DEVICES`` (None when it is not set)."""
    if value is None:
        return None
    value = value.strip()
    if value in ("", "NoDevFiles"):
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def count_proc_entries(names: list[str]) -> int:
    """GPUs listed under ``/proc/driver/nvidia/gpus`` (PCI addresses such as ``0000:3b:00.0``)."""
    return sum(1 for name in names if ":" in name)


def count_nvidia_smi_list(text: str) -> int:
    """GPUs in the output of ``nvidia-smi -L`` (MIG devices are listed indented and not counted)."""
    return sum(1 for line in text.splitlines() if line.startswith("GPU ") and ":" in line)


def detected_count(cuda_visible: Optional[str], proc_entries: Optional[list[str]],
                   nvidia_smi_output: Optional[str]) -> int:
    """The node's GPU count from the three sources, in Ray's order of preference."""
    visible = visible_devices(cuda_visible)
    if visible is not None:
        return len(visible)
    if proc_entries:
        found = count_proc_entries(proc_entries)
        if found:
            return found
    if nvidia_smi_output:
        return count_nvidia_smi_list(nvidia_smi_output)
    return 0


def task_visible_devices(gpu_ids: list[int], node_visible: Optional[str]) -> str:
    """``CUDA_VISIBLE_DEVICES`` for a task given GPU indices ``gpu_ids`` of its node.

    When the node itself was limited by ``CUDA_VISIBLE_DEVICES`` (say ``2,3``), index 0 is the
    device ``2``: the task must see the node's device names, not the indices.
    """
    visible = visible_devices(node_visible)
    if not visible:
        return ",".join(str(g) for g in gpu_ids)
    return ",".join(visible[g] if 0 <= g < len(visible) else str(g) for g in gpu_ids)
