"""Training protocols: delay curriculum (DeCu), vocabulary curriculum (VoCu) and none.

The reference advances its schedules at fixed steps; we store them as fractions of the total
number of steps so that shorter presets keep the same shape. CIFAR-10 has its own schedules;
every 28x28 dataset uses MNIST's.
"""
from __future__ import annotations

from dataclasses import dataclass

PROTOCOLS = ("decu", "vocu", "none")
PROTOCOL_NAMES = {"decu": "DeCu", "vocu": "VoCu", "none": "no curriculum"}  # as the book writes them

# (step in thousands, value) breakpoints of the reference, with the reference total steps
_REFERENCE = {
    "mnist": {
        "total": 140,
        "t_max": [(0, 6), (20, 8), (30, 10), (40, 12), (50, 14), (60, 16), (70, 18), (80, 20)],
        "n_classes": [(0, 2), (8, 3), (16, 4), (26, 5), (36, 6), (48, 7), (62, 8), (78, 9), (98, 10)],
    },
    "cifar10": {
        "total": 300,
        "t_max": [(0, 6), (100, 8), (120, 10), (140, 12), (160, 14), (180, 16), (200, 18), (220, 20)],
        "n_classes": [(0, 2)] + [(30 * k, k + 2) for k in range(1, 9)],
    },
}


@dataclass(frozen=True)
class Schedule:
    """Task difficulty (T_max, number of classes) as a function of the training step."""

    protocol: str
    total_steps: int
    t_max_points: tuple[tuple[float, int], ...]      # (fraction of training, value)
    n_classes_points: tuple[tuple[float, int], ...]

    def _value(self, points, step: int) -> int:
        fraction = step / self.total_steps
        return [v for f, v in points if f <= fraction][-1]

    def at(self, step: int) -> tuple[int, int]:
        """(T_max, number of active classes) in force at ``step``."""
        return self._value(self.t_max_points, step), self._value(self.n_classes_points, step)

    def events(self) -> list[dict]:
        """Steps at which the task changes, for marking plots of training."""
        out = []
        for kind, points in (("t_max", self.t_max_points), ("n_classes", self.n_classes_points)):
            for fraction, value in points[1:]:
                out.append({"step": self.first_step(fraction), "kind": kind, "value": value})
        return sorted(out, key=lambda e: e["step"])

    def first_step(self, fraction: float) -> int:
        step = int(fraction * self.total_steps)
        return step if step / self.total_steps >= fraction else step + 1


def schedule(protocol: str, dataset: str, total_steps: int, n_frames: int = 20, n_classes: int = 10) -> Schedule:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    reference = _REFERENCE["cifar10" if dataset == "cifar10" else "mnist"]
    full_t, full_c = ((0.0, n_frames),), ((0.0, n_classes),)

    def scaled(points):
        return tuple((k / reference["total"], v) for k, v in points)

    if protocol == "decu":
        return Schedule(protocol, total_steps, scaled(reference["t_max"]), full_c)
    if protocol == "vocu":
        return Schedule(protocol, total_steps, full_t, scaled(reference["n_classes"]))
    return Schedule(protocol, total_steps, full_t, full_c)
