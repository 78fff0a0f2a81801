"""Fixtures of the adapter tests: the default GAMENet on the fake data, and a gradient probe.

``GAMENet(GAMENet.Params(), fake_schema(fake_ehr()))``: 30 diagnoses (+1 padding row), 20
procedures (+1), 15 drugs, GRU encoder (embedding 64, hidden 128, query 64), GCN memory
(64 wide), output MLP ``[192 -> 128 -> 15]``. Its parameters, by hand:

* ``encoder.embeddings``: ``31*64 + 21*64 = 3328``
* ``encoder.rnns`` (two GRUs): ``2 * (384*64 + 384*128 + 384 + 384) = 148992``
* ``encoder.query`` (Linear 256 -> 64): ``256*64 + 64 = 16448``
* ``memory`` (theta + two two-layer GCNs): ``1 + 2 * (15*64 + 64 + 64*64 + 64) = 10369``
* ``output.1`` (Linear 192 -> 128): ``192*128 + 128 = 24704``
* ``output.3`` (Linear 128 -> 15, the head: the last ``nn.Linear``): ``128*15 + 15 = 1935``

Total ``205776``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from medtoolkit.components.recommenders.gamenet import GAMENet
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.testing import fake_batch, fake_ehr, fake_schema


@pytest.fixture
def make_gamenet() -> Callable[[int], GAMENet]:
    """``make_gamenet(seed)``: the default GAMENet on the fake schema, built after ``manual_seed(seed)``."""

    def build(seed: int = 0) -> GAMENet:
        torch.manual_seed(seed)
        return GAMENet(GAMENet.Params(), fake_schema(fake_ehr()))

    return build


@pytest.fixture
def batch() -> PaddedBatch:
    return fake_batch(fake_ehr())


@pytest.fixture
def eval_logits(batch: PaddedBatch) -> Callable[[nn.Module], torch.Tensor]:
    """``eval_logits(model)``: eval-mode logits at the real visits of the fake batch."""

    def run(model: nn.Module) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return model(batch)[batch.visit_mask]

    return run


@pytest.fixture
def gradient_owners(batch: PaddedBatch) -> Callable[[nn.Module], tuple[set[str], set[str]]]:
    """``gradient_owners(model)``: after one train-mode backward, (params with a gradient, params that train)."""

    def probe(model: nn.Module) -> tuple[set[str], set[str]]:
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        (model(batch)[batch.visit_mask] ** 2).mean().backward()
        got = {name for name, p in model.named_parameters() if p.grad is not None}
        trains = {name for name, p in model.named_parameters() if p.requires_grad}
        return got, trains

    return probe
