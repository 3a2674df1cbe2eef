"""The CPU fast path (memrnn.fused): the same equations as the eager model, to float64 rounding."""
import dataclasses

import pytest
import torch

from memrnn import evaluate, fused, store
from memrnn.data import make_synthetic
from memrnn.evaluate import accuracy_by_delay
from memrnn.models import EnsembleRNN
from memrnn.presets import make_config
from memrnn.task import TaskSpec, TrialSampler, trial_loss
from memrnn.train import Trainer, train

FORMS = [("gru", "reference"), ("gru", "torch"), ("lstm", "reference"), ("lstm", "torch"), ("rnn", "reference")]


def _perturbed(arch, cell, dtype=torch.float64):
    """A small ensemble with every parameter (bias_hh included) away from its initial value."""
    model = EnsembleRNN(arch, 3, 12, 7, seeds=[1, 2, 3], cell=cell).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()), dtype=dtype))
    return model


@pytest.fixture(scope="module")
def bank():
    return make_synthetic(n_train=300, n_test=100, seed=1)


@pytest.fixture
def exact_projection(monkeypatch):
    """The projection in float64 instead of bf16, so the comparison tests the recurrence's equations."""
    monkeypatch.setattr(fused, "BF16", torch.float64)


@pytest.mark.parametrize("arch,cell", FORMS)
def test_fused_unroll_equals_eager_forward_and_gradients(arch, cell, exact_projection):
    model = _perturbed(arch, cell)
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(3, 8, 6, 12, generator=g, dtype=torch.float64)  # 8 trials: a tile of 6 rows and 2 more
    trigger = (torch.rand(3, 8, 6, generator=g) < 0.3).double()
    params = [p for p in model.parameters() if p.requires_grad]
    results = []
    for unroll in (lambda: model(frames, trigger, return_hidden=True), lambda: fused.unroll(model, frames, trigger)):
        logits, hidden = unroll()
        loss = logits.sin().sum() + hidden.cos().sum()  # gradients reach logits and hidden states
        results.append([logits, hidden, *torch.autograd.grad(loss, params)])
    for eager, fast in zip(*results):
        torch.testing.assert_close(fast, eager, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_fused_unroll_is_bit_identical_on_any_number_of_threads(arch):
    """Members are shared out over OpenMP threads, each computed whole by one: one thread or two give
    the same bits, forward and backward (3 members, hidden size 20: padded rows; 6 trials: a tile's tail)."""
    model = EnsembleRNN(arch, 3, 12, 20, seeds=[1, 2, 3])
    g = torch.Generator().manual_seed(0)
    frames, trigger = torch.randn(3, 6, 9, 12, generator=g), (torch.rand(3, 6, 9, generator=g) < 0.3).float()
    params = [p for p in model.parameters() if p.requires_grad]
    threads, results = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            logits, hidden = fused.unroll(model, frames, trigger)
            results.append([logits, hidden, *torch.autograd.grad(logits.sin().sum() + hidden.cos().sum(), params)])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(one, two) for one, two in zip(*results))


@pytest.mark.parametrize("arch,cell", FORMS)
def test_inference_step_equals_recur(arch, cell):
    """Given a frame without bias, member by member along its second axis, the inference step is the
    model's update of the input projected with bias_ih, plus the extra row when one is given."""
    model = _perturbed(arch, cell)
    g = torch.Generator().manual_seed(1)
    state = torch.rand(3, 5, model.state_size, generator=g, dtype=torch.float64) - 0.5
    frame = torch.randn(5, 3, model.weight_hh.shape[-1], generator=g, dtype=torch.float64)
    extra, offset = (torch.randn(3, 1, frame.shape[-1], generator=g, dtype=torch.float64) for _ in range(2))
    step = fused.inference_step(model)
    projected = frame.transpose(0, 1) + model.bias_ih
    with torch.no_grad():
        torch.testing.assert_close(step(state, frame), model.recur(state, projected), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(step(state, frame, extra), model.recur(state, projected + extra), rtol=1e-12,
                                   atol=1e-12)
        torch.testing.assert_close(fused.inference_step(model, offset)(state, frame),
                                   model.recur(state, projected + offset), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_inference_step_reads_a_bf16_frame_as_its_float_value(arch):
    """A bf16 frame steps exactly as its float32 value does: the kernel widens each value and adds the
    bias, then the extra row, in the order torch would; member-major or batch-major alike."""
    model = EnsembleRNN(arch, 3, 12, 21, seeds=[1, 2, 3])
    g = torch.Generator().manual_seed(2)
    state = torch.rand(3, 7, model.state_size, generator=g) - 0.5
    frame = torch.randn(7, 3, model.weight_hh.shape[-1], generator=g).to(torch.bfloat16)
    extra = torch.randn(3, 1, frame.shape[-1], generator=g)
    step = fused.inference_step(model)
    member_major = frame.transpose(0, 1).contiguous().transpose(0, 1)  # rows G apart, members 7 G apart
    for row in (None, extra):
        assert torch.equal(step(state, frame, row), step(state, frame.float(), row))
        assert torch.equal(step(state, member_major, row), step(state, frame, row))
    with pytest.raises(ValueError, match="frame in bf16 or torch.float32"):
        step(state, frame.double())
    with pytest.raises(ValueError, match=r"\(B, 3, "):
        step(state, frame[:, :2])
    with pytest.raises(ValueError, match=rf"state \(E, B, {model.state_size}\)"):
        step(state[..., :-1], frame)


def test_bf16_unroll_is_close_to_float32():
    """bf16 inputs to the projection only: logits within bf16's relative precision (2^-8) of float32."""
    model = EnsembleRNN("gru", 2, 784, 32, seeds=[0, 1])
    g = torch.Generator().manual_seed(0)
    frames = 0.3 * torch.randn(2, 8, 20, 784, generator=g) + 0.13
    trigger = torch.zeros(2, 8, 20)
    trigger[:, :, 10] = 1
    fast_logits, _ = fused.unroll(model, frames, trigger)
    eager_logits = model(frames, trigger)
    torch.testing.assert_close(fast_logits, eager_logits, rtol=0, atol=0.02)
    assert (fast_logits - eager_logits).abs().max() > 0  # bf16 was in use


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_saturated_gates_stay_finite_in_float32(arch, monkeypatch):
    """Pre-activations far beyond exp's float range (|x| > 88) saturate the gates as torch's do; they once
    made the kernels' fast-math division NaN (a GRU's tanh late in a long Fashion-MNIST run). The
    projection in float32, so that only the kernels' arithmetic is compared."""
    monkeypatch.setattr(fused, "BF16", torch.float32)
    model = EnsembleRNN(arch, 2, 16, 8, seeds=[0, 1])
    with torch.no_grad():
        model.weight_ih.mul_(400)
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(2, 4, 6, 16, generator=g)
    trigger = torch.zeros(2, 4, 6)
    trigger[:, :, 5] = 1
    fast_logits, fast_hidden = fused.unroll(model, frames, trigger)
    eager_logits, eager_hidden = model(frames, trigger, return_hidden=True)
    assert torch.isfinite(fast_hidden).all() and eager_hidden.abs().max() > 0.999  # saturated, and finite
    torch.testing.assert_close(fast_hidden, eager_hidden, rtol=0, atol=1e-4)


@pytest.mark.parametrize("arch,cell", FORMS)
def test_bf16_gradients_are_close_to_float32(arch, cell):
    """bf16 projection and recurrent weight gradient (fp32 accumulation): every parameter's gradient
    within 2% of float32's in norm (measured: 0.3-0.5%, bf16's 2^-8), and not equal to it."""
    model = EnsembleRNN(arch, 2, 784, 32, seeds=[0, 1], cell=cell)
    g = torch.Generator().manual_seed(0)
    frames = 0.3 * torch.randn(2, 8, 20, 784, generator=g) + 0.13
    trigger = torch.zeros(2, 8, 20)
    trigger[:, :, 10] = 1
    targets = torch.randint(0, 11, (2, 8, 20), generator=g)
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    gradients = []
    for unroll in (lambda: model(frames, trigger), lambda: fused.unroll(model, frames, trigger)[0]):
        loss = torch.nn.functional.cross_entropy(unroll().flatten(0, 2), targets.flatten())
        gradients.append(dict(zip(params, torch.autograd.grad(loss, list(params.values())))))
    eager, fast = gradients
    for name in params:
        assert (fast[name] - eager[name]).norm() < 0.02 * eager[name].norm(), name
    assert not torch.equal(fast["weight_hh"], eager["weight_hh"])


@pytest.mark.parametrize("noise", ["torch", "philox"])
def test_time_major_batch_is_the_eager_batch_truncated_at_t_max(bank, noise):
    """Drawn from the same generators, the fast path's batch is the eager sampler's, noise included (torch's
    draws, or the same Philox stream filled in the same order), cut at T_max: bit for bit in float32, and
    rounded to bf16 where it is drawn into the projection's matrix. So float32 and fast twins of one
    configuration differ only in arithmetic."""
    sampler, seeds, t_max = TrialSampler(bank, TaskSpec(noise=noise)), [3, 4, 5], 8
    fast, ready = (sampler.sample_time_major([torch.Generator().manual_seed(s) for s in seeds], 400, t_max, 10,
                                             projection=projection) for projection in (False, True))
    eager = sampler.sample([torch.Generator().manual_seed(s) for s in seeds], 400, t_max, 10)
    assert fast.frames.shape == (3, 400, t_max, bank.dim) and fast.frames.transpose(1, 2).is_contiguous()
    for field in ("labels", "stimulus_time", "report_time"):
        assert torch.equal(getattr(fast, field), getattr(eager, field)), field
    for field in ("frames", "targets", "weights", "trigger"):
        assert torch.equal(getattr(fast, field), getattr(eager, field)[:, :, :t_max]), field
    assert torch.equal(ready.frames, eager.frames[:, :, :t_max].to(torch.bfloat16))
    cut = fast.frames.masked_select((torch.arange(t_max) != fast.stimulus_time[..., None])[..., None])
    assert abs(cut.mean() - bank.noise_mean) < 0.01 and abs(cut.std() - bank.noise_std) < 0.01
    alone = sampler.sample_time_major([torch.Generator().manual_seed(seeds[1])], 400, t_max, 10)
    assert torch.equal(alone.frames[0], fast.frames[1])  # member k depends on its own generator only


def test_the_two_noises_are_different_draws(bank):
    """noise=philox is another stream than torch's, from the same generator state."""
    draws = [TrialSampler(bank, TaskSpec(noise=noise)).sample([torch.Generator().manual_seed(3)], 50, 20, 10)
             for noise in ("torch", "philox")]
    assert torch.equal(draws[0].labels, draws[1].labels) and not torch.equal(draws[0].frames, draws[1].frames)


@pytest.mark.parametrize("noise", ["torch", "philox"])
def test_float32_and_fast_twins_take_the_same_first_step(noise):
    """Twins that differ only in ``fast`` see the same batch: their first losses agree to bf16 rounding of
    the projection (measured: 2e-5 of the loss; the fast twin with the other noise: 1.4e-3)."""
    losses = []
    for fast in (False, True):
        trainer = Trainer.build(make_config("smoke", noise=noise, fast=fast, device="cpu", batch_size=64))
        sampler = TrialSampler(trainer.bank, TaskSpec(noise=noise))
        losses.append(trainer.step(sampler, 20, 10, 1e-3)[0])
    torch.testing.assert_close(losses[1], losses[0], rtol=2e-4, atol=0)


def test_projection_batch_is_the_float32_batch_in_bf16_and_unrolls_alike(bank):
    """Drawn straight into the projection's matrix, the batch holds the float32 batch's values rounded to
    bf16, the trigger column and the constant 1; the unroll that multiplies it is the one that builds it."""
    sampler, D = TrialSampler(bank, TaskSpec()), bank.dim
    plain, ready = (sampler.sample_time_major([torch.Generator().manual_seed(s) for s in (3, 4)], 16, 8, 10,
                                              projection=projection) for projection in (False, True))
    assert ready.frames.dtype == torch.bfloat16 and torch.equal(ready.frames, plain.frames.to(torch.bfloat16))
    assert torch.equal(ready.inputs[..., D], plain.trigger.transpose(1, 2).reshape(2, -1).to(torch.bfloat16))
    assert (ready.inputs[..., D + 1] == 1).all() and torch.equal(ready.targets, plain.targets)
    model = EnsembleRNN("gru", 2, D, 8, seeds=[0, 1])
    for a, b in zip(fused.unroll(model, ready.frames, ready.trigger, ready.inputs),
                    fused.unroll(model, plain.frames, plain.trigger)):
        assert torch.equal(a, b)


def test_truncated_batch_has_the_loss_of_the_full_one(bank):
    """Frames from T_max on carry no loss, so dropping them leaves the loss (a mean over all frames) unchanged."""
    spec = TaskSpec()
    model = EnsembleRNN("gru", 2, bank.dim, 16, seeds=[0, 1]).double()
    full = TrialSampler(bank, spec).sample([torch.Generator().manual_seed(s) for s in (0, 1)], 5, 9, 10)
    short = type(full)(full.frames[:, :, :9], full.trigger[:, :, :9], full.targets[:, :, :9], full.weights[:, :, :9],
                       full.labels, full.stimulus_time, full.report_time, full.n_active, spec)
    assert (full.weights[:, :, 9:] == 0).all()
    full_loss = trial_loss(model(full.frames.double(), full.trigger.double()), full)
    short_loss = trial_loss(model(short.frames.double(), short.trigger.double()), short)
    torch.testing.assert_close(short_loss, full_loss, rtol=1e-12, atol=0)


def test_fast_probe_is_the_eager_probe_given_its_noise(exact_projection, monkeypatch):
    """In float64, with the projection exact and the eager probe's noise draws in place of the fast
    path's own stream, the fast probe's answers are the eager probe's: same trials, the same map
    (rounding at 1e-16 cannot flip an argmax but by an exact tie)."""
    monkeypatch.setattr(evaluate, "BF16", torch.float64)
    monkeypatch.setattr(evaluate, "NORMAL_COST", float("inf"))  # pixel noise, which the eager probe draws too
    monkeypatch.setattr(evaluate, "_bf16_noise", lambda n, bank, generator: torch.randn(
        n, bank.dim, generator=generator, dtype=torch.float64) * bank.noise_std + bank.noise_mean)
    torch.set_default_dtype(torch.float64)
    try:
        trainer = Trainer.build(make_config("smoke", hidden_size=16))
        bank = dataclasses.replace(trainer.bank, test_images=trainer.bank.test_images.double())
        eager = accuracy_by_delay(trainer.model, bank, [4, 9, 30], 40)
        fast = accuracy_by_delay(trainer.model, bank, [4, 9, 30], 40, fast=True)
    finally:
        torch.set_default_dtype(torch.float32)
    assert trainer.model.weight_hh.dtype == torch.float64
    assert torch.equal(eager.overall, fast.overall) and torch.equal(eager.accuracy, fast.accuracy)


def test_fast_probe_draws_its_own_noise_stream(monkeypatch):
    """On the fast path the probe's noise is the Philox stream keyed by the probe's generator: the same
    seed gives the same draws and answers, another seed other draws (here the projected form's
    standard normals: hidden size 16 makes it the cheaper)."""
    trainer = Trainer.build(make_config("smoke", hidden_size=16))
    assert evaluate.FastNoise(trainer.model, trainer.bank).mode == "projected"
    drawn = []
    real = evaluate.noise.normal_

    def spy(out, *args, **kwargs):
        drawn.append(real(out, *args, **kwargs).clone())
        return drawn[-1]

    monkeypatch.setattr(evaluate.noise, "normal_", spy)
    answers = [accuracy_by_delay(trainer.model, trainer.bank, [30], 8, seed=seed, fast=True).overall
               for seed in (0, 0, 1)]
    first, again, other = (torch.cat([d.flatten() for d in drawn[k * 2: k * 2 + 2]]) for k in range(3))  # 16 + 14
    assert torch.equal(first, again) and not torch.equal(first, other) and torch.equal(answers[0], answers[1])
    assert abs(first.float().mean()) < 0.01 and abs(first.float().std() - 1) < 0.01


def test_projected_noise_has_the_distribution_of_projected_pixel_noise(bank):
    """Known answer: member e's projected frames (bf16) plus the step's offset are Gaussian with mean
    mean x (column sums of W_e) and covariance std^2 W_e^T W_e, W_e its pixel weights; member 1 has a dead
    input unit, so its covariance is singular and its factor comes from the eigendecomposition."""
    model = EnsembleRNN("lstm", 2, bank.dim, 6, seeds=[4, 5]).double()
    with torch.no_grad():
        model.weight_ih[1, :, 3] = 0
    source = evaluate.FastNoise(model, bank)
    assert source.mode == "projected"
    # (40, 500, E, G); each frame copied before the next chunk overwrites the buffer it lies in
    frames = torch.stack([f.clone() for f in source.frames(500, 40, torch.Generator().manual_seed(0))])
    samples = frames.flatten(0, 1).transpose(0, 1).double() + source.offset  # (E, 20000, G)
    weight = model.weight_ih[:, :-1].detach()
    mean = bank.noise_mean * weight.sum(1)
    covariance = bank.noise_std ** 2 * weight.transpose(1, 2) @ weight
    scale = covariance.diagonal(dim1=1, dim2=2).max().sqrt()
    centred = samples - samples.mean(1, keepdim=True)
    assert (samples.mean(1) - mean).abs().max() < 4 * scale / 20000 ** 0.5
    assert (centred.transpose(1, 2) @ centred / 20000 - covariance).abs().max() < 0.05 * scale ** 2
    assert samples[1, :, 3].abs().max() < 1e-6  # the dead unit gets no input


def test_fast_probe_of_a_cnn_model_is_the_eager_probe_given_its_noise(exact_projection, monkeypatch):
    """A CNN front end: the fast probe passes the shared pixel noise through each member's CNN before
    the projection, as the eager probe does (float64, the eager probe's noise draws in place)."""
    monkeypatch.setattr(evaluate, "BF16", torch.float64)
    monkeypatch.setattr(evaluate, "_bf16_noise", lambda n, bank, generator: torch.randn(
        n, bank.dim, generator=generator, dtype=torch.float64) * bank.noise_std + bank.noise_mean)
    bank = make_synthetic(n_train=50, n_test=40, seed=2)
    bank = dataclasses.replace(bank, test_images=bank.test_images.double())
    model = EnsembleRNN("gru", 2, bank.dim, 8, image_shape=(1, 28, 28), conv=True, seeds=[0, 1]).double()
    eager, fast = (accuracy_by_delay(model, bank, [3, 20], 40, fast=fast) for fast in (False, True))
    assert torch.equal(eager.overall, fast.overall)


def _run_tensors(run_dir):
    return store.load_checkpoint(run_dir, store.checkpoint_steps(run_dir)[-1])


def test_fast_training_is_bit_identical_run_to_run_and_after_resume(tmp_path):
    config = make_config("smoke", steps=30, checkpoint_every=10, log_every=5, protocol="decu", fast=True)
    runs = [train(config, tmp_path / name, progress=False) for name in ("a", "b")]
    killed = train(config, tmp_path / "c", progress=False, stop_after=10)
    runs.append(train(config, tmp_path / "c", progress=False))
    assert killed == runs[2]
    first = _run_tensors(runs[0])
    for other in runs[1:]:
        tensors = _run_tensors(other)
        assert all(torch.equal(first[k], tensors[k]) for k in first), other
        assert store.read_json(other / store.METRICS_FILE) == store.read_json(runs[0] / store.METRICS_FILE)


def test_fused_unroll_with_cnn_front_end_equals_eager(exact_projection):
    """With a CNN front end the projection's input gradient reaches the CNN: its gradients match too."""
    model = EnsembleRNN("lstm", 2, 3 * 8 * 8, 5, image_shape=(3, 8, 8), conv=True, seeds=[1, 2]).double()
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(2, 3, 4, 3 * 8 * 8, generator=g, dtype=torch.float64)
    trigger = (torch.rand(2, 3, 4, generator=g) < 0.3).double()
    params = [p for p in model.parameters() if p.requires_grad]
    results = []
    for unroll in (lambda: model(frames, trigger, return_hidden=True), lambda: fused.unroll(model, frames, trigger)):
        logits, hidden = unroll()
        results.append([logits, *torch.autograd.grad(logits.sin().sum() + hidden.cos().sum(), params)])
    for eager, fast in zip(*results):
        torch.testing.assert_close(fast, eager, rtol=1e-10, atol=1e-12)
