import pytest
import torch

from memrnn.models import ARCHS, EnsembleRNN


def _inputs(E, B, T, D, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(E, B, T, D, generator=g)
    trigger = (torch.rand(E, B, T, generator=g) < 0.2).float()
    return frames, trigger


@pytest.mark.parametrize("arch", ARCHS)
def test_member_matches_torch_module(arch):
    model = EnsembleRNN(arch, n_members=3, input_dim=7, hidden_size=5, seeds=[4, 5, 6])
    frames, trigger = _inputs(3, 4, 9, 7)
    logits = model(frames, trigger)
    for k in range(3):
        rnn, readout = model.to_torch(k)
        x = torch.cat([frames[k], trigger[k, ..., None]], -1)
        out, _ = rnn(x)
        torch.testing.assert_close(logits[k], readout(out), rtol=1e-5, atol=1e-6)


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


def test_conv_front_end_members_are_independent():
    shape = (3, 16, 16)
    ensemble = EnsembleRNN("gru", 2, 3 * 16 * 16, 8, image_shape=shape, conv=True, seeds=[3, 7])
    alone = ensemble.member(1)
    assert alone.seeds == [7]
    frames, trigger = _inputs(1, 2, 3, 3 * 16 * 16)
    together = ensemble(frames.expand(2, -1, -1, -1), trigger.expand(2, -1, -1))
    torch.testing.assert_close(together[1:2], alone(frames, trigger), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(together[0], together[1])
