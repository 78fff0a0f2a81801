"""The exponential moving average of the weights: hand-computed updates, exchange, state."""

from __future__ import annotations

import pytest
import torch

from medtoolkit.training.averaging import WeightAverage


def parameter(*values: float) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


def test_updates_follow_the_warm_up_then_the_decay() -> None:
    weight = parameter(0.0, 2.0)
    average = WeightAverage([weight], decay=0.5)
    with torch.no_grad():
        weight.copy_(torch.tensor([1.0, 4.0]))
    average.update()  # step 1: decay_1 = min(0.5, 2/11) = 2/11, so the average moves 9/11 of the way
    assert average.averages[0].tolist() == pytest.approx([9 / 11, 2 + 2 * 9 / 11])
    with torch.no_grad():
        weight.copy_(torch.tensor([3.0, 0.0]))
    average.update()  # step 2: decay_2 = min(0.5, 3/12) = 1/4
    assert average.averages[0].tolist() == pytest.approx([9 / 11 / 4 + 3 * 3 / 4, (2 + 18 / 11) / 4])
    for _ in range(20):  # from step 8 on the warm-up term (9/18) reaches the decay: 1 - 0.5
        average.update()
    assert average.rate() == pytest.approx(0.5)


def test_applied_holds_the_averages_inside_and_the_raw_weights_after() -> None:
    weight = parameter(1.0, 1.0)
    average = WeightAverage([weight], decay=0.9)
    with torch.no_grad():
        weight.copy_(torch.tensor([5.0, -5.0]))
    average.update()
    expected = average.averages[0].clone()
    with average.applied():
        assert torch.equal(weight.detach(), expected)
    assert weight.tolist() == [5.0, -5.0]
    assert torch.equal(average.averages[0], expected)
    average.copy_to_parameters()
    assert torch.equal(weight.detach(), expected)


def test_state_round_trips_and_refuses_another_layout() -> None:
    weight = parameter(1.0, 2.0)
    average = WeightAverage([weight], decay=0.9)
    with torch.no_grad():
        weight.add_(1.0)
    average.update()
    restored = WeightAverage([parameter(0.0, 0.0)], decay=0.9)
    restored.load_state_dict(average.state_dict())
    assert restored.steps == 1 and torch.equal(restored.averages[0], average.averages[0])
    with pytest.raises(ValueError, match="averaged tensor 0 has shape \\(3,\\), expected \\(2,\\)"):
        restored.load_state_dict({**average.state_dict(), "averages": [torch.zeros(3, dtype=torch.float64)]})
    with pytest.raises(ValueError, match="expected 1 averaged tensors, found 2"):
        restored.load_state_dict({**average.state_dict(), "averages": [torch.zeros(2)] * 2})
    with pytest.raises(ValueError, match="decay 0.5, this run uses 0.9"):
        restored.load_state_dict({**average.state_dict(), "decay": 0.5})


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_a_decay_outside_the_open_unit_interval_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="must be in \\(0, 1\\)"):
        WeightAverage([parameter(1.0)], decay=decay)


def test_before_the_warm_up_reaches_the_decay_larger_decays_average_alike() -> None:
    weight = parameter(0.0)
    slow, slower = WeightAverage([weight], decay=0.998), WeightAverage([weight], decay=0.999)
    for step in range(1, 200):
        with torch.no_grad():
            weight.fill_(float(step % 7))
        slow.update()
        slower.update()
    assert torch.equal(slow.averages[0], slower.averages[0])
    assert slow.rate() == pytest.approx(1 - 201 / 210)  # the 200th update: (1 + n) / (10 + n), n = 200
