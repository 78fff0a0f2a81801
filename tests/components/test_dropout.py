"""Dropout from one uniform draw per element."""

from __future__ import annotations

import pytest
import torch
from medtoolkit.components.dropout import apply_dropout, mask_dropout


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
