"""The presets: every one validates, derived rows differ by their overrides only, each runs on the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import medtoolkit_dpr.plugin
from medtoolkit.config import load_yaml, validate_config
from medtoolkit.plugins import PluginHost
from medtoolkit.testing.presets import config_leaves
from medtoolkit_dpr.presets import NCF_PATH, VARIANTS, WG_PATH, preset_sources


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(extra_plugins=(("medtoolkit-dpr", "0.1.0", medtoolkit_dpr.plugin),))


def test_every_preset_validates(host: PluginHost) -> None:
    sources = preset_sources()
    assert list(sources) == [v.name for v in VARIANTS]
    for name, source in sources.items():
        config = validate_config(load_yaml(source) if not isinstance(source, dict) else source, host=host)
        assert config.name == name and config.task.type == "package_recommendation"


def test_paper_settings(host: PluginHost) -> None:
    config = validate_config(load_yaml(WG_PATH), host=host)
    model, task, trainer = config.model.params, config.task.params, config.trainer
    assert (model.variant, model.dim, model.hidden, model.layers, model.negatives) == ("wg", 64, 128, 1, 10)
    assert (task.k_neighbours, task.graph_threshold, task.scoring, task.similarity) == (10, 0.01, "model", "model")
    assert (trainer.lr, trainer.select_metric) == (1e-3, "loss")
    pretrain, train = config.stages
    assert [loss.type for loss in pretrain.losses] == ["bpr"] and pretrain.losses[0].params.negatives == 10
    assert train.init_from == "pretrain" and [loss.type for loss in train.losses] == ["package_bpr"]
    ncf = validate_config(load_yaml(NCF_PATH), host=host)
    assert (ncf.model.type, ncf.task.params.scoring, ncf.task.params.top_k) == ("ncf", "top_k", None)
    assert {v.name: v.paper["f1"] for v in VARIANTS}["dpr_ag"] == 0.5162


EXPECTED = {
    "dpr_nn": {"task.scoring"},
    "dpr_gnn": {"model.variant", "model.mask", "model.context", "model.edge_prior"},
    "dpr_ag": {"model.variant", "stages.1.losses.1.type"},
    "dpr_wg_context": {"model.context"},
    "dpr_wg_type": {"model.edge_prior"},
    "dpr_ag_mask": {"model.variant", "model.mask", "stages.1.losses.1.type"},
    "dpr_ag_type": {"model.variant"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_derived_preset_changes_only_its_part(name: str) -> None:
    variant = {v.name: v for v in VARIANTS}[name]
    base = config_leaves(load_yaml(NCF_PATH if variant.base == "dpr_ncf" else WG_PATH))
    derived = config_leaves(preset_sources()[name])
    changed = {key for key in base.keys() | derived.keys() if base.get(key) != derived.get(key)} - {"name"}
    assert changed == EXPECTED[name]


QUICK = ["trainer.epochs=2", "trainer.progress=none", "eval.bootstrap_rounds=2"]


def run_preset(name: str, out: Path) -> dict[str, Any]:
    from medtoolkit.experiment import Experiment

    source = preset_sources()[name]
    raw = source if isinstance(source, dict) else load_yaml(source)
    overrides = [*QUICK, *(["stages.0.trainer.epochs=2"] if raw.get("stages") else [])]
    return Experiment.from_config(name, overrides=overrides).run(out_dir=out).metrics


@pytest.mark.parametrize("name", [v.name for v in VARIANTS])
def test_runs_end_to_end_on_the_demo(name: str, tmp_path: Path) -> None:
    metrics = run_preset(name, tmp_path)
    assert 0.0 < metrics["test"]["f1"]["mean"] <= 1.0
    assert metrics["test"]["packages"]["scoring"] == preset_sources_scoring(name)
    assert (tmp_path / "report.md").exists()


def preset_sources_scoring(name: str) -> str:
    source = preset_sources()[name]
    return (source if isinstance(source, dict) else load_yaml(source))["task"]["scoring"]
