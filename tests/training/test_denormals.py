"""Flushing denormal floats while training on the CPU (``trainer.flush_denormal``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.config import TrainerParams
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.testing import fake_ehr, fake_schema
from medtoolkit.training.denormals import flush_denormal_enabled, flushing_denormals
from medtoolkit.training.trainer import Trainer

def _cpu_can_flush() -> bool:
    supported = bool(torch.set_flush_denormal(True))
    torch.set_flush_denormal(False)
    return supported


SUPPORTED = _cpu_can_flush()
needs_support = pytest.mark.skipif(not SUPPORTED, reason="this CPU cannot flush denormal floats")


@needs_support
def test_the_block_flushes_denormals_and_restores_the_mode() -> None:
    denormal = torch.tensor([1e-39], dtype=torch.float32)
    assert not flush_denormal_enabled()
    assert float(denormal * 2.0) == pytest.approx(2e-39, rel=1e-3)
    with flushing_denormals() as flushed:
        assert flushed and flush_denormal_enabled()
        assert float(denormal * 2.0) == 0.0
    assert not flush_denormal_enabled()
    with flushing_denormals(False) as flushed:
        assert not flushed and not flush_denormal_enabled()


@needs_support
def test_a_mode_the_caller_set_is_left_on() -> None:
    torch.set_flush_denormal(True)
    try:
        with flushing_denormals():
            assert flush_denormal_enabled()
        assert flush_denormal_enabled()
    finally:
        torch.set_flush_denormal(False)


@needs_support
def test_the_mode_is_restored_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with flushing_denormals():
            raise RuntimeError("boom")
    assert not flush_denormal_enabled()


class _ModeRecordingLoss(BCELoss):
    """BCE that notes whether denormals were flushed when it was computed."""

    seen: list[bool]

    def forward(self, logits: torch.Tensor, batch: PaddedBatch) -> torch.Tensor:
        self.seen.append(flush_denormal_enabled())
        return super().forward(logits, batch)


@needs_support
@pytest.mark.parametrize("flush", [True, False])
def test_training_epochs_flush_denormals_on_the_cpu_unless_switched_off(flush: bool) -> None:
    from medtoolkit.components.recommenders.logistic_regression import LogisticRegressionRecommender

    data = fake_ehr(n_patients=12, n_diagnoses=8, n_procedures=6, n_drugs=5, max_visits=3, seed=2)
    schema = fake_schema(data)
    model = LogisticRegressionRecommender(LogisticRegressionRecommender.Params(), schema)
    loss = _ModeRecordingLoss(BCELoss.Params(), schema)
    loss.seen = []
    settings: dict[str, Any] = {"epochs": 1, "lr": 0.01, "batch_size": 4, "progress": "none", "flush_denormal": flush}
    trainer = Trainer(model, [loss], TrainerParams(**settings), torch.device("cpu"))
    trainer.train_epoch(data, np.arange(12))
    assert loss.seen and set(loss.seen) == {flush}
    assert not flush_denormal_enabled()  # restored after the epoch


def test_flush_denormal_is_off_by_default_and_on_in_the_gamenet_preset() -> None:
    from medtoolkit.config import validate_config
    from medtoolkit.presets import preset_config

    assert TrainerParams().flush_denormal is False
    assert validate_config(preset_config("gamenet")).trainer.flush_denormal is True
