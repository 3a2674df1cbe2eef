"""How slow points form during training: each final slow point traced back through the checkpoints.

Continuation: the search on checkpoint t starts from the point found on the next later
checkpoint, so a point is followed for as long as it exists. Read forward in time, a point
*appears* at the first checkpoint from which it is followed without break (at most ``slower``
times faster than at the end of training, inside the region, reporting its class, and no jump
towards another memory); two classes' points that coincide at a checkpoint and are distinct later
have *split* from a common point. Positions are shown on the two principal
components of the member's final points.

The readout takes part in that rule, and a curriculum masks the readout of classes not yet
introduced, so "appears after its class is introduced" would hold by construction. Hence a second,
readout-free appearance (``appears_at_unread``): the same continuation, speed, region and jump
conditions without asking what the point reports.
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import store
from .presets import MAX_ITERATIONS
from .progress import TRACE, Reporter
from .runs import load_run, load_weights, resolve_device
from .slowpoints import analyse_run, find_slow_points, load_results

FORMATION_FILE = "formation.json"


def trace_run(run_dir: Path, max_iter: int = 50, slower: float = 10.0, jump_fraction: float = 0.5,
              same: float = 1e-2, search: str = "lm", device: str | None = None) -> dict:
    """Trace every (member, class) slow point back through all checkpoints; writes formation.json.

    The trace starts from the run's slow-point analysis by ``search`` at the last checkpoint (by default
    Levenberg-Marquardt's, whose points are states the network can reach; the reference search leaves
    most on its clip boundary) and continues backwards with Levenberg-Marquardt (``max_iter``
    iterations per checkpoint) from the point found on the next later checkpoint.

    A traced point counts as the same memory at a checkpoint while its speed is at most ``slower``
    times its speed at the end of training (slow points of trained networks need not be exact
    fixed points, so the bar is relative), it lies in the
    region, it reports its class, and it moved less than ``jump_fraction`` of the distance from the
    later checkpoint's point to the nearest point of another class (the scale that separates
    memories: a few units for GRUs, tens for LSTMs whose cell state is unbounded). Points closer
    than ``same`` are one point (for splits)."""
    run_dir = Path(run_dir)
    if not 1 <= max_iter <= MAX_ITERATIONS:
        raise ValueError(f"max_iter={max_iter} is not allowed: expected an integer from 1 to {MAX_ITERATIONS}")
    if device is not None:
        resolve_device(device)  # a device that is not there is an error, also when the answer is cached
    store.trained_step(run_dir)
    final = analyse_run(run_dir, search=search, device=device)
    with store.run_lock(run_dir):
        return _trace_locked(run_dir, final, max_iter, slower, jump_fraction, same, device)


def _trace_locked(run_dir: Path, final: dict, max_iter: int, slower: float, jump_fraction: float, same: float,
                  device: str | None) -> dict:
    steps = store.checkpoint_steps(run_dir)
    # every checkpoint the trace reads: a cached trace is served only while each still has its hash
    settings = {"steps": steps, "checkpoint_sha256": store.checkpoint_hashes(run_dir), "max_iter": max_iter, "slower": slower, "jump_fraction": jump_fraction, "same": same,
                "finder_version": final["finder_version"],
                "analysis": [final["method"], final["centroids"], final["metric"], final["max_iter"]]}
    path = store.run_file(run_dir, FORMATION_FILE)
    if path.exists():
        cached = store.read_json(path, dict)
        if all(cached.get(k) == v for k, v in settings.items()) and "start_in_region" in cached:
            return cached
    _, model, bank = load_run(run_dir, device=device)
    results = {k: v.to(model.weight_hh.device) for k, v in load_results(run_dir, final["file"]).items()}
    points = results["points"]  # the final analysis is the trace's last checkpoint
    trace = [{"step": steps[-1], "points": points, "q": results["q"], "decoded": results["decoded"],
              "in_region": results["in_region"], "moved": torch.zeros_like(results["q"])}]
    report = Reporter(f"{run_dir.name}-formation", 0, len(steps) - 1, TRACE)
    for done, step in enumerate(reversed(steps[:-1]), 1):
        load_weights(model, run_dir, step)
        found = find_slow_points(model, bank, points, "lm", max_iter=max_iter, metric=final["metric"])
        moved = (found.points - points).norm(dim=-1)
        trace.append({"step": step, "points": found.points, "q": found.q, "decoded": found.decoded,
                      "in_region": found.in_region, "moved": moved})
        points = found.points
        report(done)
    trace.reverse()
    result = _summarise(trace, torch.tensor(final["decoded_class"]), slower, jump_fraction, same)
    result.update(**settings, member_seeds=final["member_seeds"], start_in_region=final["in_region"],
                  curriculum_events=store.read_summary(run_dir)["train"]["curriculum_events"])
    store.write_json(path, result)
    return result


def _summarise(trace: list[dict], final_class: torch.Tensor, slower: float, jump_fraction: float, same: float) -> dict:
    points = torch.stack([t["points"] for t in trace])           # (C, E, K, S) checkpoints first
    q = torch.stack([t["q"] for t in trace]).cpu()
    decoded = torch.stack([t["decoded"] for t in trace]).cpu()
    moved = torch.stack([t["moved"] for t in trace]).cpu()
    moved[-1] = 0  # the final checkpoint is where tracing starts
    region = torch.stack([t["in_region"] for t in trace]).cpu()
    slow = q <= slower**2 * q[-1].clamp_min(1e-24)
    later = torch.cat([points[1:], points[-1:]]).cpu()  # where each continuation started
    gaps = torch.cdist(later, later)
    gaps.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))
    room = gaps.min(-1).values  # (C, E, K) distance to the nearest other class's point
    same_point = slow & region & (moved < jump_fraction * room)
    same_memory = same_point & (decoded == final_class)
    C, E, K = q.shape
    appears, appears_unread = _first_unbroken(same_memory), _first_unbroken(same_point)
    final_pts = points[-1]
    centred = final_pts - final_pts.mean(1, keepdim=True)
    _, _, V = torch.linalg.svd(centred.cpu(), full_matrices=False)  # per member
    pcs = torch.einsum("ceks,eps->cekp", (points.cpu() - final_pts.mean(1, keepdim=True).cpu()), V[:, :2])
    splits = []
    distance = torch.cdist(points.cpu().flatten(0, 1), points.cpu().flatten(0, 1)).view(C, E, K, K)
    for e in range(E):
        for a in range(K):
            for b in range(a + 1, K):
                together = (distance[:, e, a, b] < same).tolist()
                if together[-1] or not any(together):
                    continue
                last_together = max(i for i, t in enumerate(together) if t)
                splits.append({"member": e, "classes": [a, b], "step": trace[last_together + 1]["step"]})
    steps = [t["step"] for t in trace]
    return {
        "speed": q.sqrt().permute(1, 2, 0).tolist(),          # [member][class][checkpoint]
        "decoded_class": decoded.permute(1, 2, 0).tolist(),
        "moved": moved.permute(1, 2, 0).tolist(),
        "pc": pcs.permute(1, 2, 0, 3).tolist(),               # [member][class][checkpoint][2]
        "same_memory": same_memory.permute(1, 2, 0).tolist(),
        "appears_at": [[steps[i] if i >= 0 else None for i in row] for row in appears.tolist()],
        "same_point_unread": same_point.permute(1, 2, 0).tolist(),
        "appears_at_unread": [[steps[i] if i >= 0 else None for i in row] for row in appears_unread.tolist()],
        "splits": splits,
    }


def _first_unbroken(holds: torch.Tensor) -> torch.Tensor:
    """Index of the first checkpoint from which ``holds`` stays true to the end; -1 if it fails at the end."""
    unbroken = torch.flip(torch.cumprod(torch.flip(holds, [0]).int(), 0), [0]).bool()
    return torch.where(unbroken.any(0), unbroken.int().argmax(0), -1)
