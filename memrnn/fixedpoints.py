"""Fixed points of any recurrent network: the slow-point search for a step function ``F(h, x) -> h``.

A network with its input held at a constant ``x`` (its "rest" input) is a map ``h -> F(h, x)``;
its fixed points, where ``q(h) = ||F(h, x) - h||^2 = 0``, and the linearisation there (Jacobian,
eigenvalues, stability) show how it keeps what it remembers. Nothing here needs more than F written
in PyTorch: Jacobians come from autograd. :mod:`memrnn.slowpoints` runs the same searches on this
package's networks, with their analytic Jacobians.

Three searches (``method``):

- ``lm``: Levenberg-Marquardt on the residual F(h, x) - h: tens of iterations where Adam needs
  thousands, and it reaches true fixed points that Adam stops short of (see benchmarks/). Inside a
  bounded region it works in coordinates v with h = mid + half tanh(v), so every iterate stays in
  the open box and saturating units are approached smoothly.
- ``adam``: Adam on q with a tolerance and a stall rule, clipped just inside the region.
- ``reference``: Haviv et al.'s search: Adam on q at lr 1e-3, divided by 10 after 40% of a fixed
  number of iterations, clipped to the closed box after every step, the last iterate kept.

The region is where the network can be: a GRU's or a tanh RNN's states lie in (-1, 1)^H, since
every update is a convex combination of h and a tanh. Points found outside it look slow (saturated
gates make F(h) ~ h) but are no states of the network; every result says whether it is inside.

Example, on a plain ``torch.nn.GRU`` (an LSTM's state is (h, c) concatenated)::

    gru = torch.nn.GRU(3, 16, batch_first=True)          # trained on your task
    states, _ = gru(inputs)                               # your trajectories: (batch, time, 16)
    found = find_fixed_points(step_function(gru), sample_starts(states, 256), torch.zeros(3),
                              region=reachable_region(gru))
    points = found[found.converged & found.in_region].unique()
    print(len(points), "fixed points,", int(points.stable.sum()), "stable; speeds", points.speed)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .models import EnsembleRNN, check_torch_rnn

METHODS = ("reference", "lm", "adam")
EDGE = 1 - 1e-7  # clip for Adam's iterate: just inside the open region
# Stall rule per method: (patience, progress); a point stops once q has not fallen by the fraction
# ``progress`` within ``patience`` iterations. LM converges superlinearly towards a fixed point, so
# an LM point that cannot halve q in 10 iterations is sliding along a slow valley.
STALL = {"lm": (10, 0.5), "adam": (200, 1e-3)}
DEFAULT_ITERATIONS = {"lm": 200, "adam": 20_000, "reference": 100_000}


class Box:
    """An open box low < s < high per coordinate, and the free coordinates v of the LM search
    (s = mid + half tanh(v) inside it). A coordinate with both bounds infinite is free (v = s)."""

    def __init__(self, low, high, like: torch.Tensor):
        size = like.shape[-1]
        low, high = (torch.as_tensor(b, dtype=like.dtype, device=like.device) for b in (low, high))
        if low.numel() not in (1, size) or high.numel() not in (1, size):
            raise ValueError(f"region: bounds must be numbers or tensors of the state size {size}; got "
                             f"{tuple(low.shape)} and {tuple(high.shape)}")
        low, high = low.reshape(-1).expand(size), high.reshape(-1).expand(size)
        self.bounded = torch.isfinite(low) & torch.isfinite(high)
        free = torch.isinf(low) & torch.isinf(high) & (low < 0) & (high > 0)
        if not (self.bounded | free).all() or not (low[self.bounded] < high[self.bounded]).all():
            raise ValueError(f"region: each coordinate needs low < high, both finite or both infinite "
                             f"(-inf, inf); got low={low.tolist()}, high={high.tolist()}")
        self.low, self.high = low, high
        self.mid = torch.where(self.bounded, (low + high) / 2, 0)
        self.half = torch.where(self.bounded, (high - low) / 2, 1)
        # bounded coordinates first (an LSTM's h, then its free c), and the box (-1, 1): transformed as
        # a slice with no affine step, which keeps the elementwise kernels (vectorised or not), and so
        # the last bits, of the searches this package ran before any box existed
        k = int(self.bounded.sum())
        self.prefix = k if bool(self.bounded[:k].all()) else None
        self.unit = bool((self.mid[self.bounded] == 0).all() and (self.half[self.bounded] == 1).all())

    @classmethod
    def everywhere(cls, like: torch.Tensor) -> "Box":
        return cls(-torch.inf, torch.inf, like)

    def contains(self, states: torch.Tensor) -> torch.Tensor:
        return ((states > self.low) & (states < self.high)).all(-1)

    def clip(self, states: torch.Tensor, edge: float = EDGE) -> torch.Tensor:
        """Clamp the bounded coordinates to the box shrunk by ``edge`` about its middle (1: the closed box)."""
        low = torch.where(self.bounded, self.mid - edge * self.half, -torch.inf)
        high = torch.where(self.bounded, self.mid + edge * self.half, torch.inf)
        return torch.clamp(states, low, high)

    def _on_bounded(self, states: torch.Tensor, f: Callable, rest: Callable) -> torch.Tensor:
        if self.prefix is None:
            return torch.where(self.bounded, f(states, self.mid, self.half), rest(states))
        k = self.prefix
        return torch.cat([f(states[..., :k], self.mid[:k], self.half[:k]), rest(states[..., k:])], -1)

    def to_free(self, states: torch.Tensor) -> torch.Tensor:
        return self._on_bounded(states, lambda s, mid, half: torch.atanh(s if self.unit else (s - mid) / half),
                                lambda s: s)

    def from_free(self, free: torch.Tensor) -> torch.Tensor:
        return self._on_bounded(free, lambda v, mid, half: torch.tanh(v) if self.unit else mid + half * torch.tanh(v),
                                lambda v: v)

    def chain(self, states: torch.Tensor) -> torch.Tensor:
        """ds/dv at the states."""
        return self._on_bounded(states, lambda s, mid, half: 1 - s.square() if self.unit
                                else half * (1 - ((s - mid) / half).square()), torch.ones_like)


def search(method: str, residual: Callable, jacobian: Callable, starts: torch.Tensor, box: Box, tol: float,
           max_iter: int | None, lr: float, patience: int | None, progress: float | None,
           report: Callable[[int], None] | None = None):
    """Run one search from starts (E, P, S); returns points (E, P, S), q (E, P) and iterations (E, P).
    ``report(i)``, if given, hears of each of the reference search's iterations (the one search long
    enough to need a progress bar).

    ``residual(s)`` gives r (E, P, R) for states (E, P, S), differentiably (Adam needs its gradient);
    ``jacobian(e, s)`` gives dr/ds (P', R, S) for states s (P', S) of member e, a fresh tensor LM
    may overwrite. See :func:`find_fixed_points` for the methods' rules."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if max_iter is not None and max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter}")
    max_iter = DEFAULT_ITERATIONS[method] if max_iter is None else max_iter
    if method == "reference":
        return _reference_adam(residual, starts, box, max_iter, report=report)
    default_patience, default_progress = STALL[method]
    stall = (patience or default_patience, default_progress if progress is None else progress)
    if method == "lm":
        return _levenberg_marquardt(residual, jacobian, starts, box, tol, max_iter, *stall)
    return _adam(residual, starts, box, tol, max_iter, lr, *stall)


@torch.no_grad()
def _levenberg_marquardt(residual, jacobian, starts, box, tol, max_iter, patience, progress, damping=1e-2,
                         max_damping=1e10):
    """LM in the box's free coordinates v: every iterate is inside the region by construction.

    A^T A and A^T r (A = dr/dv) are kept per point and rebuilt only after an accepted step, so a
    rejected step costs one Cholesky factorisation; the damping follows Nielsen's gain-ratio rule."""
    v = box.to_free(torch.where(box.contains(starts)[..., None], starts, box.clip(starts, 0.999)))
    s = box.from_free(v)
    r = residual(s)
    q = r.square().sum(-1)
    E, P, S = s.shape
    normal, gradient = s.new_empty(E, P, S, S), s.new_empty(E, P, S)
    stale = torch.ones_like(q, dtype=torch.bool)  # normal and gradient not yet built at the iterate
    damping = torch.full_like(q, damping)
    growth = torch.full_like(q, 2.0)  # damping factor after a rejected step; doubles on each rejection
    iterations = torch.zeros_like(q, dtype=torch.long)
    stalled = torch.zeros_like(q, dtype=torch.bool)
    reference, since = q.clone(), torch.zeros_like(iterations)  # progress check for stalls
    for _ in range(max_iter):
        active = (q > tol) & ~stalled
        if not active.any():
            break
        step = torch.zeros_like(s)
        info = torch.ones_like(iterations, dtype=torch.int32)
        for e in range(E):
            rebuild = (active[e] & stale[e]).nonzero().squeeze(1)
            if len(rebuild):
                s_e = s[e, rebuild]
                A = jacobian(e, s_e)
                A.mul_(box.chain(s_e).unsqueeze(-2))
                normal[e, rebuild] = A.mT @ A
                gradient[e, rebuild] = (r[e, rebuild].unsqueeze(-2) @ A).squeeze(-2)
            index = active[e].nonzero().squeeze(1)
            system = normal[e, index]
            system.diagonal(dim1=-2, dim2=-1).add_(damping[e, index, None])
            chol, info[e, index] = torch.linalg.cholesky_ex(system)
            half = torch.linalg.solve_triangular(chol, gradient[e, index].unsqueeze(-1), upper=False)
            step[e, index] = -torch.linalg.solve_triangular(chol.mT, half, upper=True).squeeze(-1)
        stale &= ~active
        v_trial = v + step
        trial = box.from_free(v_trial)
        r_trial = residual(trial)
        q_trial = r_trial.square().sum(-1)
        accept = active & (info == 0) & (q_trial < q) & torch.isfinite(q_trial)
        # gain ratio: the decrease of q over the decrease the linear model predicted
        gain = (q - q_trial) / (step * (damping[..., None] * step - gradient)).sum(-1)
        v = torch.where(accept[..., None], v_trial, v)
        s = torch.where(accept[..., None], trial, s)
        r = torch.where(accept[..., None], r_trial, r)
        q = torch.where(accept, q_trial, q)
        shrink = (1 - (2 * gain - 1) ** 3).clamp(1 / 3, 1)
        damping = torch.where(accept, damping * shrink, torch.where(active, damping * growth, damping))
        growth = torch.where(accept, 2.0, torch.where(active, growth * 2, growth))
        stale |= accept
        progressed = q < reference * (1 - progress)
        reference = torch.where(progressed, q, reference)
        since = torch.where(progressed, 0, since + active.long())
        stalled |= active & ((damping > max_damping) | (since >= patience))
        iterations += active.long()
    return s, q, iterations


def _speed_sq(residual, states):
    return residual(states).square().sum(-1)


def _reference_adam(residual, starts, box, iterations, lr=1e-3, drop_at=0.4, report=None):
    """The reference's search: Adam on sum q, lr / 10 after ``drop_at`` of the iterations, clipped to
    the closed box after every step; every point runs all iterations and the last iterate is kept."""
    s = starts.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([s], lr=lr)
    for i in range(iterations):
        if i == int(drop_at * iterations):
            optimizer.param_groups[0]["lr"] = lr / 10
        optimizer.zero_grad(set_to_none=True)
        _speed_sq(residual, s).sum().backward()
        optimizer.step()
        with torch.no_grad():
            s.copy_(box.clip(s, 1.0))
        if report is not None:
            report(i + 1)
    points = s.detach()
    with torch.no_grad():
        q = _speed_sq(residual, points)
    return points, q, torch.full_like(q, iterations, dtype=torch.long)


def _adam(residual, starts, box, tol, max_iter, lr, patience, progress):
    s = torch.where(box.contains(starts)[..., None], starts, box.clip(starts)).requires_grad_(True)
    optimizer = torch.optim.Adam([s], lr=lr)
    with torch.no_grad():
        best = _speed_sq(residual, s)
    best_s = s.detach().clone()
    reference, since = best.clone(), torch.zeros_like(best, dtype=torch.long)  # progress check for stalls
    iterations = torch.zeros_like(best, dtype=torch.long)
    for _ in range(max_iter):
        active = (best > tol) & (since < patience)
        if not active.any():
            break
        q = _speed_sq(residual, s)
        optimizer.zero_grad(set_to_none=True)
        (q * active).sum().backward()
        optimizer.step()
        with torch.no_grad():
            s.copy_(box.clip(s))
            q = _speed_sq(residual, s)
            progressed = active & (q < reference * (1 - progress))
            reference = torch.where(progressed, q, reference)
            since = torch.where(progressed, 0, since + active.long())
            improved = active & (q < best)
            best = torch.where(improved, q, best)
            best_s = torch.where(improved[..., None], s, best_s)
            iterations += active.long()
    return best_s, best, iterations


def unique_indices(points: torch.Tensor, q: torch.Tensor, distance: float) -> torch.Tensor:
    """Indices of distinct points (P, S): points closer than ``distance`` to a slower one kept are
    the same point; the slowest of each group is kept, in order of speed."""
    kept: list[int] = []
    for i in torch.argsort(q).tolist():
        if all(torch.dist(points[i], points[j]) >= distance for j in kept):
            kept.append(i)
    return torch.tensor(kept, dtype=torch.long)


@dataclass
class FixedPoints:
    """Results of :func:`find_fixed_points`, one entry per start state; index it with a mask or
    indices (``found[found.stable]``) for a subset."""

    points: torch.Tensor       # (P, S) where each search ended
    starts: torch.Tensor       # (P, S) where it began
    q: torch.Tensor            # (P,) ||F(h, x) - h||^2 at the point
    q_start: torch.Tensor      # (P,) the same at the start
    iterations: torch.Tensor   # (P,) iterations spent
    converged: torch.Tensor    # (P,) q <= tol
    in_region: torch.Tensor    # (P,) inside the region the network can visit
    jacobians: torch.Tensor    # (P, S, S) dF/dh at the point
    eigenvalues: torch.Tensor  # (P, S) of the Jacobian, complex, largest modulus first
    method: str
    tol: float

    @property
    def speed(self) -> torch.Tensor:
        """sqrt(q): how far one step moves the state from the point."""
        return self.q.sqrt()

    @property
    def moved(self) -> torch.Tensor:
        """Distance from each start to its point: a search that went far found a point its start
        does not lie near."""
        return (self.points - self.starts).norm(dim=-1)

    @property
    def stable(self) -> torch.Tensor:
        """Linearly stable: every eigenvalue inside the unit circle (perturbations decay)."""
        return self.eigenvalues.abs().amax(-1) < 1

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index) -> "FixedPoints":
        if isinstance(index, int):
            index = [index]
        fields = {name: getattr(self, name)[index] for name in _PER_POINT}
        return FixedPoints(**fields, method=self.method, tol=self.tol)

    def unique(self, distance: float = 1e-3) -> "FixedPoints":
        """One point per group of points closer than ``distance``, the slowest, in order of speed."""
        return self[unique_indices(self.points, self.q, distance)]


_PER_POINT = ("points", "starts", "q", "q_start", "iterations", "converged", "in_region", "jacobians", "eigenvalues")


def jacobian(step: Callable, states: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """dF/dh (P, S, S) at states (P, S) with the input x (I,) held, by autograd. F must treat the
    rows of a batch independently (as any RNN step does): the Jacobian of the batch's sum then holds
    every point's own."""
    inputs = x.expand(len(states), -1)
    summed = torch.autograd.functional.jacobian(lambda s: step(s, inputs).sum(0), states.detach())
    return summed.transpose(0, 1).contiguous()


def find_fixed_points(step: Callable, starts: torch.Tensor, x: torch.Tensor, method: str = "lm",
                      region=None, tol: float = 1e-12, max_iter: int | None = None, lr: float = 1e-3,
                      patience: int | None = None, progress: float | None = None) -> FixedPoints:
    """Search for fixed points of h -> step(h, x) from every start state (P, S), input x (I,) held.

    ``step(h, x)`` takes states (P, S) and inputs (P, I) and returns the next states (P, S);
    :func:`step_function` makes one from a ``torch.nn.GRU``, ``LSTM`` or ``RNN``. ``region``: None
    (anywhere), or a box ``(low, high)`` of numbers or tensors of size S (e.g. ``(-1, 1)``, or
    :func:`reachable_region`): the LM iterates stay inside, Adam's are clipped, and ``in_region``
    says which points ended inside. Starts outside it are first moved inside.

    ``reference`` runs exactly ``max_iter`` iterations (default 100,000). For ``lm`` (default 200)
    and ``adam`` (default 20,000, at ``lr``), a point stops when q <= tol (converged); when it
    stalls, i.e. q has not fallen by the fraction ``progress`` within ``patience`` iterations (LM:
    halve within 10, Adam: 0.1% within 200); for LM, when no damping lowers q; and at ``max_iter``.
    """
    starts, x = starts.detach(), torch.as_tensor(x, dtype=starts.dtype, device=starts.device)
    if starts.ndim != 2:
        raise ValueError(f"starts must be (points, state size), got shape {tuple(starts.shape)}")
    box = Box.everywhere(starts) if region is None else Box(*region, like=starts)
    inputs = x.expand(len(starts), -1)

    def residual(s):  # (1, P, S): the search's member dimension
        return step(s[0], inputs).unsqueeze(0) - s

    def residual_jacobian(_, s):
        J = jacobian(step, s, x)
        J.diagonal(dim1=-2, dim2=-1).sub_(1)
        return J

    points, q, iterations = search(method, residual, residual_jacobian, starts[None], box, tol, max_iter, lr,
                                   patience, progress)
    points, q, iterations = points[0], q[0], iterations[0]
    with torch.no_grad():
        q_start = _speed_sq(residual, starts[None])[0]
    J = jacobian(step, points, x)
    eig = torch.linalg.eigvals(J)
    eig = eig.gather(-1, eig.abs().argsort(-1, descending=True))
    return FixedPoints(points, starts, q, q_start, iterations, q <= tol, box.contains(points), J, eig, method, tol)


def sample_starts(states: torch.Tensor, n: int, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    """``n`` start states (n, S) drawn from states (..., S) the network visited (e.g. all hidden
    states of a batch of trials), without replacement when there are enough, plus Gaussian noise of
    standard deviation ``noise``: starts where the dynamics matter, as FixedPointFinder's users draw them."""
    pool = states.detach().reshape(-1, states.shape[-1])
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise={noise!r} is not allowed: a noise standard deviation is a finite number >= 0")
    if n < 1 or len(pool) == 0:
        raise ValueError(f"need n >= 1 starts from a non-empty set of states; got n={n}, {len(pool)} states")
    g = torch.Generator().manual_seed(seed)
    if n <= len(pool):
        chosen = torch.randperm(len(pool), generator=g)[:n]
    else:
        chosen = torch.randint(len(pool), (n,), generator=g)
    starts = pool[chosen.to(pool.device)]
    return starts + noise * torch.randn(starts.shape, generator=g).to(starts) if noise else starts


@torch.no_grad()
def unroll(step: Callable, inputs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """States (B, T, S) after each step of inputs (B, T, I) from state (B, S): the trajectories of
    any step function, e.g. an LSTM's (h, c), which ``torch.nn.LSTM`` returns only at the end."""
    states = []
    for x in inputs.unbind(1):
        state = step(state, x)
        states.append(state)
    return torch.stack(states, 1)


def step_function(network) -> Callable:
    """F(h, x) of a single-layer ``torch.nn.GRU``, ``LSTM`` or ``RNN`` (its own forward, one step), or
    of a one-member :class:`EnsembleRNN` (whose last input channel is its trigger). An LSTM's
    state is (h, c) concatenated, size 2H."""
    if isinstance(network, EnsembleRNN):
        if network.n_members != 1:
            raise ValueError(f"step_function needs a one-member network, got {network.n_members} members: "
                             f"pass network.member(k)")
        return lambda h, x: network.step(h[None], x[None, :, :-1], x[None, :, -1])[0]
    check_torch_rnn(network)
    H = network.hidden_size

    def step(h, x):
        x = x.unsqueeze(1 if network.batch_first else 0)
        if isinstance(network, nn.LSTM):
            _, (h_next, c_next) = network(x, (h[None, :, :H].contiguous(), h[None, :, H:].contiguous()))
            return torch.cat([h_next[0], c_next[0]], -1)
        return network(x, h[None].contiguous())[1][0]

    return step


def reachable_region(network) -> tuple[torch.Tensor, torch.Tensor]:
    """The box ``(low, high)`` a network's states stay in: (-1, 1) for h of a GRU, LSTM or tanh RNN
    (an LSTM's c is unbounded), for a ``torch.nn`` module or an :class:`EnsembleRNN`."""
    if isinstance(network, EnsembleRNN):
        H, S = network.hidden_size, network.state_size
    else:
        check_torch_rnn(network)
        if isinstance(network, nn.RNN) and network.nonlinearity != "tanh":
            raise ValueError(f"a {network.nonlinearity} RNN's states are unbounded above: pass region=None or "
                             f"a box of your own")
        H = network.hidden_size
        S = 2 * H if isinstance(network, nn.LSTM) else H
    low = torch.cat([torch.full((H,), -1.0), torch.full((S - H,), -torch.inf)])
    return low, -low

