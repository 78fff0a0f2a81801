"""Experiments: ``medtoolkit.build(...)`` -> ``run(out_dir)`` -> report directory; re-evaluation.

Runs use a 60-patient synthetic dataset and a GAMENet a few thousand parameters wide for
2 epochs (about a second each); the expensive runs are module-scoped fixtures.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import medtoolkit
from medtoolkit.experiment import METRIC_KEYS, Experiment, RunResult, evaluate_run
from medtoolkit.training.checkpoint import load_checkpoint, save_atomic
from medtoolkit.training.report import metrics_table
from medtoolkit.training.run_dir import RunDirectoryError, open_run_dir
from medtoolkit.training.trainer import Trainer

TINY_DATA: dict[str, Any] = {
    "type": "synthetic", "n_patients": 60, "n_diagnoses": 40, "n_procedures": 30, "n_drugs": 12, "seed": 0,
    "mean_diagnoses": 5, "mean_procedures": 3, "mean_medications": 4, "n_ddi_pairs": 8,
    "n_substructures": 0, "n_conditions": 4,
}
TINY_OVERRIDES = [f"dataset.{key}={value}" for key, value in TINY_DATA.items()]  # type first: presets default to mimic3

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "device": "cpu",
    "dataset": TINY_DATA,
    "task": {"type": "medication_recommendation", "protocol": "random", "seeds": [0]},
    "model": {"type": "gamenet", "hidden_dim": 8,
              "encoder": {"type": "gru", "embedding_dim": 8, "hidden_dim": 8, "output_dim": 8}},
    "losses": [{"type": "bce", "weight": 0.9}, {"type": "multilabel_margin", "weight": 0.1},
               {"type": "ddi", "granularity": "visit"}],
    "trainer": {"epochs": 2, "lr": 0.01, "batch_size": 8, "progress": "none"},
    "eval": {"bootstrap_rounds": 3},
}


def tiny(**sections: Any) -> dict[str, Any]:
    """A deep copy of :data:`TINY` with top-level sections replaced or (for dicts) updated."""
    config = copy.deepcopy(TINY)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict) and "type" not in value:
            config[key].update(value)
        else:
            config[key] = value
    return config


def metric_values(metrics: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {key: (metrics[key]["mean"], metrics[key]["std"]) for key in METRIC_KEYS}




pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is fastest


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path]:
    out = tmp_path_factory.mktemp("single")
    return medtoolkit.build(tiny()).run(out_dir=out, progress=False), out


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path]:
    out = tmp_path_factory.mktemp("two_seeds")
    config = tiny(task={"seeds": [0, 1]}, trainer={"epochs": 1})
    return medtoolkit.build(config).run(out_dir=out, progress=False), out


# ---------------------------------------------------------------------------- the report directory
def test_run_writes_every_report_file(single: tuple[RunResult, Path]) -> None:
    _, out = single
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint_seed0.pt", "config.yaml", "curves.png", "metrics.json", "model_seed0.pt", "report.md",
    ]
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_config_yaml_is_the_resolved_config(single: tuple[RunResult, Path]) -> None:
    _, out = single
    written = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert written == medtoolkit.build(tiny()).config.to_dict()
    # defaults are filled in, so the file alone reproduces the run
    assert written["model"]["memory"]["type"] == "gcn"
    assert written["trainer"]["weight_decay"] == 0.0 and written["eval"]["bootstrap_fraction"] == 0.8
    assert "stages" not in written  # a single-stage run's resolved file is as before stages existed


def test_metrics_json_has_the_documented_keys(single: tuple[RunResult, Path]) -> None:
    result, out = single
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics == json.loads(json.dumps(result.metrics))
    for key in ("jaccard", "prauc", "f1", "precision", "recall", "ddi_rate", "avg_drugs"):
        value = metrics["test"][key]
        assert isinstance(value["mean"], float) and isinstance(value["std"], float), key
        assert value["std"] >= 0
    assert 0 <= metrics["test"]["jaccard"]["mean"] <= 1
    assert len(metrics["epoch_seconds"]) == 2 and all(s > 0 for s in metrics["epoch_seconds"])
    assert isinstance(metrics["n_params"], int) and metrics["n_params"] == sum(
        p.numel() for p in result.models["seed0"].parameters()
    )
    assert metrics["data"]["patients"] == 60 and metrics["data"]["n_drugs"] == 12
    assert isinstance(metrics["data"]["visits"], int) and metrics["data"]["visits"] >= 60
    assert 0 < metrics["data"]["ground_truth_ddi_rate"] < 1
    assert metrics["protocol"]["splits"] == ["seed0"] and metrics["protocol"]["bootstrap_rounds"] == 3
    assert len(metrics["test"]["rounds"]) == 3
    assert metrics["device"] == "cpu" and metrics["plugins"]["medtoolkit"] == medtoolkit.__version__
    assert metrics["wall_seconds"] > 0 and metrics["peak_memory_mb"] > 0


def test_report_md_carries_the_metrics_table(single: tuple[RunResult, Path]) -> None:
    result, out = single
    report = (out / "report.md").read_text(encoding="utf-8")
    assert report == result.report_markdown
    assert report.startswith("# tiny\n")
    assert metrics_table(result.metrics["test"]) in report
    assert f"parameters: {result.metrics['n_params']:,}" in report


def test_model_file_holds_weights_config_versions_and_fingerprint(single: tuple[RunResult, Path]) -> None:
    result, out = single
    saved = load_checkpoint(out / "model_seed0.pt")
    assert set(saved) >= {"model", "config", "plugins", "data_fingerprint"}
    assert saved["config"] == yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    from medtoolkit.plugins import default_host

    loaded = {p.name: p.version for p in default_host().plugins if p.status == "ok"}
    assert saved["plugins"] == loaded
    assert saved["plugins"]["medtoolkit"] == medtoolkit.__version__
    experiment = medtoolkit.build(saved["config"])
    data = experiment.load_data(progress=False)
    assert saved["data_fingerprint"] == data.fingerprint() == result.metrics["data_fingerprint"]
    # the state dict is the selected model's and loads into a freshly built one
    task = experiment.config.task.build(None)
    model = experiment.config.model.build(task.build_schema(data, task.splits(data)[0]))
    model.load_state_dict(saved["model"])
    trained = result.models["seed0"].state_dict()
    assert all(torch.equal(saved["model"][k], trained[k]) for k in trained)


# ---------------------------------------------------------------------------- protocols and reproducibility
def test_two_seeds_give_two_splits_combined_over_seeds(two_seeds: tuple[RunResult, Path]) -> None:
    result, out = two_seeds
    test = result.metrics["test"]
    assert set(test["splits"]) == {"seed0", "seed1"}
    assert {"model_seed0.pt", "model_seed1.pt"} <= {p.name for p in out.iterdir()}
    assert set(result.models) == {"seed0", "seed1"}
    assert len(result.metrics["epoch_seconds"]) == 2  # one epoch per split
    assert result.metrics["protocol"]["splits"] == ["seed0", "seed1"]
    for key in METRIC_KEYS:
        means = [test["splits"][name][key]["mean"] for name in ("seed0", "seed1")]
        assert test[key]["mean"] == pytest.approx(np.mean(means), abs=1e-15)
        assert test[key]["std"] == pytest.approx(np.std(means), abs=1e-15)  # over seeds, not bootstrap rounds
    jaccards = [test["splits"][name]["jaccard"]["mean"] for name in ("seed0", "seed1")]
    assert jaccards[0] != jaccards[1]  # different test patients: the std above is not trivially 0


@pytest.mark.parametrize("run", ["single", "two_seeds"])
def test_evaluate_run_reproduces_the_test_metrics(run: str, request: pytest.FixtureRequest) -> None:
    result, out = request.getfixturevalue(run)
    evaluated = evaluate_run(out)
    assert evaluated["name"] == "tiny" and evaluated["model"] == "gamenet"
    assert metric_values(evaluated["test"]) == metric_values(result.metrics["test"])
    assert evaluated["test"].get("splits") == result.metrics["test"].get("splits")


def test_same_seed_gives_identical_metrics(single: tuple[RunResult, Path]) -> None:
    result, _ = single
    again = medtoolkit.build(tiny()).run(progress=False)  # no out_dir: nothing written
    assert again.out_dir is None
    assert again.metrics["test"] == result.metrics["test"]
    losses = [[e["train_loss"] for e in h["epochs"]] for h in again.metrics["history"].values()]
    assert losses == [[e["train_loss"] for e in h["epochs"]] for h in result.metrics["history"].values()]


def test_the_task_prepares_the_data_before_splitting_in_training_and_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medtoolkit.tasks.medication import MedicationRecommendationTask

    calls: list[tuple[str, int]] = []
    prepared: list[Any] = []
    original_splits = MedicationRecommendationTask.splits

    def prepare(self: Any, data: Any) -> Any:
        calls.append(("prepare", id(data)))
        prepared.append(copy.copy(data))  # a new object: the run must use it from here on
        return prepared[-1]

    def splits(self: Any, data: Any) -> Any:
        calls.append(("splits", id(data)))
        return original_splits(self, data)

    monkeypatch.setattr(MedicationRecommendationTask, "prepare", prepare)
    monkeypatch.setattr(MedicationRecommendationTask, "splits", splits)
    medtoolkit.build(tiny(trainer={"epochs": 1})).run(out_dir=tmp_path, progress=False)
    evaluate_run(tmp_path)
    assert [name for name, _ in calls] == ["prepare", "splits", "prepare", "splits"]
    assert calls[1][1] == id(prepared[0]) and calls[3][1] == id(prepared[1])


# ---------------------------------------------------------------------------- building
def test_build_from_a_preset_name_with_overrides(tmp_path: Path) -> None:
    experiment = medtoolkit.build("previous_visit", [*TINY_OVERRIDES, "eval.bootstrap_rounds=0", "device=cpu"])
    assert experiment.config.model.type == "previous_visit"
    assert experiment.config.dataset.params.n_patients == 60
    result = experiment.run(out_dir=tmp_path, progress=False)
    # an untrainable model: no epochs, nothing to plot, still a full report
    assert result.metrics["epoch_seconds"] == [] and result.metrics["n_params"] == 0
    assert result.metrics["test"]["rounds"] == []
    assert {"config.yaml", "metrics.json", "report.md", "model_seed0.pt"} <= {p.name for p in tmp_path.iterdir()}
    assert not (tmp_path / "curves.png").exists()


def test_build_from_a_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tiny()), encoding="utf-8")
    experiment = medtoolkit.build(path, ["trainer.epochs=7"])
    assert experiment.config.trainer.epochs == 7 and experiment.config.name == "tiny"
    assert isinstance(experiment, Experiment)


def test_build_rejects_an_unknown_name() -> None:
    with pytest.raises(FileNotFoundError) as caught:
        medtoolkit.build("nosuch")
    message = str(caught.value)
    assert message.startswith("'nosuch' is neither a run file nor a preset")
    from medtoolkit.plugins import default_host

    n_presets = len(default_host().registry("preset").names())
    if n_presets <= 12:
        assert "; presets: " in message and "gamenet" in message
    else:
        assert message.endswith(f" ({n_presets} presets: 'medtoolkit presets list' shows them)")
    with pytest.raises(FileNotFoundError, match="run file not found: missing.yaml"):
        medtoolkit.build("missing.yaml")


def test_a_plugin_preset_missing_from_this_install_says_how_to_install_it() -> None:
    from medtoolkit.plugins import PluginHost

    core_only = PluginHost(load_entry_points=False)  # as after `pip install medtoolkit` alone
    with pytest.raises(FileNotFoundError) as caught:
        Experiment.from_config("safedrug", host=core_only)
    assert str(caught.value).endswith(
        "previous_visit. It is provided by a plugin: pip install \"medtoolkit[molecule]\" "
        "(from a checkout: pip install -e \".[molecule]\" -e plugins/molecule)."
    )


def test_override_switching_a_type_is_noted() -> None:
    experiment = medtoolkit.build(tiny(), ["model.type=logistic_regression"])
    assert experiment.config.model.type == "logistic_regression"
    assert experiment.notes == [
        "model: switched type 'gamenet' -> 'logistic_regression'; reset parameters encoder, hidden_dim"
    ]


# ---------------------------------------------------------------------------- resume and re-evaluation guards
class Interrupt(Exception):
    """Stands in for a killed process."""


def test_interrupted_run_resumes_to_the_same_result(
    single: tuple[RunResult, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, reference_dir = single
    original = Trainer.train_epoch
    calls = {"n": 0}

    def train_epoch(self: Trainer, *args: Any, **kwargs: Any) -> float:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Interrupt
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_epoch", train_epoch)
        with pytest.raises(Interrupt):
            medtoolkit.build(tiny()).run(out_dir=tmp_path, progress=False)
    assert not (tmp_path / "metrics.json").exists()
    resumed = medtoolkit.build(tiny()).run(out_dir=tmp_path, resume=True, progress=False)
    assert resumed.metrics["test"] == reference.metrics["test"]
    saved, expected = load_checkpoint(tmp_path / "model_seed0.pt"), load_checkpoint(reference_dir / "model_seed0.pt")
    assert all(torch.equal(saved["model"][k], expected["model"][k]) for k in expected["model"])


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"dataset": {**TINY_DATA, "seed": 1}}, "data fingerprint"),
        ({"model": {**TINY["model"], "hidden_dim": 16}}, "config"),
        ({"trainer": {"lr": 0.5}}, "config"),
        ({"losses": [{"type": "bce"}]}, "config"),
    ],
)
def test_resume_refuses_a_run_directory_of_other_data_or_settings(
    single: tuple[RunResult, Path], tmp_path: Path, change: dict[str, Any], what: str
) -> None:
    _, out = single
    target = tmp_path / "run"
    target.mkdir()
    (target / "checkpoint_seed0.pt").write_bytes((out / "checkpoint_seed0.pt").read_bytes())
    with pytest.raises(ValueError, match=f"cannot resume from .*checkpoint_seed0.pt: the checkpoint's {what} differs"):
        medtoolkit.build(tiny(**change)).run(out_dir=target, resume=True, progress=False)


@pytest.mark.parametrize("missing", [("config",), ("data_fingerprint",), ("config", "data_fingerprint")])
def test_resume_refuses_a_checkpoint_without_its_config_or_fingerprint(
    single: tuple[RunResult, Path], tmp_path: Path, missing: tuple[str, ...]
) -> None:
    _, out = single
    checkpoint = copy_run(out, tmp_path, ("checkpoint_seed0.pt",)) / "checkpoint_seed0.pt"
    state = load_checkpoint(checkpoint)
    save_atomic({k: v for k, v in state.items() if k not in missing}, checkpoint)
    with pytest.raises(ValueError) as caught:
        medtoolkit.build(tiny()).run(out_dir=tmp_path, resume=True, progress=False)
    assert str(caught.value) == (
        f"cannot resume from {checkpoint}: it has no {', '.join(missing)} (not a checkpoint written by "
        "`medtoolkit train`); use a new --out directory or --overwrite"
    )


def test_resume_names_the_first_setting_that_differs(single: tuple[RunResult, Path], tmp_path: Path) -> None:
    _, out = single
    copy_run(out, tmp_path, ("checkpoint_seed0.pt",))
    with pytest.raises(ValueError, match=re.escape("differs from this run's at trainer.lr (0.01 vs 0.5)")):
        medtoolkit.build(tiny(trainer={"lr": 0.5})).run(out_dir=tmp_path, resume=True, progress=False)


def test_resume_may_extend_the_number_of_epochs(single: tuple[RunResult, Path], tmp_path: Path) -> None:
    _, out = single
    (tmp_path / "checkpoint_seed0.pt").write_bytes((out / "checkpoint_seed0.pt").read_bytes())
    longer = medtoolkit.build(tiny(trainer={"epochs": 3}, device="auto")).run(
        out_dir=tmp_path, resume=True, progress=False
    )
    assert len(longer.metrics["epoch_seconds"]) == 3
    assert longer.metrics["history"]["seed0"]["epochs"][:2] == single[0].metrics["history"]["seed0"]["epochs"]


def copy_run(source: Path, target: Path, names: tuple[str, ...] = ("config.yaml", "model_seed0.pt")) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        (target / name).write_bytes((source / name).read_bytes())
    return target


def test_evaluate_run_refuses_models_of_other_data(single: tuple[RunResult, Path], tmp_path: Path) -> None:
    _, out = single
    copy_run(out, tmp_path)
    saved = load_checkpoint(tmp_path / "model_seed0.pt")
    save_atomic({**saved, "data_fingerprint": "0" * 64}, tmp_path / "model_seed0.pt")
    with pytest.raises(ValueError, match="model_seed0.pt was trained on different data"):
        evaluate_run(tmp_path)


@pytest.mark.parametrize(
    ("section", "change", "difference"),
    [
        ("dataset", {"seed": 1}, "dataset.seed (0 vs 1)"),
        ("model", {"hidden_dim": 16}, "model.hidden_dim (8 vs 16)"),
        ("eval", {"threshold": 0.4}, "eval.threshold (0.5 vs 0.4)"),
    ],
)
def test_evaluate_run_refuses_a_model_of_another_config(
    single: tuple[RunResult, Path], tmp_path: Path, section: str, change: dict[str, Any], difference: str
) -> None:
    _, out = single
    copy_run(out, tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    config[section].update(change)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        evaluate_run(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'model_seed0.pt'} was trained with another config than config.yaml; "
        f"first difference (model file vs config.yaml): {difference}"
    )


def test_evaluate_run_ignores_the_device(single: tuple[RunResult, Path], tmp_path: Path) -> None:
    result, out = single
    copy_run(out, tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**config, "device": "auto"}), encoding="utf-8")
    assert metric_values(evaluate_run(tmp_path, device_name="cpu")["test"]) == metric_values(result.metrics["test"])


def test_evaluate_run_refuses_a_model_file_without_its_config(single: tuple[RunResult, Path], tmp_path: Path) -> None:
    _, out = single
    copy_run(out, tmp_path)
    saved = load_checkpoint(tmp_path / "model_seed0.pt")
    del saved["config"]
    save_atomic(saved, tmp_path / "model_seed0.pt")
    with pytest.raises(ValueError) as caught:
        evaluate_run(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'model_seed0.pt'} has no config of its own: cannot check it against config.yaml"
    )


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda state: state.pop("output.3.weight"), "missing keys output.3.weight"),
        (lambda state: state.update({"extra.bias": torch.zeros(2)}), "unexpected keys extra.bias"),
        (lambda state: state.update({"output.3.bias": torch.zeros(5)}),
         "size mismatch output.3.bias: saved [5], model [12]"),
    ],
    ids=["missing", "unexpected", "size"],
)
def test_evaluate_run_names_weights_that_do_not_fit(
    single: tuple[RunResult, Path], tmp_path: Path, edit: Any, problem: str
) -> None:
    _, out = single
    copy_run(out, tmp_path)
    saved = load_checkpoint(tmp_path / "model_seed0.pt")
    edit(saved["model"])
    save_atomic(saved, tmp_path / "model_seed0.pt")
    with pytest.raises(ValueError) as caught:
        evaluate_run(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'model_seed0.pt'} does not fit the model built from its config: {problem}"


def test_evaluate_run_reports_an_unreadable_model_file(single: tuple[RunResult, Path], tmp_path: Path) -> None:
    _, out = single
    copy_run(out, tmp_path)
    model = tmp_path / "model_seed0.pt"
    model.write_bytes(model.read_bytes()[:100])
    with pytest.raises(ValueError, match=re.escape(f"cannot read checkpoint {model}: corrupt or truncated file")):
        evaluate_run(tmp_path)


def test_evaluate_run_needs_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="has no config.yaml"):
        evaluate_run(tmp_path)


# ---------------------------------------------------------------------------- the run directory
def test_a_second_run_into_a_run_directory_is_refused(single: tuple[RunResult, Path]) -> None:
    _, out = single
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RunDirectoryError) as caught:
        medtoolkit.build(tiny()).run(out_dir=out, progress=False)
    assert str(caught.value) == (
        f"{out} already holds a run (checkpoint_seed0.pt, config.yaml, curves.png, ...); pass --resume to "
        "continue it or --overwrite to replace it (Python: resume=True / overwrite=True)"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_overwrite_replaces_the_run_and_keeps_other_files(
    single: tuple[RunResult, Path], two_seeds: tuple[RunResult, Path], tmp_path: Path
) -> None:
    _, old = two_seeds
    copy_run(old, tmp_path, tuple(p.name for p in old.iterdir()))
    (tmp_path / "notes.md").write_text("mine", encoding="utf-8")
    (tmp_path / "metrics.json3f9a.tmp").write_text("{", encoding="utf-8")  # an interrupted write
    result = medtoolkit.build(tiny()).run(out_dir=tmp_path, overwrite=True, progress=False)
    assert result.metrics["test"] == single[0].metrics["test"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_seed0.pt", "config.yaml", "curves.png", "metrics.json", "model_seed0.pt", "notes.md",
        "report.md",
    ]  # model_seed1.pt and checkpoint_seed1.pt of the old run are gone


def test_resume_removes_leftovers_of_interrupted_writes(single: tuple[RunResult, Path], tmp_path: Path) -> None:
    _, out = single
    copy_run(out, tmp_path, ("checkpoint_seed0.pt",))
    (tmp_path / "checkpoint_seed0.ptk2l9.tmp").write_bytes(b"PK\x03\x04 half")
    medtoolkit.build(tiny()).run(out_dir=tmp_path, resume=True, progress=False)
    assert not list(tmp_path.glob("*.tmp"))


def test_a_run_directory_in_use_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Experiment, "load_data", lambda self, progress=True: pytest.fail("data was loaded"))
    with open_run_dir(tmp_path):
        with pytest.raises(RunDirectoryError, match=re.escape(f"{tmp_path} is in use by another medtoolkit process")):
            medtoolkit.build(tiny()).run(out_dir=tmp_path, overwrite=True, progress=False)


def test_resume_and_overwrite_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^--resume and --overwrite exclude each other"):
        medtoolkit.build(tiny()).run(out_dir=tmp_path, resume=True, overwrite=True, progress=False)


def test_grouping_by_hospital_without_hospitals_is_refused_before_training(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = {"dataset": {"type": "synthetic", "n_patients": 40, "n_hospitals": 0}, "model": {"type": "gamenet"},
           "losses": [{"type": "bce"}], "trainer": {"epochs": 1}, "eval": {"group_by": "hospital"}}
    experiment = Experiment.from_config(raw)
    monkeypatch.setattr("medtoolkit.experiment.train_split",
                        lambda *a, **k: pytest.fail("trained before refusing group_by: hospital"))
    with pytest.raises(ValueError, match="eval.group_by is 'hospital', but the data .* has no hospital"):
        experiment.run(out_dir=None, progress=False)
