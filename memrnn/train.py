"""Training loop: all seeds of a condition as one ensemble, checkpointed and resumable.

Each member has its own seed for its initial weights and its own data stream, so member k of an
ensemble follows the same trajectory as the network trained alone with that seed. Checkpoints
hold weights, Adam's state and every member's random-generator state, so a run resumed after a
kill ends with the same weights as an uninterrupted one. They are kept: slow-point formation is
traced back through them.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import fused, store
from .adam import make_adam
from .data import ImageBank, load_dataset
from .evaluate import accuracy_by_delay
from .models import EnsembleRNN
from .progress import Reporter
from .presets import Config, estimate_bytes
from .protocols import schedule
from .runs import build_model, data_generators, load_model_weights, resolve_device, task_spec
from .task import TrialSampler, report_accuracy, trial_loss


def _state_tensors(model, optimizer, generators) -> dict[str, torch.Tensor]:
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    for i, state in optimizer.state_dict()["state"].items():
        tensors.update({f"optim/{i}/{k}": v for k, v in state.items()})
    tensors.update({f"rng/{k}": g.get_state() for k, g in enumerate(generators)})
    return tensors


def _restore(tensors, model, optimizer, generators, source: str) -> None:
    load_model_weights(model, tensors, source)
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, i, name = key.split("/")
            state.setdefault(int(i), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    for k, g in enumerate(generators):
        g.set_state(tensors[f"rng/{k}"])


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every parameter group at ``lr``, times the group's ``lr_scale`` where it has one (see
    ``regularize.fresh_adam_groups``)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1)


@dataclass
class Trainer:
    """What a training loop changes (model, Adam, the members' data streams), built from a config."""

    config: Config
    bank: ImageBank
    model: EnsembleRNN
    optimizer: torch.optim.Optimizer
    generators: list[torch.Generator]

    @classmethod
    def build(cls, config: Config) -> "Trainer":
        device = resolve_device(config.device)
        bank = load_dataset(config.dataset).to(device)
        model = build_model(config, bank).to(device)
        optimizer = make_adam(model.parameters(), config.adam, config.lr, fused=config.fast or None)
        return cls(config, bank, model, optimizer, data_generators(config, device))

    @property
    def fused(self) -> bool:
        """The CPU fast path: time-major batches of T_max frames, the fused recurrence, bf16 projection."""
        return self.config.fast and self.model.weight_hh.device.type == "cpu"

    def sample(self, sampler: TrialSampler, t_max: int, n_active: int):
        if self.fused:
            return sampler.sample_time_major(self.generators, self.config.batch_size, t_max, n_active,
                                             projection=self.model.frontend is None)
        return sampler.sample(self.generators, self.config.batch_size, t_max, n_active, self.config.seeds)

    def unroll(self, batch):
        """Logits and hidden states of a batch; on the fast path in bf16 with float32 master weights
        (CPU: ``memrnn.fused``; GPU: compiled under bf16 autocast, logits cast back for the loss)."""
        if not self.config.fast:
            return self.model(batch.frames, batch.trigger, return_hidden=True)
        if self.fused:
            return fused.unroll(self.model, batch.frames, batch.trigger, batch.inputs)
        if not hasattr(self, "_compiled"):
            self._compiled = torch.compile(self.model)
        device = self.model.weight_hh.device
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits, hidden = self._compiled(batch.frames, batch.trigger, return_hidden=True)
        return logits.float(), hidden.float()

    def step(self, sampler: TrialSampler, t_max: int, n_active: int, lr: float, penalty=None, step: int = 0):
        """One optimiser step on a fresh batch; returns per-member loss, penalty and batch accuracy (detached)."""
        set_lr(self.optimizer, lr)
        batch = self.sample(sampler, t_max, n_active)
        logits, hidden = self.unroll(batch)
        loss = trial_loss(logits, batch)
        extra = penalty(step, self.model, hidden) if penalty else torch.zeros_like(loss)
        self.optimizer.zero_grad(set_to_none=True)
        (loss + extra).sum().backward()
        self.optimizer.step()
        return loss.detach(), extra.detach(), report_accuracy(logits.detach(), batch)

    def resume(self, run_dir: Path) -> tuple[int, list[dict], dict[str, torch.Tensor]]:
        """Restore the newest valid checkpoint of ``run_dir``; returns its step, metrics and tensors."""
        found = store.latest_valid_checkpoint(run_dir)
        if not found:
            return 0, [], {}
        step, tensors = found
        _restore(tensors, self.model, self.optimizer, self.generators, f"checkpoint step {step} of {run_dir}")
        return step, store.checkpoint_metrics(run_dir, step), tensors

    def fit(self, run_dir: Path, start: int, end: int, metrics: list[dict], task_at, lr_at,
            penalty=None, stop_after: int | None = None, progress: bool = True) -> bool:
        """Train from step ``start`` to ``end``, logging into ``metrics`` and checkpointing.

        ``task_at(step)`` gives (T_max, active classes), ``lr_at(step)`` the learning rate, and
        ``penalty(step, model, hidden)``, if given, a per-member term added to the loss. Returns
        False when stopped early by ``stop_after``."""
        config, model, optimizer = self.config, self.model, self.optimizer
        sampler = TrialSampler(self.bank, task_spec(config))
        device = model.weight_hh.device
        sums = torch.zeros(3, config.seeds, device=device)  # loss, accuracy, penalty since last log
        first_bad = torch.full((config.seeds,), -1, device=device)
        bar = tqdm(range(start, end), initial=start, total=end, disable=not progress, desc=run_dir.name, unit="step")
        report = Reporter(run_dir.name, start, end)  # for a runner that cannot see this bar (memrnn.progress)
        for step in bar:
            t_max, n_active = task_at(step)
            loss, extra, accuracy = self.step(sampler, t_max, n_active, lr_at(step), penalty, step)
            total = loss + extra
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(total), step, first_bad)
            sums += torch.stack([loss, accuracy, extra])
            done = step + 1
            report(done)
            if done % config.log_every == 0 or done == end:
                _check_finite(first_bad, config)
                n = done - (metrics[-1]["step"] if metrics else start)
                loss_mean, acc_mean, penalty_mean = (sums / n).tolist()
                entry = {"step": done, "t_max": t_max, "n_classes": n_active, "lr": lr_at(step),
                         "loss": loss_mean, "accuracy": acc_mean}
                metrics.append({**entry, "penalty": penalty_mean} if penalty else entry)
                sums.zero_()
                bar.set_postfix(loss=f"{np.mean(loss_mean):.3f}", acc=f"{np.mean(acc_mean):.3f}")
            if done % config.checkpoint_every == 0 or done == end:
                _check_finite(first_bad, config)
                tensors = _state_tensors(model, optimizer, self.generators)
                if hasattr(penalty, "state"):
                    tensors.update({f"penalty/{k}": v for k, v in penalty.state().items()})
                store.save_checkpoint(run_dir, done, tensors, metrics)
                store.write_json(store.run_file(run_dir, store.METRICS_FILE), metrics)
            if stop_after is not None and done >= stop_after:
                bar.close()
                return False
        bar.close()
        return True

    def trained_delay_accuracy(self) -> list[float]:
        spec = task_spec(self.config)
        result = accuracy_by_delay(self.model, self.bank, spec.trained_delays, self.config.eval_trials,
                                   fast=self.config.fast)
        return result.overall.mean(1).tolist()


def train(config: Config, out: str | Path = "runs", resume: bool = True, stop_after: int | None = None,
          progress: bool = True) -> Path:
    """Train (or resume, or reuse) the run of ``config`` under ``out``; returns its directory.

    ``stop_after`` ends training early after that step, as a kill would (used to test resuming).
    """
    run_dir = Path(out) / store.run_name(config)
    check_resources(config, out)
    with store.run_lock(run_dir):
        try:
            return _train_locked(config, run_dir, resume, stop_after, progress)
        except Exception:
            if {p.name for p in run_dir.iterdir()} <= {".lock", store.CONFIG_FILE}:  # leave no empty run behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise


def _train_locked(config: Config, run_dir: Path, resume: bool, stop_after: int | None, progress: bool) -> Path:
    summary_path = store.run_file(run_dir, store.SUMMARY_FILE)
    if not resume:
        for path in run_dir.iterdir():  # --fresh: start over, whatever state the old files are in (links removed, not followed)
            if path.name != ".lock":
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    else:
        if os.path.lexists(store.run_file(run_dir, store.CONFIG_FILE)):
            store.read_config(run_dir)  # another run's or an edited configuration is never resumed or reused
        if os.path.lexists(summary_path) and "train" in _readable(summary_path):
            _readable_checkpoint(run_dir)
            return run_dir
    trainer = Trainer.build(config)
    start, metrics, _ = trainer.resume(run_dir) if resume else (0, [], {})
    store.write_json(store.run_file(run_dir, store.CONFIG_FILE), {**vars(config)})
    plan = schedule(config.protocol, config.dataset, config.steps, config.n_frames)
    if not trainer.fit(run_dir, start, config.steps, metrics, plan.at, config.lr_at, None, stop_after, progress):
        return run_dir
    store.write_json(store.run_file(run_dir, store.METRICS_FILE), metrics)  # a kill may have left it behind its checkpoint
    store.update_summary(run_dir, run=run_dir.name, config=vars(config), train={
        "steps": config.steps, "member_seeds": config.member_seeds,
        "final_loss": metrics[-1]["loss"], "final_batch_accuracy": metrics[-1]["accuracy"],
        "trained_delays": task_spec(config).trained_delays, "eval_trials": config.eval_trials,
        "trained_delay_accuracy": trainer.trained_delay_accuracy(),
        "curriculum_events": plan.events()})
    return run_dir


def _readable(path: Path) -> dict:
    try:
        return store.read_json(path, dict)
    except store.CorruptCheckpointError as e:
        raise store.CorruptCheckpointError(f"{e}; retrain with `memrnn train --fresh` (same options)") from None


def _readable_checkpoint(run_dir: Path) -> None:
    """A finished run is reused only if its final checkpoint still verifies."""
    try:
        store.trained_step(run_dir)
    except (KeyError, store.CorruptCheckpointError) as e:
        raise store.CorruptCheckpointError(f"{run_dir} finished training but its final checkpoint is unusable "
                                           f"({e}); retrain with `memrnn train --fresh` (same options)") from None


def check_resources(config: Config, out: str | Path, steps: int | None = None) -> None:
    """Refuse a run (or ``steps`` more steps of it, a fine-tuning's) whose estimated memory or checkpoint
    disk use exceeds what this machine has."""
    memory, disk = estimate_bytes(config, steps)
    if config.device != "cpu" and resolve_device(config.device).type == "cuda":
        available, where = torch.cuda.mem_get_info()[1], "GPU memory"
    else:
        available, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "memory"
    if memory > available:
        raise ValueError(f"this run needs about {memory / 2**30:.1f} GiB of {where} but there is "
                         f"{available / 2**30:.1f} GiB: lower seeds, hidden_size or batch_size")
    existing = Path(out).resolve()
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if disk > free:
        raise ValueError(f"its checkpoints would take about {disk / 2**30:.1f} GiB but {existing} has "
                         f"{free / 2**30:.1f} GiB free: lower steps or raise checkpoint_every")


def _check_finite(first_bad: torch.Tensor, config: Config) -> None:
    bad = (first_bad >= 0).nonzero().flatten().tolist()
    if bad:
        k = bad[0]
        raise FloatingPointError(f"non-finite loss at step {int(first_bad[k])} in member {k} "
                                 f"(seed {config.member_seeds[k]}); members affected: {bad}. "
                                 "Try a smaller lr; no checkpoint was written after the failure.")
