"""The ``tempt`` preset (Table 6 settings) and the comparison rows derived from it."""

from __future__ import annotations

from typing import Any

import pytest

import medtoolkit_tempt.plugin
from medtoolkit.config import load_yaml, validate_config
from medtoolkit.plugins import PluginHost
from medtoolkit.testing.presets import config_leaves
from medtoolkit_tempt.presets import FULL_MODEL, TEMPT_PATH, VARIANTS, preset_sources


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(load_entry_points=False, extra_plugins=(("medtoolkit-tempt", "0.1.0", medtoolkit_tempt.plugin),))


def test_every_preset_validates(host: PluginHost) -> None:
    sources = preset_sources()
    assert set(sources) == {"tempt", *(v.name for v in VARIANTS)}
    for name, source in sources.items():
        raw = load_yaml(source) if not isinstance(source, dict) else source
        config = validate_config(raw, host=host)
        assert config.name == name


def test_paper_settings_of_the_base_preset(host: PluginHost) -> None:
    config = validate_config(load_yaml(TEMPT_PATH), host=host)
    encoder = config.model.params.encoder.params
    assert (encoder.dim, encoder.layers, encoder.heads, encoder.max_codes, encoder.shared) == (300, 2, 2, 100, True)
    assert (config.trainer.lr, config.trainer.batch_size, config.trainer.epochs) == (5e-4, 64, 30)
    assert (config.eval.threshold, config.eval.averaging, config.eval.group_by) == (0.3, "visit", "hospital")
    task = config.task.params
    assert (task.samples, task.protocol, task.train_fraction, task.val_fraction, list(task.seeds)) == (
        "visit", "hospital", 0.8, 0.1, [42])
    dataset = config.dataset.params
    assert (dataset.drug_code, dataset.top_medications, dataset.top_procedures) == ("hicl", 300, 1000)
    pretrain, tune = config.stages
    assert [loss.type for loss in pretrain.losses] == ["masked_code", "contrastive"]
    contrastive = pretrain.losses[1].params
    assert (contrastive.weight, contrastive.temperature) == (0.01, 0.8)  # gamma, tau
    assert pretrain.trainer.select_metric == "loss" and pretrain.repeat_per is None and pretrain.init_from is None
    assert (tune.init_from, tune.repeat_per, tune.adapter.type, tune.adapter.params.n_prompts) == (
        "pretrain", "hospital", "hospital_prompt", 2)
    assert (tune.trainer.select_metric, tune.trainer.early_stopping_patience) == ("prauc", 10)
    assert [loss.type for loss in config.losses] == ["bce"] and tune.losses is None
    assert FULL_MODEL.paper["prauc"] == 0.5468 and FULL_MODEL.paper_groups["small"] == 0.5509


EXPECTED_CHANGES = {
    "tempt_finetune": {"stages.1.adapter.type", "stages.1.adapter.n_prompts", "stages.1.adapter.train_head"},
    "tempt_finetune_freeze": {"stages.1.adapter.type", "stages.1.adapter.n_prompts", "stages.1.adapter.train_head"},
    "tempt_lora": {"stages.1.adapter.type", "stages.1.adapter.n_prompts", "stages.1.adapter.train_head",
                   "stages.1.adapter.rank", "stages.1.adapter.alpha", "stages.1.adapter.targets"},
}


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_each_variant_changes_only_its_stages(variant: Any) -> None:
    base_raw = load_yaml(TEMPT_PATH)
    derived_raw = preset_sources()[variant.name]
    base, derived = config_leaves(base_raw), config_leaves(derived_raw)
    changed = {key for key in base.keys() | derived.keys() if base.get(key) != derived.get(key)} - {"name"}
    assert changed and all(key.startswith("stages") for key in changed), changed
    assert {k: v for k, v in base_raw.items() if k not in ("name", "stages")} == {
        k: v for k, v in derived_raw.items() if k not in ("name", "stages")}
    if variant.name in EXPECTED_CHANGES:
        assert changed <= EXPECTED_CHANGES[variant.name], changed
        assert derived_raw["stages"][0] == base_raw["stages"][0]  # the same pre-training
        assert derived_raw["stages"][1]["init_from"] == "pretrain"
    elif variant.name == "tempt_single_train":  # no pre-training: the tune stage alone, from scratch, no adapter
        assert derived_raw["stages"] == [{"name": "train", "repeat_per": "hospital"}]
    else:  # full train: no stages, the run's bce on every hospital
        assert variant.name == "tempt_full_train" and derived_raw["stages"] == []
