"""Shared fixtures: fake data, small encoder and recommender configurations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from medtoolkit.components.params import Node
from medtoolkit.components.schema import DataSchema
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.data.ehr import EHRData
from medtoolkit.testing.fake import fake_batch, fake_ehr, fake_schema
from medtoolkit_tempt import SetTransformerEncoder, TEMPTRecommender


@pytest.fixture(scope="module")
def data() -> EHRData:
    return fake_ehr(n_patients=12, n_hospitals=3, seed=3)


@pytest.fixture(scope="module")
def schema(data: EHRData) -> DataSchema:
    return fake_schema(data)


@pytest.fixture()
def batch(data: EHRData) -> PaddedBatch:
    return fake_batch(data)


def encoder_node(**params: Any) -> Node:
    """A resolved ``set_transformer`` node of width 16, no dropout (any parameter can be overridden)."""
    values: dict[str, Any] = {"dim": 16, "heads": 2, "layers": 2, "dropout": 0.0, "attention_dropout": 0.0}
    values.update(params)
    return Node.of(SetTransformerEncoder, **values)


@pytest.fixture()
def small_encoder() -> Callable[..., Node]:
    """Factory: :func:`encoder_node`."""
    return encoder_node


@pytest.fixture()
def small_tempt(schema: DataSchema) -> Callable[..., TEMPTRecommender]:
    """Factory: a ``tempt`` on a width-16 encoder (``encoder=`` a node, other keys: its params)."""

    def build(encoder: Node | None = None, **params: Any) -> TEMPTRecommender:
        return TEMPTRecommender(TEMPTRecommender.Params(encoder=encoder or encoder_node(), **params), schema)

    return build
