"""Dropout from one uniform draw per element."""

from __future__ import annotations

import pytest
import torch
from medtoolkit.components.dropout import apply_dropout, dropout_keep, mask_dropout, plain_dropout_keep


def test_mask_dropout_keeps_a_share_and_rescales() -> None:
    values = torch.ones(200, 500)
    torch.manual_seed(0)
    dropped = mask_dropout(values, 0.4)
    kept = dropped != 0
    assert abs(float(kept.float().mean()) - 0.6) < 0.01
    assert torch.allclose(dropped[kept], torch.full_like(dropped[kept], 1 / 0.6))
    assert mask_dropout(values, 0.4, training=False) is values
    module = torch.nn.Dropout(0.4).eval()
    assert apply_dropout(module, values) is values
    with pytest.raises(ValueError, match="dropout probability"):
        mask_dropout(values, 1.5)


def test_dropout_keep_is_the_mask_mask_dropout_multiplies_by() -> None:
    values = torch.randn(30, 40)
    torch.manual_seed(1)
    keep = dropout_keep(values.shape, 0.25, values.dtype, values.device)
    torch.manual_seed(1)
    assert torch.equal(mask_dropout(values, 0.25), values * keep)
    assert torch.equal(keep.unique(), torch.tensor([0.0, 1.0 / 0.75]))
    assert dropout_keep((2, 2), 0.25, torch.float32, torch.device("cpu"), training=False) is None
    assert dropout_keep((2, 2), 0.0, torch.float32, torch.device("cpu")) is None


def test_plain_dropout_keep_handles_plain_dropout_only() -> None:
    cpu = torch.device("cpu")
    assert plain_dropout_keep(None, (2, 2), torch.float32, cpu) == (True, None)
    module = torch.nn.Dropout(0.5)
    handled, keep = plain_dropout_keep(module, (3, 4), torch.float32, cpu)
    assert handled and keep is not None and keep.shape == (3, 4)
    module.eval()
    assert plain_dropout_keep(module, (3, 4), torch.float32, cpu) == (True, None)

    class Custom(torch.nn.Dropout):
        pass

    assert plain_dropout_keep(Custom(0.5), (3, 4), torch.float32, cpu) == (False, None)
