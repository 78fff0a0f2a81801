"""The ``dnmdr`` preset and the variants derived from it."""

from __future__ import annotations

from typing import Any

import pytest

import medtoolkit_dnmdr.plugin
import medtoolkit_molecule.plugin
from medtoolkit.config import load_yaml, validate_config
from medtoolkit.plugins import PluginHost
from medtoolkit.testing.presets import config_leaves
from medtoolkit_dnmdr.presets import DNMDR_PATH, FULL_MODEL, VARIANTS, preset_sources


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(load_entry_points=False, extra_plugins=(
        ("medtoolkit-molecule", "0.1.0", medtoolkit_molecule.plugin),
        ("medtoolkit-dnmdr", "0.1.0", medtoolkit_dnmdr.plugin)))


def test_every_preset_validates(host: PluginHost) -> None:
    sources = preset_sources()
    assert set(sources) == {"dnmdr", *(v.name for v in VARIANTS)}
    for name, source in sources.items():
        raw = load_yaml(source) if not isinstance(source, dict) else source
        validate_config(raw, host=host)


def test_paper_settings_of_the_base_preset() -> None:
    model = load_yaml(DNMDR_PATH)["model"]
    assert model["encoder"]["embedding_dim"] == model["drug_encoder"]["dim"] == 64
    assert model["encoder"]["dropout"] == 0.4
    assert FULL_MODEL.paper["jaccard"] == 0.5241


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_each_variant_changes_only_its_part(variant: Any) -> None:
    base = config_leaves(load_yaml(DNMDR_PATH))
    derived = config_leaves(preset_sources()[variant.name])
    changed = {key for key in base.keys() | derived.keys() if base.get(key) != derived.get(key)} - {"name"}
    parts = {key.split(".")[1] for key in changed}
    assert changed, variant.name
    assert all(key.startswith("model.") for key in changed), changed
    if variant.paper_table == 4:
        assert len(parts) == 1, changed  # one part swapped: encoder, memory or the internal view
    else:  # Table 5: every width, nothing else
        assert all(key.split(".")[-1] in {"embedding_dim", "hidden_dim", "output_dim", "dim"} for key in changed)
