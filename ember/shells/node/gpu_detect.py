"""Reading the machine's NVIDIA GPUs for a node started without ``num_gpus`` (parsing: ``logic/gpus.py``)."""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Optional

from ember.logic import gpus

PROC_GPUS_DIR = "/proc/driver/nvidia/gpus"
NVIDIA_SMI_TIMEOUT_S = 10.0


def _proc_entries() -> Optional[list[str]]:
    try:
        return os.listdir(PROC_GPUS_DIR)
    except OSError:
        return None


def nvidia_smi_list() -> Optional[str]:
    """The output of ``nvidia-smi -L``; None when the tool is missing or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def detect_num_gpus() -> int:
    entries = _proc_entries()
    cuda_visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    smi = None if cuda_visible is not None or entries else nvidia_smi_list()
    return gpus.detected_count(cuda_visible, entries, smi)
