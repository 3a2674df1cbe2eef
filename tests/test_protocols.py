import pytest

from memrnn.protocols import schedule


@pytest.mark.parametrize("step, t_max", [(0, 6), (19_999, 6), (20_000, 8), (29_999, 8), (30_000, 10),
                                         (79_999, 18), (80_000, 20), (139_999, 20)])
def test_decu_matches_reference_mnist_steps(step, t_max):
    assert schedule("decu", "mnist", 140_000).at(step) == (t_max, 10)


@pytest.mark.parametrize("step, n", [(0, 2), (7_999, 2), (8_000, 3), (16_000, 4), (26_000, 5), (36_000, 6),
                                     (48_000, 7), (62_000, 8), (78_000, 9), (97_999, 9), (98_000, 10)])
def test_vocu_matches_reference_mnist_steps(step, n):
    assert schedule("vocu", "fashion-mnist", 140_000).at(step) == (20, n)


def test_cifar_schedules_and_scaling():
    decu = schedule("decu", "cifar10", 300_000)
    assert [decu.at(s)[0] for s in (99_999, 100_000, 219_999, 220_000)] == [6, 8, 18, 20]
    vocu = schedule("vocu", "cifar10", 300_000)
    assert [vocu.at(s)[1] for s in (29_999, 30_000, 239_999, 240_000)] == [2, 3, 9, 10]
    # a 100x shorter run keeps the shape
    short = schedule("decu", "mnist", 1_400)
    assert [short.at(s)[0] for s in (199, 200, 799, 800)] == [6, 8, 18, 20]


def test_events_and_none():
    events = schedule("vocu", "mnist", 1_400).events()
    assert [e["step"] for e in events] == [80, 160, 260, 360, 480, 620, 780, 980]
    assert [e["value"] for e in events] == list(range(3, 11))
    plan = schedule("none", "mnist", 10)
    assert {plan.at(s) for s in range(10)} == {(20, 10)} and plan.events() == []


def test_unknown_protocol():
    with pytest.raises(ValueError, match="unknown protocol 'deku'.*'decu'"):
        schedule("deku", "mnist", 10)
