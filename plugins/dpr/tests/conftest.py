"""Shared fixtures: fake data, tiny package graphs and small model factories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from medtoolkit.components.schema import DataSchema
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.data.ehr import EHRData
from medtoolkit.testing.fake import fake_batch, fake_ehr, fake_schema
from medtoolkit_dpr import DPRRecommender, NCFRecommender

torch_geometric = pytest.importorskip("torch_geometric")


@pytest.fixture(scope="module")
def data() -> EHRData:
    return fake_ehr(n_patients=12, seed=3)


@pytest.fixture(scope="module")
def schema(data: EHRData) -> DataSchema:
    return fake_schema(data)


@pytest.fixture()
def batch(data: EHRData) -> PaddedBatch:
    return fake_batch(data)


@pytest.fixture()
def small_ncf(schema: DataSchema) -> Callable[..., NCFRecommender]:
    """Factory: an ``ncf`` of width 8, hidden 16 (keys override)."""

    def build(**params: Any) -> NCFRecommender:
        return NCFRecommender(NCFRecommender.Params(**{"dim": 8, "hidden": 16, **params}), schema)

    return build


@pytest.fixture()
def small_dpr(schema: DataSchema) -> Callable[..., DPRRecommender]:
    """Factory: a ``dpr`` of width 8, hidden 16, 3 negatives (keys override)."""

    def build(**params: Any) -> DPRRecommender:
        return DPRRecommender(DPRRecommender.Params(**{"dim": 8, "hidden": 16, "negatives": 3, **params}), schema)

    return build
