"""CIFAR-10 as the reference's code runs it (TriggerCIFARCloud.py, BlackBoxCIFAR.py, TriggerCIFARSpeedCont.py):
the CNN's equations, its initial statistics, Adam's step on its conv weights in training and fine-tuning, the
fine-tuning length, the centroid trials, and a run on files in CIFAR-10's format."""
import dataclasses

import numpy as np
import pytest
import torch

from memrnn import store
from memrnn.ablation import switches
from memrnn.adam import make_adam
from memrnn.data import load_dataset, make_synthetic
from memrnn.evidence import model_form_label
from memrnn.models import EnsembleRNN
from memrnn.presets import make_config
from memrnn.regularize import finetune, fresh_adam_groups
from memrnn.runs import build_model
from memrnn.slowpoints import class_centroids
from memrnn.train import set_lr, train
from test_data import fake_cifar

SHAPE = (3, 32, 32)
TRUNCATED_STD = 0.8796  # std of N(0, 1) truncated to [-2, 2], TensorFlow's truncated_normal(stddev=1)


def _cnn(form, E=1, shape=SHAPE, seeds=None):
    return EnsembleRNN("gru", E, int(np.prod(shape)), 4, image_shape=shape, conv=True, seeds=seeds, cnn=form)


def _numpy_cnn(frontend, k, frames, divided, slope):
    """The reference's CNN in NumPy, in TensorFlow's layout (NHWC images, kernels (3, 3, c_in, c_out),
    flattening in (h, w, c) order), from member k's trained variables; ``divided``: kernels / sqrt(c_in c_out)
    and biases / sqrt(c_out) in the forward pass, as the reference."""
    def leaky(x):
        return np.where(x > 0, x, slope * x)

    x = frames.reshape(-1, *SHAPE).transpose(0, 2, 3, 1)
    for v, b in zip(frontend.conv_weights, frontend.conv_biases):
        kernel = v[k].detach().numpy().transpose(2, 3, 1, 0)
        bias = b[k].detach().numpy()
        c_in, c_out = kernel.shape[2:]
        if divided:
            kernel, bias = kernel / np.sqrt(c_in * c_out), bias / np.sqrt(c_out)
        n, h, w, _ = x.shape
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # padding SAME, stride 1
        x = leaky(sum(padded[:, i:i + h, j:j + w] @ kernel[i, j] for i in range(3) for j in range(3)) + bias)
        x = x.reshape(n, h // 2, 2, w // 2, 2, c_out).max((2, 4))  # 2x2 max-pool, stride 2
    n, h, w, c = x.shape
    x = x.reshape(n, -1)
    # memrnn flattens (c, h, w): the same fc1 with its rows in TensorFlow's (h, w, c) order
    fc1 = frontend.fc1_weight[k].detach().numpy().reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)
    for weight, bias in ((fc1, frontend.fc1_bias), (frontend.fc2_weight[k].detach().numpy(), frontend.fc2_bias),
                         (frontend.fc3_weight[k].detach().numpy(), frontend.fc3_bias)):
        x = leaky(x @ weight + bias[k, 0].detach().numpy())
    return x


@pytest.mark.parametrize("form, divided, slope", [("reference", True, 0.2), ("plain", False, 0.01)])
def test_cnn_is_the_reference_cnn_by_hand(form, divided, slope):
    model = _cnn(form, E=2, seeds=[5, 6]).double()
    frames = torch.rand(2, 3, int(np.prod(SHAPE)), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    features = model.frontend(frames).detach().numpy()
    for k in range(2):
        expected = _numpy_cnn(model.frontend, k, frames[k].numpy(), divided, slope)
        assert (expected < 0).mean() > 0.1  # the leaky-ReLU slope is seen
        np.testing.assert_allclose(features[k], expected, rtol=1e-9, atol=1e-12)


def test_reference_cnn_initial_statistics():
    """Trained variables: kernels truncated N(0, 1), biases 0.1; effective weights: kernels std 0.88 / sqrt(c_in
    c_out) (0.045 for conv1, 0.0069 for conv2 and conv3), biases 0.1 / sqrt(128). The plain form keeps
    N(0, 1) / sqrt(9 c_in) (0.19, 0.029) and biases 0.01 N(0, 1)."""
    reference, plain = _cnn("reference", E=2, seeds=[0, 1]), _cnn("plain", E=2, seeds=[0, 1])
    for i, c_in in enumerate((3, 128, 128)):
        v = reference.frontend.conv_weights[i].detach()
        se = 4 * TRUNCATED_STD / np.sqrt(2 * v.numel())  # 4 standard errors of the std
        assert v.abs().max() <= 2 and abs(v.std() - TRUNCATED_STD) < se
        effective = v / reference.frontend.divisors[f"conv_weights.{i}"]
        assert abs(effective.std() * np.sqrt(c_in * 128) - TRUNCATED_STD) < se
        bias = reference.frontend.conv_biases[i].detach()
        assert (bias == 0.1).all() and reference.frontend.divisors[f"conv_biases.{i}"] == np.sqrt(128)
        w = plain.frontend.conv_weights[i].detach()
        assert abs(w.std() * np.sqrt(9 * c_in) - 1) < 4 / np.sqrt(2 * w.numel())
        assert abs(plain.frontend.conv_biases[i].detach().std() / 0.01 - 1) < 4 / np.sqrt(2 * 256)
    assert reference.frontend.divisors["conv_weights.0"] == np.sqrt(3 * 128)
    assert reference.frontend.divisors["conv_weights.1"] == 128 and plain.frontend.divisors == {}


def _first_adam_step(model, optimizer):
    """The change of every effective conv weight and bias after one Adam step, with the trained variables'
    gradients."""
    frontend = model.frontend
    def effective():
        return {f"frontend.{kind}.{i}": getattr(frontend, kind)[i].detach() / frontend.divisors.get(f"{kind}.{i}", 1)
                for kind in ("conv_weights", "conv_biases") for i in range(3)}
    frames = torch.rand(1, 6, int(np.prod(model.frontend.image_shape)), generator=torch.Generator().manual_seed(2))
    before = effective()
    optimizer.zero_grad()
    (model.frontend(frames) * 100).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if name in before}
    optimizer.step()
    return {name: (after - before[name], grads[name]) for name, after in effective().items()}


@pytest.mark.parametrize("form", ["reference", "plain"])
def test_training_steps_the_effective_conv_weights_as_the_reference(form):
    """Adam's first step moves a trained variable by lr (times sign g, where |g| >> eps). The reference
    trains v and uses v / sqrt(c_in c_out): its effective kernels move by lr / sqrt(c_in c_out) (19.6x smaller
    for conv1, 128x for conv2 and conv3), its biases by lr / sqrt(128); the plain form's by lr."""
    lr = 1e-3
    model = _cnn(form, shape=(3, 8, 8))
    for name, (step, grad) in _first_adam_step(model, torch.optim.Adam(model.parameters(), lr=lr)).items():
        big = grad.abs() > 1e-4
        assert big.sum() > 0.5 * grad.numel(), name
        expected = lr / model.divisors.get(name, 1.0)
        torch.testing.assert_close(step[big], -expected * grad[big].sign(), rtol=1e-3, atol=0)


def test_reference_fine_tuning_steps_the_effective_conv_weights_as_plain_variables():
    """The reference's fine-tuning script loads the effective conv weights as plain variables: its fresh Adam
    moves them by lr, not lr / sqrt(c_in c_out). Without a reparameterised CNN the fresh Adam is one group."""
    lr = 1e-3
    model = _cnn("reference", shape=(3, 8, 8))
    optimizer = make_adam(fresh_adam_groups(model), "tf1", lr)  # TF1's form, each group's eps its own
    set_lr(optimizer, lr)
    for name, (step, grad) in _first_adam_step(model, optimizer).items():
        big = grad.abs() > 1e-4
        assert big.sum() > 0.5 * grad.numel(), name
        torch.testing.assert_close(step[big], -lr * grad[big].sign(), rtol=1e-3, atol=0)
    assert len(torch.optim.Adam(fresh_adam_groups(_cnn("plain", shape=(3, 8, 8))), lr=lr).param_groups) == 1


def test_config_has_the_reference_cnn_and_fine_tuning_length_for_cifar():
    paper = make_config("paper", dataset="cifar10")
    assert paper.cnn == "reference" and paper.is_reference_form and paper.finetune_steps == 5_000
    assert make_config("paper").finetune_steps == 5_000  # MNIST: 5,000 after 140,000
    cifar_cpu, mnist_cpu = make_config("cpu", dataset="cifar10"), make_config("cpu")
    assert cifar_cpu.finetune_steps == round(cifar_cpu.steps * 5_000 / 300_000)  # the paper's proportions at any length
    assert mnist_cpu.finetune_steps == round(mnist_cpu.steps * 5_000 / 140_000)
    assert (cifar_cpu.finetune_steps, mnist_cpu.finetune_steps) == (200, 429)  # at the cpu preset's 12,000 steps
    plain = make_config("cpu", dataset="cifar10", cnn="plain")
    assert not plain.is_reference_form and model_form_label(plain) == "model form with cnn=plain"
    assert make_config("cpu", cnn="plain").is_reference_form  # MNIST has no CNN: the field does not apply
    assert [(s.label, s.trains) for s in switches(["cnn"])] == [("cnn=plain", True)]
    with pytest.raises(ValueError, match=r"cnn='torch' is not allowed; choose one of \('reference', 'plain'\)"):
        make_config("cpu", cnn="torch")
    with pytest.raises(ValueError, match=r"unknown cnn 'wide'; choose one of \('reference', 'plain'\)"):
        _cnn("wide")


def test_cnn_form_names_cifar_runs_only():
    """A CIFAR-10 run's name follows its CNN form; a run without a CNN keeps its name whatever the field."""
    assert store.run_name(make_config("cpu", dataset="cifar10")) != store.run_name(
        make_config("cpu", dataset="cifar10", cnn="plain"))
    assert store.run_name(make_config("cpu", cnn="plain")) == store.run_name(make_config("cpu"))
    # the name of a 3,000-step, five-network cpu run (pinned alike in test_store_presets)
    assert store.run_name(make_config("cpu", protocol="decu", steps=3000, seeds=5)) == "mnist-5k-gru-decu-f119ce128379"


@pytest.mark.parametrize("dataset, per_class, std_ratio", [("cifar10", 1000, 1), ("mnist", 100, 1 / 3)])
def test_reference_centroid_trials_per_dataset(dataset, per_class, std_ratio):
    """BlackBoxCIFAR.py: 1,000 training images per class and noise at the full sigma; BlackBoxMNIST.py: 100 per
    class at sigma / 3. Seen in the frames the network is shown."""
    synthetic = make_synthetic(n_train=11_000, n_test=10, seed=1)
    bank = dataclasses.replace(synthetic, name=dataset)
    model = EnsembleRNN("gru", 1, bank.dim, 3)
    shown = []
    step = model.step
    def record(state, frame, trigger):
        shown.append(frame[0, 0])
        return step(state, frame, trigger)
    model.step = record
    centroids = class_centroids(model, bank, "reference", noise_frames=14)
    assert centroids.n_trials.tolist() == [per_class] * 10
    noise = torch.stack(shown[1:])
    assert len(noise) == 14
    assert noise.std().item() == pytest.approx(bank.noise_std * std_ratio, rel=0.1)


def test_cifar_format_end_to_end(tmp_path, monkeypatch):
    """On tiny files in CIFAR-10's binary format, a reference-form run trains, and its reference fine-tuning
    (a fresh Adam stepping the CNN's effective conv weights) runs from it."""
    fake_cifar(tmp_path / "data" / "cifar-10-batches-bin", per_batch=10)
    monkeypatch.setenv("MEMRNN_DATA", str(tmp_path / "data"))
    config = make_config("smoke", dataset="cifar10", seeds=1, hidden_size=8, batch_size=2, steps=2,
                         checkpoint_every=2, log_every=1, eval_trials=4, device="cpu")
    parent = train(config, tmp_path / "runs", progress=False)
    assert store.read_config(parent).cnn == "reference" and config.finetune_steps == 1
    bank = load_dataset("cifar10")
    assert bank.image_shape == SHAPE and build_model(config, bank).frontend.form == "reference"
    assert build_model(dataclasses.replace(config, cnn="plain"), bank).frontend.form == "plain"
    child = finetune(parent, "control", progress=False)
    before, after = (store.load_checkpoint(run, step)["model/frontend.conv_weights.1"]
                     for run, step in ((parent, 2), (child, 3)))
    # a fine-tuning step moves the effective conv2 kernel by about lr = 3e-3: its variable by 128 lr
    assert (after - before).abs().max() / 128 == pytest.approx(config.lr, rel=0.01)
