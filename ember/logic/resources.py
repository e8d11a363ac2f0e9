"""Resource amounts in fixed point, so 0.1 + 0.2 CPUs add up exactly.

A ResourceSet maps names ("CPU", "GPU", "memory", custom) to integer units of 1/10000.
GPU instances are tracked one by one so that fractional GPUs share an index and whole
GPUs get indices of their own (they become CUDA_VISIBLE_DEVICES).
"""
from __future__ import annotations

from typing import Iterable, Mapping

UNIT = 10_000


def to_units(amount: float) -> int:
    return int(round(amount * UNIT))


def from_units(units: int) -> float:
    return units / UNIT


class ResourceSet:
    __slots__ = ("units",)

    def __init__(self, amounts: Mapping[str, float] | None = None) -> None:
        self.units: dict[str, int] = {}
        if amounts:
            for name, amount in amounts.items():
                u = to_units(amount)
                if u < 0:
                    raise ValueError(f"resource {name!r} cannot be negative ({amount})")
                if u:
                    self.units[name] = u

    @classmethod
    def from_units(cls, units: Mapping[str, int]) -> "ResourceSet":
        rs = cls()
        rs.units = {k: v for k, v in units.items() if v}
        return rs

    def copy(self) -> "ResourceSet":
        return ResourceSet.from_units(self.units)

    def to_dict(self) -> dict[str, float]:
        return {k: from_units(v) for k, v in self.units.items()}

    def get(self, name: str) -> float:
        return from_units(self.units.get(name, 0))

    def fits_in(self, other: "ResourceSet") -> bool:
        avail = other.units
        for name, need in self.units.items():
            if avail.get(name, 0) < need:
                return False
        return True

    def add(self, other: "ResourceSet") -> None:
        for name, u in other.units.items():
            self.units[name] = self.units.get(name, 0) + u

    def subtract(self, other: "ResourceSet") -> None:
        """Subtract; amounts may go negative only through ``subtract_allow_negative``."""
        for name, u in other.units.items():
            left = self.units.get(name, 0) - u
            if left < 0:
                raise ValueError(f"resource {name!r} would go negative")
            self.units[name] = left

    def subtract_allow_negative(self, other: "ResourceSet") -> None:
        for name, u in other.units.items():
            self.units[name] = self.units.get(name, 0) - u

    def is_empty(self) -> bool:
        return not any(self.units.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResourceSet):
            return NotImplemented
        return {k: v for k, v in self.units.items() if v} == {k: v for k, v in other.units.items() if v}

    def __repr__(self) -> str:
        return f"ResourceSet({self.to_dict()})"


class GpuSlots:
    """Per-GPU free capacity; hands out indices for whole and fractional requests."""

    def __init__(self, num_gpus: int) -> None:
        self.free_units: list[int] = [UNIT] * num_gpus

    def can_assign(self, gpu_units: int) -> bool:
        return self._pick(gpu_units) is not None

    def _pick(self, gpu_units: int) -> list[tuple[int, int]] | None:
        if gpu_units <= 0:
            return []
        if gpu_units < UNIT:
            # Fractional: the most-used GPU that still has room (packs fractions).
            best = None
            for idx, free in enumerate(self.free_units):
                if free >= gpu_units and (best is None or free < self.free_units[best]):
                    best = idx
            return None if best is None else [(best, gpu_units)]
        if gpu_units % UNIT:
            return None
        whole = [i for i, free in enumerate(self.free_units) if free == UNIT]
        need = gpu_units // UNIT
        if len(whole) < need:
            return None
        return [(i, UNIT) for i in whole[:need]]

    def assign(self, gpu_units: int) -> list[tuple[int, int]]:
        picked = self._pick(gpu_units)
        if picked is None:
            raise ValueError("no GPU capacity for this request")
        for idx, u in picked:
            self.free_units[idx] -= u
        return picked

    def release(self, assigned: Iterable[tuple[int, int]]) -> None:
        for idx, u in assigned:
            self.free_units[idx] += u
            if self.free_units[idx] > UNIT:
                raise ValueError(f"GPU {idx} released more than it had")
