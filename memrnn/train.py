"""Training loop: all seeds of a condition as one ensemble, checkpointed and resumable.

Each member has its own seed for its initial weights and its own data stream, so member k of an
ensemble follows the same trajectory as the network trained alone with that seed. Checkpoints
hold weights, Adam's state and every member's random-generator state, so a run resumed after a
kill ends with the same weights as an uninterrupted one. They are kept: slow-point formation is
traced back through them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import store
from .data import load_dataset
from .evaluate import accuracy_by_delay
from .presets import Config
from .protocols import schedule
from .runs import build_model, data_generators, model_weights, resolve_device, task_spec
from .task import TrialSampler, report_accuracy, trial_loss


def _state_tensors(model, optimizer, generators) -> dict[str, torch.Tensor]:
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    for i, state in optimizer.state_dict()["state"].items():
        tensors.update({f"optim/{i}/{k}": v for k, v in state.items()})
    tensors.update({f"rng/{k}": g.get_state() for k, g in enumerate(generators)})
    return tensors


def _restore(tensors, model, optimizer, generators) -> None:
    model.load_state_dict(model_weights(tensors))
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, i, name = key.split("/")
            state.setdefault(int(i), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    for k, g in enumerate(generators):
        g.set_state(tensors[f"rng/{k}"])


def train(config: Config, out: str | Path = "runs", resume: bool = True, stop_after: int | None = None,
          progress: bool = True) -> Path:
    """Train (or resume, or reuse) the run of ``config`` under ``out``; returns its directory.

    ``stop_after`` ends training early after that step, as a kill would (used to test resuming).
    """
    run_dir = Path(out) / store.run_name(config)
    summary_path = run_dir / store.SUMMARY_FILE
    if resume and summary_path.exists() and "train" in store.read_json(summary_path):
        return run_dir
    device = resolve_device(config.device)
    bank = load_dataset(config.dataset).to(device)
    spec, plan = task_spec(config), schedule(config.protocol, config.dataset, config.steps, config.n_frames)
    sampler = TrialSampler(bank, spec)
    model = build_model(config, bank).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generators = data_generators(config, device)
    start, metrics = 0, []
    found = store.latest_valid_checkpoint(run_dir) if resume else None
    if found:
        start, tensors = found
        _restore(tensors, model, optimizer, generators)
        metrics = [m for m in store.read_json(run_dir / store.METRICS_FILE) if m["step"] <= start]
    store.write_json(run_dir / store.CONFIG_FILE, {**vars(config)})

    loss_sum = torch.zeros(config.seeds, device=device)
    acc_sum = torch.zeros(config.seeds, device=device)
    first_bad = torch.full((config.seeds,), -1, device=device)
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress,
               desc=store.run_name(config), unit="step")
    for step in bar:
        t_max, n_active = plan.at(step)
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        batch = sampler.sample(generators, config.batch_size, t_max, n_active)
        logits = model(batch.frames, batch.trigger)
        loss = trial_loss(logits, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        loss = loss.detach()
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
        loss_sum += loss
        acc_sum += report_accuracy(logits.detach(), batch)
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            _check_finite(first_bad, config)
            n = done - (metrics[-1]["step"] if metrics else 0)
            metrics.append({"step": done, "t_max": t_max, "n_classes": n_active, "lr": config.lr_at(step),
                            "loss": (loss_sum / n).tolist(), "accuracy": (acc_sum / n).tolist()})
            loss_sum.zero_(), acc_sum.zero_()
            bar.set_postfix(loss=f"{np.mean(metrics[-1]['loss']):.3f}", acc=f"{np.mean(metrics[-1]['accuracy']):.3f}")
        if done % config.checkpoint_every == 0 or done == config.steps:
            _check_finite(first_bad, config)
            store.save_checkpoint(run_dir, done, _state_tensors(model, optimizer, generators))
            store.write_json(run_dir / store.METRICS_FILE, metrics)
        if stop_after is not None and done >= stop_after:
            bar.close()
            return run_dir
    bar.close()
    trained = accuracy_by_delay(model, bank, spec.trained_delays, config.eval_trials)
    store.update_summary(run_dir, run=run_dir.name, config=vars(config), train={
        "steps": config.steps, "member_seeds": config.member_seeds,
        "final_loss": metrics[-1]["loss"], "final_batch_accuracy": metrics[-1]["accuracy"],
        "trained_delays": spec.trained_delays, "eval_trials": config.eval_trials,
        "trained_delay_accuracy": trained.overall.mean(1).tolist(),
        "curriculum_events": plan.events()})
    return run_dir


def _check_finite(first_bad: torch.Tensor, config: Config) -> None:
    bad = (first_bad >= 0).nonzero().flatten().tolist()
    if bad:
        k = bad[0]
        raise FloatingPointError(f"non-finite loss at step {int(first_bad[k])} in member {k} "
                                 f"(seed {config.member_seeds[k]}); members affected: {bad}. "
                                 "Try a smaller lr; no checkpoint was written after the failure.")
