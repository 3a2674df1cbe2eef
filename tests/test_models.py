import numpy as np
import pytest
import torch
from scipy import stats

from memrnn.models import ARCHS, EnsembleRNN


def _inputs(E, B, T, D, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(E, B, T, D, generator=g)
    trigger = (torch.rand(E, B, T, generator=g) < 0.2).float()
    return frames, trigger


@pytest.mark.threads
@pytest.mark.parametrize("arch", ARCHS)
def test_member_matches_torch_module(arch):
    model = EnsembleRNN(arch, n_members=3, input_dim=7, hidden_size=5, seeds=[4, 5, 6], cell="torch",
                        readout="linear", init="uniform")
    frames, trigger = _inputs(3, 4, 9, 7)
    logits = model(frames, trigger)
    for k in range(3):
        rnn, readout = model.to_torch(k)
        x = torch.cat([frames[k], trigger[k, ..., None]], -1)
        out, _ = rnn(x)
        torch.testing.assert_close(logits[k], readout(out), rtol=1e-5, atol=1e-6)


@pytest.mark.threads
@pytest.mark.parametrize("arch", ARCHS)
def test_member_equals_network_built_alone(arch):
    ensemble = EnsembleRNN(arch, n_members=3, input_dim=6, hidden_size=4, seeds=[10, 11, 12])
    alone = EnsembleRNN(arch, n_members=1, input_dim=6, hidden_size=4, seeds=[11])
    for name, p in alone.named_parameters():
        assert torch.equal(p[0], dict(ensemble.named_parameters())[name][1]), name
    frames, trigger = _inputs(1, 2, 5, 6)
    torch.testing.assert_close(ensemble(frames.expand(3, -1, -1, -1), trigger.expand(3, -1, -1))[1:2],
                               alone(frames, trigger))


def test_members_differ_and_seeds_are_validated():
    model = EnsembleRNN("gru", n_members=2, input_dim=3, hidden_size=4, seeds=[0, 1])
    assert not torch.equal(model.weight_hh[0], model.weight_hh[1])
    with pytest.raises(ValueError, match="2 seeds for 3 members"):
        EnsembleRNN("gru", n_members=3, input_dim=3, hidden_size=4, seeds=[0, 1])
    with pytest.raises(ValueError, match="unknown architecture 'gruu'"):
        EnsembleRNN("gruu", n_members=1, input_dim=3, hidden_size=4)


@pytest.mark.parametrize("arch", ARCHS)
def test_step_is_the_map_the_unroll_uses(arch):
    model = EnsembleRNN(arch, n_members=2, input_dim=5, hidden_size=3)
    frames, trigger = _inputs(2, 3, 6, 5)
    state = model.init_state(3)
    assert state.shape == (2, 3, model.state_size)
    for t in range(6):
        state = model.step(state, frames[:, :, t], trigger[:, :, t])
    torch.testing.assert_close(model.readout(state), model(frames, trigger)[:, :, -1])


@pytest.mark.threads
def test_conv_front_end_members_are_independent():
    shape = (3, 16, 16)
    ensemble = EnsembleRNN("gru", 2, 3 * 16 * 16, 8, image_shape=shape, conv=True, seeds=[3, 7])
    alone = ensemble.member(1)
    assert alone.seeds == [7]
    frames, trigger = _inputs(1, 2, 3, 3 * 16 * 16)
    together = ensemble(frames.expand(2, -1, -1, -1), trigger.expand(2, -1, -1))
    torch.testing.assert_close(together[1:2], alone(frames, trigger), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(together[0], together[1])


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_reference_cell_is_the_reference_step_by_hand(arch):
    """The reference's equations in NumPy (one bias per gate; GRU reset gate before U_h and
    h' = (1 - z) h + z n) with the same weights give the same step."""
    model = EnsembleRNN(arch, n_members=2, input_dim=5, hidden_size=4, seeds=[1, 2])
    with torch.no_grad():
        model.bias_ih.normal_()  # make biases visible in the comparison
    g = torch.Generator().manual_seed(3)
    state = torch.rand(2, 3, model.state_size, generator=g) - 0.5
    frame, trigger = torch.randn(2, 3, 5, generator=g), torch.tensor([[0.0, 1.0, 0.0]] * 2)
    out = model.step(state, frame, trigger).detach().numpy()
    H = 4
    for k in range(2):
        x = torch.cat([frame[k], trigger[k, :, None]], -1).numpy().astype(np.float64)
        Wx, U, b = (model.weight_ih[k].detach().double().numpy(), model.weight_hh[k].detach().double().numpy(),
                    model.bias_ih[k, 0].detach().double().numpy())
        h = state[k, :, :H].numpy().astype(np.float64)
        if arch == "gru":
            r = _sigmoid(x @ Wx[:, :H] + h @ U[:, :H] + b[:H])
            z = _sigmoid(x @ Wx[:, H:2 * H] + h @ U[:, H:2 * H] + b[H:2 * H])
            expected = (1 - z) * h + z * np.tanh(x @ Wx[:, 2 * H:] + (r * h) @ U[:, 2 * H:] + b[2 * H:])
        else:
            c = state[k, :, H:].numpy().astype(np.float64)
            gate = [x @ Wx[:, j * H:(j + 1) * H] + h @ U[:, j * H:(j + 1) * H] + b[j * H:(j + 1) * H] for j in range(4)]
            c_new = _sigmoid(gate[1]) * c + _sigmoid(gate[0]) * np.tanh(gate[2])
            expected = np.concatenate([_sigmoid(gate[3]) * np.tanh(c_new), c_new], -1)
        np.testing.assert_allclose(out[k], expected, rtol=1e-5, atol=1e-6)
    assert not model.bias_hh.requires_grad and (model.bias_hh == 0).all()


def test_reference_readout_is_sigmoid():
    model = EnsembleRNN("gru", 1, 3, 4)
    state = torch.rand(1, 2, 4)
    linear = torch.bmm(state, model.readout_weight.detach()) + model.readout_bias.detach()
    torch.testing.assert_close(model.readout(state), torch.sigmoid(linear))


def test_reference_initial_weight_statistics():
    """Weights N(0, 1)/sqrt(fan_in) (input: the cell's input size; recurrent and readout: H), biases
    0.01 N(0, 1), bias_hh zero; PyTorch's uniform form keeps U(+-1/sqrt(H))."""
    H, D = 200, 784
    model = EnsembleRNN("gru", 2, D, H, seeds=[0, 1])
    for name, fan in (("weight_ih", D + 1), ("weight_hh", H), ("readout_weight", H)):
        w = getattr(model, name).detach().flatten().numpy()
        assert abs(w.mean()) < 4 * w.std() / np.sqrt(w.size), name  # mean 0 within 4 standard errors
        assert abs(w.std() * np.sqrt(fan) - 1) < 0.02, name
        assert stats.normaltest(w[:5000]).pvalue > 1e-4, name
    for name in ("bias_ih", "readout_bias"):
        b = getattr(model, name).detach().flatten().numpy()
        assert abs(b.std() / 0.01 - 1) < 4 / np.sqrt(2 * b.size), name  # within 4 standard errors
    assert (model.bias_hh == 0).all()
    uniform = EnsembleRNN("gru", 1, D, H, init="uniform", cell="torch")
    assert uniform.weight_ih.abs().max() <= 1 / np.sqrt(H) and uniform.weight_ih.abs().max() > 0.99 / np.sqrt(H)
    assert (uniform.bias_hh != 0).any()
