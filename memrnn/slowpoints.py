"""Slow points: nearly steady states of the hidden dynamics at which memories are kept.

With the input held at the noise mean (trigger off), the network is an autonomous map
``s -> F(s)``. Its speed at a state is ``q(s) = ||phi(F(s)) - phi(s)||^2`` (phi = identity for the
full state; for LSTM the reference's metric uses phi(h, c) = (h, tanh c)); we report sqrt(q).
Searches start from class centroids (states reached after showing an image and some noise frames)
or from states sampled along trajectories, and minimise q for every ensemble member and every
start point at once.

Three methods:
- ``reference``: the reference's search exactly: Adam on q at lr 1e-3, divided by 10 after 40% of a
  fixed number of iterations (100,000 in the reference), h clipped to [-1, 1] after every step, no
  tolerance; the final iterate is the point.
- ``lm``: Levenberg-Marquardt on the residual phi(F(s)) - phi(s) with the exact Jacobian (tens of
  iterations where Adam needs thousands, see benchmarks/), stopping at the floor of the nearest slow
  valley. It works in coordinates v with h = tanh(v), so its iterates stay inside (-1, 1)^H, the
  only region a GRU, LSTM or tanh network can visit.
- ``adam``: Adam with our stopping rules (tolerance, stall) and h clipped just inside the region.
Starts outside the region are first clipped into it; ``in_region`` is checked on every result.
The searches themselves are :mod:`memrnn.fixedpoints`'s, given the exact Jacobian written out per cell.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load, save

from . import confine, fixedpoints, store
from .data import ImageBank
from .models import EnsembleRNN
from .presets import CENTROID_PROTOCOLS, MAX_ITERATIONS
from .progress import SEARCH, Reporter
from .runs import load_run, resolve_device

METHODS = fixedpoints.METHODS
METRICS = ("state", "reference")
# Bumped whenever a change to the search changes its results: cached analyses, traces and fine-tunes
# anchored on slow points record it, so they are redone rather than mixed with newer results.
FINDER_VERSION = 2


def rest_input(model: EnsembleRNN, bank: ImageBank, trigger: float = 0.0, n_noise_images: int = 1000) -> torch.Tensor:
    """Projected input (E, 1, G) at rest, with the trigger off (or on): a frame at the noise mean or,
    for a CNN front end, as the reference does, the mean CNN features of ``n_noise_images`` noise
    images (the CNN is nonlinear, so the features of the mean image are not the mean features)."""
    like = dict(device=model.weight_hh.device, dtype=model.weight_hh.dtype)
    switch = torch.full((model.n_members, 1), trigger, **like)
    if model.frontend is None:
        return model.project(torch.full((model.n_members, 1, bank.dim), bank.noise_mean, **like), switch)
    g = torch.Generator(like["device"]).manual_seed(0)
    noise = torch.randn(n_noise_images, bank.dim, generator=g, **like) * bank.noise_std + bank.noise_mean
    with torch.no_grad():
        features = model.frontend(noise.expand(model.n_members, -1, -1)).mean(1, keepdim=True)
    return model.project_features(features, switch)


def speed_coordinates(model: EnsembleRNN, states: torch.Tensor, metric: str) -> torch.Tensor:
    """phi(s): the coordinates speed is measured in: s itself, or (h, tanh c) for an LSTM under the
    reference metric."""
    if metric == "state" or model.arch != "lstm":
        return states
    H = model.hidden_size
    return torch.cat([states[..., :H], torch.tanh(states[..., H:])], -1)


def residual(model: EnsembleRNN, states: torch.Tensor, projected: torch.Tensor, metric: str = "state") -> torch.Tensor:
    """phi(F(s)) - phi(s) for states (E, P, S)."""
    following = model.recur(states, projected.expand(-1, states.shape[1], -1))
    return speed_coordinates(model, following, metric) - speed_coordinates(model, states, metric)


def speed_sq(model: EnsembleRNN, states: torch.Tensor, projected: torch.Tensor, metric: str = "state") -> torch.Tensor:
    """q(s) per state (E, P)."""
    return residual(model, states, projected, metric).square().sum(-1)


@torch.no_grad()
def jacobian(model: EnsembleRNN, states: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
    """Exact dF/ds (E, P, S, S) of the one-step map at each state, written out per cell.

    Every block is a sum of row-scaled recurrent weight blocks, diag(d) @ W_k^T, accumulated in
    place: at H = 200 and a thousand points each pass touches 160 MB, so temporaries cost more
    than the arithmetic."""
    E, P, S = states.shape
    H = model.hidden_size
    x = projected.expand(-1, P, -1)
    h = states[..., :H]
    rec = torch.baddbmm(model.bias_hh, h, model.weight_hh)
    WT = model.weight_hh.transpose(1, 2).unsqueeze(1)  # (E, 1, G, H): row = output unit

    def rows(terms, out):  # out = sum over (d, block) of diag(d) @ W_block^T, for every point
        (d, block), *rest = terms
        torch.mul(d.unsqueeze(-1), WT[:, :, block * H:(block + 1) * H], out=out)
        for d, block in rest:
            out.addcmul_(d.unsqueeze(-1), WT[:, :, block * H:(block + 1) * H])
        return out

    J = states.new_empty(E, P, S, S)
    if model.arch == "gru" and model.cell == "reference":
        # h' = h + z (n - h), n = tanh(x_n + U_n^T (r h)): dn/dh = diag(1 - n^2) U_n^T [diag(r) + diag(h r') U_r^T]
        r, z = torch.sigmoid(x[..., : 2 * H] + rec[..., : 2 * H]).chunk(2, -1)
        n = torch.tanh(x[..., 2 * H:] + torch.bmm(r * h, model.weight_hh[..., 2 * H:]))
        U_n = WT[:, :, 2 * H:]
        torch.matmul(U_n * (h * r * (1 - r)).unsqueeze(-2), WT[:, :, :H], out=J)
        J.add_(U_n * r.unsqueeze(-2)).mul_((z * (1 - n.square())).unsqueeze(-1))
        J.addcmul_(((n - h) * z * (1 - z)).unsqueeze(-1), WT[:, :, H:2 * H])
        J.diagonal(dim1=-2, dim2=-1).add_(1 - z)
        return J
    if model.arch == "rnn":
        return rows([(1 - torch.tanh(x + rec).square(), 0)], J)
    if model.arch == "gru":
        r, z = torch.sigmoid(x[..., : 2 * H] + rec[..., : 2 * H]).chunk(2, -1)
        h_n = rec[..., 2 * H:]
        n = torch.tanh(x[..., 2 * H:] + r * h_n)
        dn = (1 - z) * (1 - n.square())
        rows([(dn * r, 2), (dn * h_n * r * (1 - r), 0), ((h - n) * z * (1 - z), 1)], J)
        J.diagonal(dim1=-2, dim2=-1).add_(z)
        return J
    c = states[..., H:]
    i, f, g, o = (x + rec).chunk(4, -1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    t = torch.tanh(f * c + i * g)
    dh_dc = o * (1 - t.square())  # d h_new / d c_new
    dc_dh = rows([(c * f * (1 - f), 1), (g * i * (1 - i), 0), (i * (1 - g.square()), 2)], J[..., H:, :H])
    torch.mul(dc_dh, dh_dc.unsqueeze(-1), out=J[..., :H, :H]).addcmul_((t * o * (1 - o)).unsqueeze(-1), WT[:, :, 3 * H:])
    J[..., H:].zero_()
    J[..., :H, H:].diagonal(dim1=-2, dim2=-1).copy_(dh_dc * f)
    J[..., H:, H:].diagonal(dim1=-2, dim2=-1).copy_(f)
    return J


@torch.no_grad()
def residual_jacobian(model: EnsembleRNN, states, projected, metric: str = "state") -> torch.Tensor:
    """d/ds of phi(F(s)) - phi(s), built in place on dF/ds."""
    A = jacobian(model, states, projected)
    diagonal = A.diagonal(dim1=-2, dim2=-1)
    if metric == "state" or model.arch != "lstm":
        diagonal.sub_(1)
        return A
    H = model.hidden_size
    following = model.recur(states, projected.expand(-1, states.shape[1], -1))
    ones = torch.ones_like(states[..., :H])

    def dphi(s):
        return torch.cat([ones, 1 - torch.tanh(s[..., H:]).square()], -1)

    A.mul_(dphi(following).unsqueeze(-1))
    diagonal.sub_(dphi(states))
    return A


def in_region(model: EnsembleRNN, states: torch.Tensor) -> torch.Tensor:
    """Whether the hidden part of each state lies in (-1, 1)^H."""
    return (model.hidden(states).abs() < 1).all(-1)


@dataclass
class SlowPoints:
    """Results of one search: one entry per (member, start point)."""

    points: torch.Tensor      # (E, P, S) location
    q: torch.Tensor           # (E, P) speed^2 at the point
    q_start: torch.Tensor     # (E, P) speed^2 at the start state
    iterations: torch.Tensor  # (E, P) iterations spent on the point
    converged: torch.Tensor   # (E, P) q reached the tolerance
    in_region: torch.Tensor   # (E, P) hidden part inside (-1, 1)^H
    decoded: torch.Tensor     # (E, P) class the trigger readout reports at the point; -1 = null
    method: str
    tol: float

    @property
    def speed(self) -> torch.Tensor:
        return self.q.sqrt()

    def unique(self, member: int, distance: float = 1e-3) -> torch.Tensor:
        """Indices of distinct points of one member (closer than ``distance`` counts as the same),
        keeping the slowest of each group; points outside the region are dropped."""
        inside = self.in_region[member].nonzero().squeeze(1)
        return inside[fixedpoints.unique_indices(self.points[member, inside], self.q[member, inside], distance)]

    def to_tensors(self) -> dict[str, torch.Tensor]:
        names = ("points", "q", "q_start", "iterations", "converged", "in_region", "decoded")
        return {n: getattr(self, n) for n in names}


def eigenvalues(model: EnsembleRNN, bank: ImageBank, points: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (E, P, S) of the Jacobian at each point; |lambda| < 1 for all means stable."""
    with torch.no_grad():
        return torch.linalg.eigvals(jacobian(model, points, rest_input(model, bank)))


def decode(model: EnsembleRNN, bank: ImageBank, states: torch.Tensor) -> torch.Tensor:
    """Class (E, P) reported if the trigger arrived at these states (-1 for null)."""
    with torch.no_grad():
        reported = model.recur(states, rest_input(model, bank, trigger=1.0).expand(-1, states.shape[1], -1))
        return model.readout(reported).argmax(-1) - 1


def find_slow_points(model: EnsembleRNN, bank: ImageBank, starts: torch.Tensor, method: str = "lm",
                     tol: float = 1e-12, max_iter: int | None = None, metric: str = "reference",
                     lr: float = 1e-3, patience: int | None = None, progress: float | None = None,
                     report=None) -> SlowPoints:
    """Minimise q from every start state (E, P, S); see the module docstring for the methods.

    ``reference`` runs exactly ``max_iter`` iterations (default 100,000). For the others, a point
    stops when q <= tol (converged); when it stalls, i.e. q has not fallen by the fraction
    ``progress`` within ``patience`` iterations (LM: halve within 10, Adam: 0.1% within 200); for
    LM, when no damping gives a step that lowers q; and at ``max_iter`` (default 200 for LM, 20,000
    for Adam).

    Slow points of trained networks are rarely exact fixed points: most lie on slow valleys along
    which q keeps shrinking as the point drifts away, towards saturation. LM's stall rule stops at
    the valley floor nearest the start instead of following the valley; a lenient rule (e.g.
    progress=1e-3, patience=20) follows it as far as ``max_iter`` allows. ``report``: see ``fixedpoints.search``.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    projected = rest_input(model, bank).detach()
    member = functools.cache(lambda e: model if model.n_members == 1 else model.member(e))

    def jacobian_of(e, states):  # the analytic Jacobian, member by member: it is built per point
        return residual_jacobian(member(e), states[None], projected[e:e + 1], metric)[0]

    region = fixedpoints.Box(*fixedpoints.reachable_region(model), like=starts)
    points, q, iterations = fixedpoints.search(method, lambda s: residual(model, s, projected, metric), jacobian_of,
                                               starts, region, tol, max_iter, lr, patience, progress, report)
    with torch.no_grad():
        q_start = speed_sq(model, starts, projected, metric)
    return SlowPoints(points, q, q_start, iterations, q <= tol, in_region(model, points),
                      decode(model, bank, points), method, tol)


def follow_valleys(model: EnsembleRNN, bank: ImageBank, points: torch.Tensor,
                   checkpoints: tuple[int, ...] = (25, 50, 100, 200)) -> list[SlowPoints]:
    """Continue LM from slow points with a lenient stall rule (0.1% within 20 iterations): the
    results after each cumulative number of extra iterations in ``checkpoints`` show how far the
    points drift, how much slower they get and what they decode to when the search follows the slow
    valleys instead of stopping at their floor."""
    results, done = [], 0
    for total in checkpoints:
        found = find_slow_points(model, bank, points, max_iter=total - done, patience=20, progress=1e-3)
        results.append(found)
        points, done = found.points, total
    return results


@dataclass
class Centroids:
    states: torch.Tensor     # (E, n_classes, S)
    n_correct: torch.Tensor  # (E, n_classes) trials decoded correctly (the ones averaged)
    n_trials: torch.Tensor   # (n_classes,) trials shown per class
    spread: torch.Tensor     # (E, n_classes) RMS distance of the averaged trials' states to their centroid


# The reference's centroid trials: training images per class, and what the noise's standard deviation is divided
# by (BlackBoxMNIST.py: 100 at sigma / 3; BlackBoxCIFAR.py: 1,000 at the full sigma). MNIST's for other datasets.
REFERENCE_CENTROIDS = {"cifar10": (1000, 1)}
MNIST_CENTROIDS = (100, 3)


def reference_centroid_trials(dataset: str) -> tuple[int, int]:
    """(training images per class, divisor of the noise's standard deviation) of the reference's centroids."""
    return REFERENCE_CENTROIDS.get(dataset, MNIST_CENTROIDS)


@torch.no_grad()
def class_centroids(model: EnsembleRNN, bank: ImageBank, protocol: str = "reference", n_trials: int | None = None,
                    noise_frames: int = 14, seed: int = 0) -> Centroids:
    """Mean state per class after an image at t = 0 and ``noise_frames`` noise frames, over the trials
    whose trigger readout at that moment reports the right class (all trials of the class if none
    does, flagged by n_correct = 0).

    ``reference``: as the reference, *training* images (``n_trials`` per class) and one sequence of noise
    frames shared by every trial: by default 100 per class at a third of the noise's standard deviation,
    for CIFAR-10 1,000 per class at the full standard deviation (see ``reference_centroid_trials``).
    ``heldout``: ``n_trials`` (default 1,000) random held-out test images, each with its own noise
    frames at the full standard deviation."""
    if protocol == "reference":
        per_class, divisor = reference_centroid_trials(bank.name)
        states, labels = _reference_trial_ends(model, bank, n_trials or per_class, noise_frames, seed, divisor)
    elif protocol == "heldout":
        states, labels = _trajectory_end(model, bank, n_trials or 1000, noise_frames, seed)
    else:
        raise ValueError(f"unknown centroid protocol {protocol!r}; choose one of {CENTROID_PROTOCOLS}")
    correct = decode(model, bank, states) == labels
    means, counts, spreads = [], [], []
    for c in range(bank.n_classes):
        of_class = labels == c
        use = correct & of_class
        use = torch.where(use.any(-1, keepdim=True), use, of_class)
        weights = use.float()
        total = weights.sum(-1, keepdim=True).clamp_min(1)
        mean = (weights[..., None] * states).sum(1) / total
        means.append(mean)
        counts.append((correct & of_class).sum(-1))
        spreads.append(((weights * (states - mean[:, None]).square().sum(-1)).sum(1) / total[:, 0]).sqrt())
    n_trials_per_class = torch.bincount(labels[0], minlength=bank.n_classes)
    return Centroids(torch.stack(means, 1), torch.stack(counts, 1), n_trials_per_class, torch.stack(spreads, 1))


def _reference_trial_ends(model, bank, per_class, noise_frames, seed, divisor):
    """States after ``per_class`` training images of every class and one shared sequence of noise
    frames drawn at the noise's standard deviation divided by ``divisor``."""
    device, dtype = model.weight_hh.device, model.weight_hh.dtype
    g = torch.Generator(device).manual_seed(seed)
    labels = bank.train_labels
    chosen = torch.cat([(labels == c).nonzero().flatten()[torch.randperm(int((labels == c).sum()), generator=g,
                                                                         device=device)[:per_class]]
                        for c in range(bank.n_classes)])
    noise = torch.randn(noise_frames, bank.dim, generator=g, device=device, dtype=dtype)
    noise = noise * (bank.noise_std / divisor) + bank.noise_mean
    E, B = model.n_members, len(chosen)
    off = torch.zeros(E, B, device=device)
    state = model.step(model.init_state(B), bank.train_images[chosen].to(dtype).expand(E, B, -1), off)
    for frame in noise:
        state = model.step(state, frame.expand(E, B, -1), off)
    return state, labels[chosen].expand(E, B)


def _trajectory_end(model, bank, n_trials, noise_frames, seed):
    """States after a test image and noise frames: (E, n, S) and labels broadcast to (E, n)."""
    states, labels = probe_trajectories(model, bank, n_trials, noise_frames, seed)
    return states[:, :, -1], labels


@torch.no_grad()
def probe_trajectories(model: EnsembleRNN, bank: ImageBank, n_trials: int, noise_frames: int,
                       seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """States (E, n, noise_frames + 1, S) after a test image at t = 0 and after each following
    noise frame (trigger off), and the image labels (E, n)."""
    device, dtype = model.weight_hh.device, model.weight_hh.dtype
    g = torch.Generator(device).manual_seed(seed)
    trials = torch.randperm(len(bank.test_labels), generator=g, device=device)[:n_trials]
    E, B = model.n_members, len(trials)
    off = torch.zeros(E, B, device=device)
    states = [model.step(model.init_state(B), bank.test_images[trials].to(dtype).expand(E, B, -1), off)]
    for _ in range(noise_frames):
        noise = torch.randn(B, bank.dim, generator=g, device=device, dtype=dtype) * bank.noise_std + bank.noise_mean
        states.append(model.step(states[-1], noise.expand(E, B, -1), off))
    return torch.stack(states, 2), bank.test_labels[trials].expand(E, B)


@torch.no_grad()
def sample_states(model: EnsembleRNN, bank: ImageBank, n: int, max_frames: int = 50, seed: int = 0) -> torch.Tensor:
    """States (E, n, S) visited by probe trials, each stopped after a random number of noise frames
    in [0, max_frames]: a fuller map of the dynamics than the centroids."""
    g = torch.Generator().manual_seed(seed)
    stops = torch.randint(0, max_frames + 1, (n,), generator=g)
    out = torch.empty(model.n_members, n, model.state_size, device=model.weight_hh.device, dtype=model.weight_hh.dtype)
    for frames in stops.unique().tolist():
        chosen = (stops == frames).nonzero().flatten()
        states, _ = _trajectory_end(model, bank, len(chosen), frames, seed + 1 + frames)
        out[:, chosen.to(out.device)] = states
    return out


@torch.no_grad()
def visited_speed(model: EnsembleRNN, bank: ImageBank, n_frames: int, metric: str = "reference", n_trials: int = 200,
                  seed: int = 1) -> torch.Tensor:
    """Median speed (E, n_classes) at rest input of the states the network visits during the delay
    (after a held-out image of the class, then noise frames up to the trial's length): the scale a
    slow point must be slow against. A class centroid is a mean state no trajectory visits, so its
    speed is no such scale."""
    states, labels = probe_trajectories(model, bank, n_trials, n_frames - 1, seed)
    delay = states[:, :, 1:]  # after the image
    E, n, F, S = delay.shape
    speed = speed_sq(model, delay.reshape(E, n * F, S), rest_input(model, bank), metric).sqrt().view(E, n, F)
    return torch.stack([speed[:, labels[0] == c].flatten(1).median(-1).values if (labels[0] == c).any()
                        else torch.full((E,), float("nan"), device=speed.device) for c in range(bank.n_classes)], 1)


RESULTS_FILE = "slowpoints.safetensors"
SECTION = "slowpoints"
VISITED_TRIALS = 200  # held-out trials whose delay-period states give each class's visited speed


def analysis_name(config, search: str, centroids: str, metric: str) -> str:
    """Where an analysis is stored: ``slowpoints`` for the run's own settings (its configuration's
    search, centroids and speed metric), ``slowpoints-<search>-<centroids>-<metric>`` for others, so
    the book can run both searches on one run without one overwriting the other."""
    if (search, centroids, metric) == (config.search, config.centroids, config.speed_metric):
        return SECTION
    return f"{SECTION}-{search}-{centroids}-{metric}"


def analyse_run(run_dir: Path, step: int | None = None, search: str | None = None, centroids: str | None = None,
                metric: str | None = None, tol: float = 1e-12, max_iter: int | None = None,
                noise_frames: int = 14, device: str | None = None) -> dict:
    """Slow points of every member and class of a run, started from the class centroids.

    ``search``, ``centroids`` and ``metric`` default to the run's configuration (the reference's
    unless it was changed; the reference search runs ``config.search_iterations`` iterations).
    Full results go to ``<name>.safetensors`` (``-stepN`` for an earlier checkpoint), a per
    member x class summary to the run's summary.json under ``<name>`` (see ``analysis_name``).
    Refuses an unfinished run unless ``step`` names a checkpoint."""
    run_dir = Path(run_dir)
    if max_iter is not None and not 1 <= max_iter <= MAX_ITERATIONS:
        raise ValueError(f"max_iter={max_iter} is not allowed: expected an integer from 1 to {MAX_ITERATIONS}")
    if device is not None:
        resolve_device(device)  # a device that is not there is an error, also when the answer is cached
    config = store.read_config(run_dir)  # before the lock, which would create a missing directory
    with store.run_lock(run_dir):
        return _analyse_locked(run_dir, config, step, search or config.search, centroids or config.centroids,
                               metric or config.speed_metric, tol, max_iter, noise_frames, device)


def _analyse_locked(run_dir, config, step, search, centroids, metric, tol, max_iter, noise_frames, device) -> dict:
    if search == "reference" and max_iter is None:
        max_iter = config.search_iterations
    step = store.trained_step(run_dir, step)
    last = store.checkpoint_steps(run_dir)[-1]
    name = analysis_name(config, search, centroids, metric)
    settings = {"method": search, "centroids": centroids, "tol": tol, "metric": metric, "checkpoint_step": step,
                "noise_frames": noise_frames, "max_iter": max_iter, "stall": list(fixedpoints.STALL.get(search, ())),
                "finder_version": FINDER_VERSION, "visited_trials": VISITED_TRIALS,
                "checkpoint_sha256": store.checkpoint_sha256(run_dir, step)}
    cached = store.read_summary(run_dir).get(name)
    if step == last and isinstance(cached, dict) and all(cached.get(k) == v for k, v in settings.items()) \
            and cached.get("file") == f"{name}.safetensors" and store.run_file(run_dir, cached["file"]).is_file():
        return cached
    config, model, bank = load_run(run_dir, step, device)
    found_centroids = class_centroids(model, bank, centroids, noise_frames=noise_frames)
    report = Reporter(f"{run_dir.name}-{name}", 0, max_iter, SEARCH) if search == "reference" else None
    found = find_slow_points(model, bank, found_centroids.states, search, tol, max_iter, metric, report=report)
    visited = visited_speed(model, bank, config.n_frames, metric, VISITED_TRIALS)
    eig = eigenvalues(model, bank, found.points)
    radius = eig.abs().amax(-1)
    tensors = {**found.to_tensors(), "centroids": found_centroids.states, "n_correct": found_centroids.n_correct,
               "spread": found_centroids.spread, "eig_real": eig.real, "eig_imag": eig.imag}
    file = f"{name}.safetensors" if step == last else f"{name}-step{step}.safetensors"
    store.atomic_write(store.run_file(run_dir, file), save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}))
    section = {
        **settings, "file": file, "member_seeds": config.member_seeds,
        "speed": found.speed.tolist(), "speed_at_centroid": found.q_start.sqrt().tolist(),
        "speed_visited": visited.tolist(),
        "converged": found.converged.tolist(), "in_region": found.in_region.tolist(),
        "decoded_class": found.decoded.tolist(), "iterations": found.iterations.tolist(),
        "centroid_correct_trials": found_centroids.n_correct.tolist(),
        "centroid_trials_per_class": found_centroids.n_trials.tolist(),
        "centroid_spread": found_centroids.spread.tolist(),
        "jacobian_spectral_radius": radius.tolist(), "stable": (radius < 1).tolist(),
    }
    if step == last:
        store.update_summary(run_dir, **{name: section})
    return section


def load_results(run_dir: Path, name: str = RESULTS_FILE) -> dict[str, torch.Tensor]:
    """The tensors of a stored analysis (``name``: its file, default the run's own settings'), which must
    be a file of the run itself (a summary naming another path is refused)."""
    if not (confine.plain_name(name) and name.endswith(".safetensors")):
        raise ValueError(f"{Path(run_dir) / store.SUMMARY_FILE} names {name!r} as a slow-point analysis: not a "
                         "file of the run; run `memrnn slowpoints` on it again")
    path = store.run_file(run_dir, name)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `memrnn slowpoints {run_dir}` first")
    data = confine.read_regular(path)
    try:
        return load(data)
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise ValueError(f"{path} is damaged ({e}): delete it and run `memrnn slowpoints {run_dir}` again") from None
