"""Tests of the ``bag_of_codes`` encoder (run after ``pip install -e .``)."""

from __future__ import annotations

import pydantic
import pytest
import torch

import medtoolkit_bagofcodes
from medtoolkit.components.schema import DataSchema
from medtoolkit.data import PaddedBatch
from medtoolkit.plugins import PluginHost
from medtoolkit.testing import check_component
from medtoolkit_bagofcodes import BagOfCodesEncoder


def test_conforms_to_the_encoder_contract() -> None:
    passed = check_component(BagOfCodesEncoder, BagOfCodesEncoder.Params(output_dim=8))
    assert {"params", "shapes", "state_dict", "determinism", "causality", "gradients"} <= set(passed)


def test_output_is_the_sum_of_code_embeddings(fake_schema: DataSchema, fake_batch: PaddedBatch) -> None:
    encoder = BagOfCodesEncoder(BagOfCodesEncoder.Params(output_dim=5), fake_schema)
    out = encoder(fake_batch)
    assert out.shape == (*fake_batch.visit_mask.shape, 5)
    expected = torch.zeros(5)
    for vocabulary in ("diagnoses", "procedures"):
        codes = fake_batch.codes[vocabulary][0, 0]  # first visit of the first patient
        expected += encoder.embed[vocabulary].weight[codes[codes > 0]].sum(dim=0)
    torch.testing.assert_close(out[0, 0], expected)


def test_reads_neither_medications_nor_padding(fake_schema: DataSchema, fake_batch: PaddedBatch) -> None:
    encoder = BagOfCodesEncoder(BagOfCodesEncoder.Params(output_dim=4), fake_schema)
    assert sorted(encoder.embed) == ["diagnoses", "procedures"]
    reference = encoder(fake_batch)
    fake_batch.codes["medications"] = torch.zeros_like(fake_batch.codes["medications"])
    torch.testing.assert_close(encoder(fake_batch), reference)


def test_params_are_validated() -> None:
    with pytest.raises(pydantic.ValidationError):
        BagOfCodesEncoder.Params(output_dim=0)
    with pytest.raises(pydantic.ValidationError):
        BagOfCodesEncoder.Params(hidden_dim=3)


def test_registers_bag_of_codes_through_the_hook() -> None:
    plugin = ("medtoolkit-bagofcodes", "0.1.0", medtoolkit_bagofcodes)
    host = PluginHost(load_entry_points=False, extra_plugins=(plugin,))
    entry = host.registry("encoder").get("bag_of_codes")
    assert (entry.obj, entry.plugin) == (BagOfCodesEncoder, "medtoolkit-bagofcodes")


def test_installed_entry_point_is_found() -> None:
    host = PluginHost()
    (info,) = [p for p in host.plugins if p.name == "medtoolkit-bagofcodes"]
    assert (info.status, info.registered) == ("ok", {"encoder": ["bag_of_codes"]}), info.details
