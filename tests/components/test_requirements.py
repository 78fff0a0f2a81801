"""Drug knowledge needed by components versus provided by the dataset, checked by validate."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import Field

from medtoolkit.components.base import Loss, Recommender
from medtoolkit.components.params import Node, Params
from medtoolkit.components.requirements import KNOWLEDGE_NAMES, knowledge_errors, walk_nodes, with_derived
from medtoolkit.config import ConfigValidationError, validate_config
from medtoolkit.plugins import PluginHost
from medtoolkit.presets import preset_config


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(load_entry_points=False)


def gamenet_on_pickles(host: PluginHost, ddi: str | None) -> dict:
    raw = preset_config("gamenet", host=host)
    raw["dataset"] = {"type": "safedrug_pickle", "root": "/nowhere", "ddi_adjacency": ddi}
    return raw


def test_gamenet_on_data_without_ddi_is_refused_before_loading(host: PluginHost) -> None:
    # the root does not exist: the refusal comes from the declarations alone, no file is read
    with pytest.raises(ConfigValidationError) as caught:
        validate_config(gamenet_on_pickles(host, "none"), host, source="run.yaml")
    errors = {error.path: error.message for error in caught.value.errors}
    assert errors == {
        "model.memory": "memory 'gcn' needs a DDI matrix, but dataset 'safedrug_pickle' as configured has none",
        "losses.2": "loss 'ddi' needs a DDI matrix, but dataset 'safedrug_pickle' as configured has none",
    }


def test_without_ddi_parts_the_same_data_validates(host: PluginHost) -> None:
    raw = gamenet_on_pickles(host, None)
    raw["model"]["memory"]["ddi_in_memory"] = False
    raw["losses"] = raw["losses"][:2]
    config = validate_config(raw, host)
    assert knowledge_errors(config) == []


def test_a_dataset_that_cannot_tell_before_loading_is_not_refused(
    host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a dataset that cannot tell (None) is checked at build time instead
    monkeypatch.setattr(host.get("dataset", "safedrug_pickle"), "knowledge_provided",
                        classmethod(lambda cls, params: None))
    config = validate_config(gamenet_on_pickles(host, "none"), host)
    assert knowledge_errors(config) == []


def test_raw_loaders_declare_the_shipped_knowledge(host: PluginHost) -> None:
    pytest.importorskip("rdkit")
    config = validate_config(preset_config("gamenet", host=host), host)  # the built-in mimic3 demo
    dataset = config.dataset.component
    assert dataset.knowledge_provided(config.dataset.params) == {"ddi", "smiles", "substructures"}
    assert dataset.knowledge_provided(dataset.Params(substructures=False)) == {"ddi", "smiles"}
    for name in ("mimic4", "eicu"):
        component = host.get("dataset", name)
        assert component.knowledge_provided(component.Params()) == {"ddi", "smiles", "substructures"}
    synthetic = host.get("dataset", "synthetic")
    assert synthetic.knowledge_provided(synthetic.Params()) == {"ddi", "substructures"}
    assert synthetic.knowledge_provided(synthetic.Params(n_substructures=0)) == {"ddi"}


def test_safedrug_pickles_declare_the_files_they_will_load(tmp_path: Path, host: PluginHost) -> None:
    dataset = host.get("dataset", "safedrug_pickle")
    # defaults: optional files count only when present (a file check, nothing is read)
    assert dataset.knowledge_provided(dataset.Params(root=tmp_path)) == {"ddi"}
    (tmp_path / "atc3toSMILES.pkl").write_bytes(b"")
    assert dataset.knowledge_provided(dataset.Params(root=tmp_path)) == {"ddi", "smiles"}
    # named explicitly: load fails without the file, so it is provided
    named = dataset.Params(root=tmp_path / "absent", substructure_mask="mask.pkl", ddi_adjacency=None)
    assert dataset.knowledge_provided(named) == {"substructures"}
    assert dataset.knowledge_provided(dataset.Params(root=tmp_path, smiles=None)) == {"ddi"}


def refusals(host: PluginHost, monkeypatch: pytest.MonkeyPatch, needs: set[str], **dataset: object
             ) -> list[tuple[str, str]]:
    """What validate says about gamenet on the pickles at ``/nowhere`` (the DDI file named, so
    gcn and the ddi loss are fine) when its encoder (gru) needs ``needs``."""
    raw = gamenet_on_pickles(host, "ddi_A_final.pkl")
    raw["dataset"].update(dataset)
    monkeypatch.setattr(host.get("encoder", "gru"), "knowledge_needed",
                        classmethod(lambda cls, params: frozenset(needs)))
    try:
        validate_config(raw, host)
    except ConfigValidationError as error:
        return [(e.path, e.message) for e in error.errors]
    return []


MOLECULES_AND_MASK = {"molecules", "substructures"}
NO_RDKIT = 'built from the dataset\'s SMILES with rdkit, which is not installed: pip install "medtoolkit[chem]"'


def test_molecules_and_substructures_follow_from_smiles(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rdkit")
    assert refusals(host, monkeypatch, MOLECULES_AND_MASK, smiles="atc3toSMILES.pkl", substructure_mask=None) == []
    # a mask but no SMILES: substructures are there, molecules are not
    assert refusals(host, monkeypatch, MOLECULES_AND_MASK, smiles=None, substructure_mask="ddi_mask_H.pkl") == [
        ("model.encoder",
         "encoder 'gru' needs drug molecule graphs, but dataset 'safedrug_pickle' as configured has none"),
    ]


def test_without_rdkit_the_refusal_names_the_extra(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rdkit", None)
    assert refusals(host, monkeypatch, MOLECULES_AND_MASK, smiles="atc3toSMILES.pkl", substructure_mask=None) == [
        ("model.encoder", f"encoder 'gru' needs drug molecule graphs, {NO_RDKIT}"),
        ("model.encoder", f"encoder 'gru' needs a drug-to-substructure mask, {NO_RDKIT}"),
    ]
    # a shipped mask needs no rdkit
    assert refusals(host, monkeypatch, {"substructures"}, smiles=None, substructure_mask="ddi_mask_H.pkl") == []
    # no SMILES at all: the dataset is the problem, not rdkit
    assert refusals(host, monkeypatch, {"substructures"}, smiles=None, substructure_mask=None) == [
        ("model.encoder", "encoder 'gru' needs a drug-to-substructure mask, but dataset 'safedrug_pickle' as "
                          "configured has none"),
    ]
    # molecules are refused even when the dataset cannot tell what it provides
    monkeypatch.setattr(host.get("dataset", "safedrug_pickle"), "knowledge_provided",
                        classmethod(lambda cls, params: None))
    assert refusals(host, monkeypatch, MOLECULES_AND_MASK) == [
        ("model.encoder", f"encoder 'gru' needs drug molecule graphs, {NO_RDKIT}"),
    ]


def test_with_derived_adds_molecules_only_with_smiles_and_rdkit() -> None:
    assert with_derived(frozenset({"smiles"}), rdkit=True) == {"smiles", "molecules", "substructures"}
    assert with_derived(frozenset({"smiles"}), rdkit=False) == {"smiles"}
    assert with_derived(frozenset({"ddi"}), rdkit=True) == {"ddi"}
    assert set(KNOWLEDGE_NAMES) >= {"ddi", "smiles", "substructures", "molecules"}


def test_validate_refuses_molecules_on_synthetic_data(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = preset_config("gamenet", host=host)
    raw["dataset"] = {"type": "synthetic"}
    validate_config(raw, host)
    monkeypatch.setattr(host.get("encoder", "gru"), "knowledge_needed",
                        classmethod(lambda cls, params: frozenset({"molecules"})))
    with pytest.raises(ConfigValidationError) as caught:
        validate_config(raw, host)
    assert {error.path: error.message for error in caught.value.errors} == {
        "model.encoder": "encoder 'gru' needs drug molecule graphs, but dataset 'synthetic' as configured has none",
    }


def test_walk_nodes_names_every_child_with_its_path(host: PluginHost) -> None:
    config = validate_config(preset_config("gamenet", host=host), host)
    assert [(path, node.type) for path, node in walk_nodes(config.model, "model")] == [
        ("model", "gamenet"), ("model.encoder", "gru"), ("model.memory", "gcn"),
    ]


def test_the_cli_prints_both_refusals(tmp_path: Path, host: PluginHost, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from medtoolkit.cli import main

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(gamenet_on_pickles(host, "null")), encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == f"error: {path}: 2 errors (listed above)"
    assert "  - model.memory: memory 'gcn' needs a DDI matrix" in lines[0]


# ---------------------------------------------------------------------------- statistics
def test_malformed_statistic_names_are_refused_before_loading(
    host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medtoolkit.components.statistics import code_counts

    monkeypatch.setattr(host.get("encoder", "gru"), "statistics_needed",
                        classmethod(lambda cls, params: frozenset({"pair_counts/diagnoses", code_counts("diagnoses")})))
    monkeypatch.setattr(host.get("loss", "bce"), "statistics_needed",
                        classmethod(lambda cls, params: frozenset({"counts/medications"})))
    with pytest.raises(ConfigValidationError) as caught:  # the root does not exist: nothing is read
        validate_config(gamenet_on_pickles(host, "default"), host, source="run.yaml")
    errors = {error.path: error.message for error in caught.value.errors}
    assert errors == {
        "model.encoder": "encoder 'gru' declares a statistic it needs that cannot be computed: malformed statistic "
                         "'pair_counts/diagnoses': pair_counts takes 2 non-empty vocabulary names "
                         "('code_counts/<vocabulary>' or 'pair_counts/<rows>/<cols>')",
        "losses.0": "loss 'bce' declares a statistic it needs that cannot be computed: unknown statistic "
                    "'counts/medications': expected 'code_counts/<vocabulary>' or 'pair_counts/<rows>/<cols>' "
                    "(kinds: code_counts, pair_counts)",
    }


def test_well_formed_statistic_names_validate(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    from medtoolkit.components.requirements import statistics_errors
    from medtoolkit.components.statistics import pair_counts

    monkeypatch.setattr(host.get("memory", "gcn"), "statistics_needed",
                        classmethod(lambda cls, params: frozenset({pair_counts("medications", "medications")})))
    config = validate_config(gamenet_on_pickles(host, "default"), host)
    assert statistics_errors(config) == []


# ---------------------------------------------------------------------------- model extras
def loss_nodes(config: object) -> list[tuple[str, object]]:
    return [(f"losses.{i}", node) for i, node in enumerate(config.losses)]  # type: ignore[attr-defined]


def test_losses_needing_extras_the_model_lacks_are_named(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    from medtoolkit.components.requirements import extras_errors

    config = validate_config(gamenet_on_pickles(host, "default"), host)  # bce, multilabel_margin, ddi
    assert extras_errors(config.model, loss_nodes(config)) == []
    monkeypatch.setattr(host.get("loss", "bce"), "extras_needed",
                        classmethod(lambda cls, params: frozenset({"representation", "masked_logits"})))
    monkeypatch.setattr(host.get("loss", "ddi"), "extras_needed",
                        classmethod(lambda cls, params: frozenset({"masked_logits"})))
    errors = [(e.path, e.message) for e in extras_errors(config.model, loss_nodes(config))]
    assert errors == [
        ("losses.0", "loss 'bce' needs model extras 'masked_logits', 'representation' that recommender 'gamenet' "
                     "does not provide (it provides: none)"),
        ("losses.2", "loss 'ddi' needs model extras 'masked_logits' that recommender 'gamenet' does not provide "
                     "(it provides: none)"),
    ]
    # the model provides one of them: only what is still missing is named, with what it provides
    monkeypatch.setattr(host.get("recommender", "gamenet"), "extras_provided",
                        classmethod(lambda cls, params: frozenset({"masked_logits", "attention"})))
    errors = [(e.path, e.message) for e in extras_errors(config.model, loss_nodes(config))]
    assert errors == [
        ("losses.0", "loss 'bce' needs model extras 'representation' that recommender 'gamenet' does not provide "
                     "(it provides: 'attention', 'masked_logits')"),
    ]
    monkeypatch.setattr(host.get("recommender", "gamenet"), "extras_provided",
                        classmethod(lambda cls, params: frozenset({"masked_logits", "representation"})))
    assert extras_errors(config.model, loss_nodes(config)) == []


class ExtrasProvider(Recommender):
    """Provides ``representation``, and ``masked_logits`` too with ``with_masks``."""

    class Params(Params):
        with_masks: bool = False

    @classmethod
    def extras_provided(cls, params: Params) -> frozenset[str]:
        return frozenset({"representation", "masked_logits"} if params.with_masks else {"representation"})

    def forward(self, batch):  # noqa: ANN001, ANN201
        raise NotImplementedError


class MaskedToyLoss(Loss):
    """Needs the extras its ``needs`` lists."""

    class Params(Params):
        needs: list[str] = Field(default_factory=lambda: ["masked_logits"])

    @classmethod
    def extras_needed(cls, params: Params) -> frozenset[str]:
        return frozenset(params.needs)

    def forward(self, logits, batch, extras):  # noqa: ANN001, ANN201
        raise NotImplementedError


def test_extras_follow_the_validated_params() -> None:
    from medtoolkit.components.requirements import extras_errors

    losses = [("stages.0.losses.0", Node.of(MaskedToyLoss)), ("stages.0.losses.1", Node.of(MaskedToyLoss, needs=[]))]
    errors = extras_errors(Node.of(ExtrasProvider), losses)
    assert [(e.path, e.message) for e in errors] == [
        ("stages.0.losses.0", "loss 'MaskedToyLoss' needs model extras 'masked_logits' that recommender "
                              "'ExtrasProvider' does not provide (it provides: 'representation')"),
    ]
    assert extras_errors(Node.of(ExtrasProvider, with_masks=True), losses) == []
