"""Staged runs: init_from, adapters, freezing, one unit per hospital, files, resume and re-scoring.

A logistic regression on 80 synthetic patients of 4 hospitals trains in milliseconds per
epoch: ``pre`` on every hospital, then ``tune`` once per hospital, starting from ``pre``
with the ``finetune`` adapter and the code weights frozen (only the drug bias trains). A
spy around :meth:`Trainer.fit` records what each unit started from, trained and saw.
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
from medtoolkit.cli import stage_line
from medtoolkit.config import apply_overrides, load_yaml, validate_config
from medtoolkit.experiment import RunResult, evaluate_run
from medtoolkit.tasks.medication import Split
from medtoolkit.testing import fake_ehr
from medtoolkit.training.checkpoint import load_checkpoint, save_atomic
from medtoolkit.training.report import render_report
from medtoolkit.training.stages import (
    StageRunner,
    is_stage_file,
    patient_hospitals,
    stage_units,
    staged_metrics,
)
from medtoolkit.training.trainer import Trainer

CPU = torch.device("cpu")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "multicenter_gamenet_finetune.yaml"

DATA: dict[str, Any] = {
    "type": "synthetic", "n_patients": 80, "n_diagnoses": 30, "n_procedures": 20, "n_drugs": 10, "seed": 0,
    "mean_diagnoses": 4, "mean_procedures": 2, "mean_medications": 3, "n_ddi_pairs": 5,
    "n_substructures": 0, "n_conditions": 4, "n_hospitals": 4,
}
STAGED: dict[str, Any] = {
    "name": "staged",
    "seed": 5,
    "device": "cpu",
    "dataset": DATA,
    "task": {"type": "medication_recommendation", "seeds": [0]},
    "model": {"type": "logistic_regression"},
    "losses": [{"type": "bce"}],
    "trainer": {"epochs": 2, "lr": 0.05, "batch_size": 8, "progress": "none"},
    "eval": {"bootstrap_rounds": 2, "group_by": "hospital", "group_bins": [10, 20]},
    "stages": [
        {"name": "pre", "evaluate": True},
        {"name": "tune", "init_from": "pre", "adapter": {"type": "finetune"}, "freeze": ["weights.*"],
         "repeat_per": "hospital", "trainer": {"epochs": 3, "lr": 0.1}},
    ],
}


def staged(**changes: Any) -> dict[str, Any]:
    """A deep copy of :data:`STAGED` with top-level sections replaced."""
    config = copy.deepcopy(STAGED)
    config.update(copy.deepcopy(changes))
    return config


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class FitSpy:
    """Wraps :meth:`Trainer.fit`: records each call's starting and final weights and patients."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_at = fail_at
        self.original = Trainer.fit

    def __call__(self, trainer: Trainer, data: Any, train: np.ndarray, val: np.ndarray, ddi: Any,
                 **kwargs: Any) -> Any:
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise Interrupt
        call = {"start": state_of(trainer.model), "train": np.array(train), "val": np.array(val),
                "trainable": {n for n, p in trainer.model.named_parameters() if p.requires_grad},
                "checkpoint": kwargs.get("checkpoint_path"), "epochs": trainer.params.epochs}
        self.calls.append(call)
        history = self.original(trainer, data, train, val, ddi, **kwargs)
        call["end"] = state_of(trainer.model)
        return history

    def install(self, patch: pytest.MonkeyPatch) -> None:
        """Put the spy in place of :meth:`Trainer.fit` (a plain function, so it binds the trainer)."""
        patch.setattr(Trainer, "fit", lambda trainer, *args, **kwargs: self(trainer, *args, **kwargs))


class Interrupt(Exception):
    """Stands in for a killed process."""


def run_with_spy(config: dict[str, Any], out: Path | None, spy: FitSpy, **run: Any) -> RunResult:
    with pytest.MonkeyPatch.context() as patch:
        spy.install(patch)
        return medtoolkit.build(config).run(out_dir=out, progress=False, **run)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def two_stages(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path, FitSpy]:
    out = tmp_path_factory.mktemp("staged")
    spy = FitSpy()
    return run_with_spy(staged(), out, spy), out, spy


@pytest.fixture(scope="module")
def world() -> tuple[Any, Any, Split]:
    """The experiment's data, task and split of :data:`STAGED`."""
    experiment = medtoolkit.build(staged())
    task = experiment.config.task.build(None)
    data = task.prepare(experiment.load_data(progress=False))
    return data, task, task.splits(data)[0]


# ---------------------------------------------------------------------------- what each unit starts from and sees
def test_the_first_stage_trains_once_on_every_training_patient(two_stages: Any, world: Any) -> None:
    _, out, spy = two_stages
    _, _, split = world
    pre = spy.calls[0]
    assert np.array_equal(pre["train"], split.train) and np.array_equal(pre["val"], split.val)
    assert pre["checkpoint"] == out / "checkpoint_seed0.pre.pt"
    assert pre["trainable"] == {"weights.diagnoses.weight", "weights.procedures.weight", "bias"}
    saved = load_checkpoint(out / "model_seed0.pre.pt")["model"]
    assert all(torch.equal(saved[k], pre["end"][k]) for k in pre["end"])


def test_every_tune_unit_starts_from_the_weights_pre_selected(two_stages: Any) -> None:
    _, _, spy = two_stages
    pre, units = spy.calls[0], spy.calls[1:]
    assert len(units) == 4
    for unit in units:
        assert set(unit["start"]) == set(pre["end"])
        assert all(torch.equal(unit["start"][k], pre["end"][k]) for k in pre["end"])
        assert unit["epochs"] == 3 and unit["checkpoint"] is None  # no per-epoch checkpoint for a unit


def test_freeze_patterns_freeze_exactly_the_named_parameters(two_stages: Any) -> None:
    _, _, spy = two_stages
    for unit in spy.calls[1:]:
        assert unit["trainable"] == {"bias"}
        for name in ("weights.diagnoses.weight", "weights.procedures.weight"):
            assert torch.equal(unit["end"][name], unit["start"][name])
        assert not torch.equal(unit["end"]["bias"], unit["start"]["bias"])


def test_each_unit_sees_only_its_own_hospitals_patients(two_stages: Any, world: Any) -> None:
    _, _, spy = two_stages
    data, _, split = world
    owner = patient_hospitals(data)
    units = spy.calls[1:]
    seen = [set(owner[np.concatenate([u["train"], u["val"]])].tolist()) for u in units]
    assert seen == [{0}, {1}, {2}, {3}]
    assert np.array_equal(np.sort(np.concatenate([u["train"] for u in units])), split.train)
    assert np.array_equal(np.sort(np.concatenate([u["val"] for u in units])), split.val)


def test_a_patients_hospital_is_that_of_its_first_visit() -> None:
    data = fake_ehr(n_patients=6, n_hospitals=3, seed=4)
    expected = [int(data.hospital[data.visit_offsets[p]]) for p in range(6)]
    assert patient_hospitals(data).tolist() == expected
    assert data.hospital is not None and len(set(data.hospital.tolist())) > 1


# ---------------------------------------------------------------------------- files and metrics
def test_files_of_a_staged_run(two_stages: Any) -> None:
    _, out, _ = two_stages
    assert sorted(p.name for p in out.glob("*.pt")) == [
        "checkpoint_seed0.pre.pt", "model_seed0.pre.pt", "model_seed0.tune.h0.pt", "model_seed0.tune.h1.pt",
        "model_seed0.tune.h2.pt", "model_seed0.tune.h3.pt",
    ]
    assert {"config.yaml", "metrics.json", "report.md", "curves.png"} <= {p.name for p in out.iterdir()}
    unit = load_checkpoint(out / "model_seed0.tune.h2.pt")
    assert list(unit["model"]) == ["bias"]  # only what trained (finetune adds no entries)
    assert (unit["stage"], unit["split"], unit["hospital"], unit["hospital_id"]) == ("tune", "seed0", 2, "2")
    shared = load_checkpoint(out / "model_seed0.pre.pt")
    assert shared["config"] == yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert is_stage_file(out / "model_seed0.tune.h2.pt") and not is_stage_file(out / "model_seed0.pt")


def test_metrics_describe_every_stage(two_stages: Any) -> None:
    result, out, _ = two_stages
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics == json.loads(json.dumps(result.metrics))
    pre, tune = metrics["stages"]
    n_weights = (30 + 1 + 20 + 1) * 10  # an embedding row per code (+ padding) per drug
    assert {k: pre[k] for k in ("name", "repeat_per", "init_from", "adapter", "units", "trained_units",
                                "skipped_units", "trainable_params", "total_params", "trainable_share")} == {
        "name": "pre", "repeat_per": None, "init_from": None, "adapter": None, "units": 1, "trained_units": 1,
        "skipped_units": [], "trainable_params": n_weights + 10, "total_params": n_weights + 10,
        "trainable_share": 1.0}
    assert {k: tune[k] for k in ("repeat_per", "init_from", "adapter", "units", "trained_units", "skipped_units",
                                 "trainable_params", "total_params", "select_metric")} == {
        "repeat_per": "hospital", "init_from": "pre", "adapter": "finetune", "units": 4, "trained_units": 4,
        "skipped_units": [], "trainable_params": 10, "total_params": n_weights + 10, "select_metric": "jaccard"}
    assert tune["trainable_share"] == pytest.approx(10 / (n_weights + 10))
    assert set(tune["best_epochs"]["seed0"]) == {"0", "1", "2", "3"}
    assert pre["best_epochs"] == {"seed0": metrics["best_epochs"]["seed0.pre"]}
    assert pre["seconds"] > 0 and tune["seconds"] > 0
    # pre was asked to be evaluated; the last stage is the run's test result
    assert pre["test"]["n_patients"] == tune["test"]["n_patients"] == metrics["test"]["n_patients"]
    assert tune["test"] == metrics["test"] and pre["test"]["jaccard"] != tune["test"]["jaccard"]
    assert list(metrics["history"]) == ["seed0.pre"] and len(metrics["history"]["seed0.pre"]["epochs"]) == 2
    assert len(metrics["epoch_seconds"]) == 2 + 4 * 3
    assert metrics["protocol"]["select_metric"] == "jaccard"
    assert metrics["n_params"] == n_weights + 10


def test_the_report_renders_a_staged_run(two_stages: Any) -> None:
    result, out, _ = two_stages
    report = (out / "report.md").read_text(encoding="utf-8")
    assert report == render_report(result.metrics)
    assert "`tune`" in report and (out / "curves.png").exists()


def test_all_units_test_patients_are_scored_once_in_patient_order(two_stages: Any, world: Any) -> None:
    result, _, _ = two_stages
    data, _, split = world
    test = result.metrics["test"]
    assert test["n_patients"] == len(split.test)
    assert test["n_visits"] == int(data.visits_per_patient[split.test].sum())
    per_group = test["groups"]["per_group"]
    assert sorted(per_group) == ["0", "1", "2", "3"]


def test_evaluate_run_rebuilds_the_units_from_their_files(two_stages: Any) -> None:
    result, out, _ = two_stages
    evaluated = evaluate_run(out, device_name="cpu")
    assert evaluated["test"] == result.metrics["test"]


def test_evaluate_run_names_a_missing_unit_file(two_stages: Any, tmp_path: Path) -> None:
    _, out, _ = two_stages
    for path in out.iterdir():
        if path.name != "model_seed0.tune.h1.pt":
            (tmp_path / path.name).write_bytes(path.read_bytes())
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'model_seed0.tune.h1.pt'} is missing")):
        evaluate_run(tmp_path, device_name="cpu")


def test_evaluate_run_refuses_stage_files_of_another_config(two_stages: Any, tmp_path: Path) -> None:
    _, out, _ = two_stages
    for path in out.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    config = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    config["stages"][1]["trainer"]["lr"] = 0.3
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        evaluate_run(tmp_path, device_name="cpu")
    assert str(caught.value) == (
        f"{tmp_path / 'model_seed0.pre.pt'} was trained with another config than config.yaml; first difference "
        "(model file vs config.yaml): stages.1.trainer.lr (0.1 vs 0.3)"
    )


def test_a_run_without_out_dir_gives_the_same_result(two_stages: Any) -> None:
    result, _, _ = two_stages
    again = medtoolkit.build(staged()).run(progress=False)
    assert again.metrics["test"] == result.metrics["test"]
    assert again.metrics["stages"][1]["best_epochs"] == result.metrics["stages"][1]["best_epochs"]


# ---------------------------------------------------------------------------- resume
def test_resume_after_an_interrupted_repeated_stage_retrains_only_missing_units(
    two_stages: Any, world: Any, tmp_path: Path
) -> None:
    reference, reference_dir, _ = two_stages
    data, _, split = world
    with pytest.raises(Interrupt):
        run_with_spy(staged(), tmp_path, FitSpy(fail_at=3))  # pre, h0, h1 finished; h2 interrupted
    assert sorted(p.name for p in tmp_path.glob("model_*")) == [
        "model_seed0.pre.pt", "model_seed0.tune.h0.pt", "model_seed0.tune.h1.pt"]
    spy = FitSpy()
    resumed = run_with_spy(staged(), tmp_path, spy, resume=True)
    owner = patient_hospitals(data)
    assert [set(owner[call["train"]].tolist()) for call in spy.calls] == [{2}, {3}]  # pre, h0, h1 were loaded
    assert resumed.metrics["test"] == reference.metrics["test"]
    tune = resumed.metrics["stages"][1]
    assert (tune["units"], tune["trained_units"]) == (4, 4)
    for name in ("model_seed0.tune.h2.pt", "model_seed0.tune.h3.pt"):
        assert torch.equal(load_checkpoint(tmp_path / name)["model"]["bias"],
                           load_checkpoint(reference_dir / name)["model"]["bias"])


def test_resume_refuses_a_unit_file_of_other_settings(two_stages: Any, tmp_path: Path) -> None:
    _, out, _ = two_stages
    (tmp_path / "model_seed0.tune.h0.pt").write_bytes((out / "model_seed0.tune.h0.pt").read_bytes())
    changed = staged()
    changed["stages"][1]["trainer"]["lr"] = 0.3
    with pytest.raises(ValueError) as caught:
        medtoolkit.build(changed).run(out_dir=tmp_path, resume=True, progress=False)
    assert str(caught.value) == (
        f"cannot resume from {tmp_path / 'model_seed0.tune.h0.pt'}: the model file's config differs from this "
        "run's at stages.1.trainer.lr (0.1 vs 0.3) (different settings); use a new --out directory"
    )
    assert not (tmp_path / "config.yaml").exists()  # refused before config.yaml is written


def test_resume_may_change_a_stages_epochs(two_stages: Any, tmp_path: Path) -> None:
    _, out, _ = two_stages
    for name in ("model_seed0.pre.pt", "checkpoint_seed0.pre.pt", "model_seed0.tune.h0.pt"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    longer = staged()
    longer["stages"][1]["trainer"]["epochs"] = 1
    spy = FitSpy()
    run_with_spy(longer, tmp_path, spy, resume=True)
    assert [call["epochs"] for call in spy.calls] == [1, 1, 1]  # h1, h2, h3 (h0 and pre are loaded)


def test_resume_refuses_a_unit_file_of_other_data(two_stages: Any, tmp_path: Path) -> None:
    _, out, _ = two_stages
    unit = load_checkpoint(out / "model_seed0.tune.h3.pt")
    save_atomic({**unit, "data_fingerprint": "0" * 64}, tmp_path / "model_seed0.tune.h3.pt")
    with pytest.raises(ValueError, match="the model file's data fingerprint differs from this run's"):
        medtoolkit.build(staged()).run(out_dir=tmp_path, resume=True, progress=False)


# ---------------------------------------------------------------------------- units: skipped, errors
def runner_for(data: Any, split: Split, config: dict[str, Any], out: Path | None = None) -> StageRunner:
    experiment = medtoolkit.build(config)
    task = experiment.config.task.build(None)
    return StageRunner(experiment.config, data, split, task.build_schema(data, split), task, CPU, out=out)


def small_world() -> tuple[Any, Split, np.ndarray]:
    data = fake_ehr(n_patients=24, n_hospitals=3, seed=1)
    owner = patient_hospitals(data)
    patients = np.arange(24)
    hospital_two = patients[owner == 2]
    others = patients[owner != 2]
    # hospital 2 has test patients only: its unit has nothing to train on
    split = Split("s", train=others[: len(others) - 4], val=others[len(others) - 4:], test=np.sort(
        np.concatenate([hospital_two, others[:3]])))
    return data, split, owner


def test_a_hospital_without_training_patients_is_skipped_and_reported() -> None:
    data, split, owner = small_world()
    runner = runner_for(data, split, staged(eval={"bootstrap_rounds": 0}))
    result = runner.run()
    tune = result.stages[1]
    assert [u.status for u in tune.units] == ["trained", "trained", "skipped"]
    assert tune.skipped == ["2"]
    assert result.test["n_patients"] == len(split.test)  # its test patients are still predicted
    metrics = staged_metrics(runner.config, {"s": result}, data, runner.task, CPU, {}, 0.0)
    assert metrics["stages"][1]["skipped_units"] == ["2"]
    assert (metrics["stages"][1]["units"], metrics["stages"][1]["trained_units"]) == (3, 2)
    assert set(metrics["stages"][1]["best_epochs"]["s"]) == {"0", "1"}


def test_units_cover_the_hospitals_of_every_part_of_the_split() -> None:
    data, split, owner = small_world()
    config = validate_config(staged())
    units = stage_units(config.stages[1], split, data, runner_for(data, split, staged()).schema)
    assert [(u.position, u.count, u.hospital, u.label) for u in units] == [(0, 3, 0, "0"), (1, 3, 1, "1"),
                                                                        (2, 3, 2, "2")]
    assert len(units[2].train) == 0 and len(units[2].test) == int((owner == 2).sum())
    (once,) = stage_units(config.stages[0], split, data, runner_for(data, split, staged()).schema)
    assert once.hospital is None and np.array_equal(once.train, split.train)


def test_repeat_per_hospital_without_hospitals_names_the_stage() -> None:
    data = fake_ehr(n_patients=12, seed=2)
    split = Split("s", train=np.arange(8), val=np.arange(8, 10), test=np.arange(10, 12))
    spy = FitSpy()
    with pytest.MonkeyPatch.context() as patch, pytest.raises(
            ValueError, match="^stage 'tune' has repeat_per: hospital, but the data .* has no hospital column"):
        spy.install(patch)
        runner_for(data, split, staged(eval={"group_by": "none"})).run()
    assert spy.calls == []  # refused before any stage trained


def test_a_freeze_pattern_matching_nothing_names_the_stage_and_pattern() -> None:
    data, split, _ = small_world()
    config = staged()
    config["stages"][1]["freeze"] = ["weights.*", "encoder.*"]
    with pytest.raises(ValueError, match=re.escape(
            "stage 'tune': freeze pattern 'encoder.*' matches no parameter of 'logistic_regression' (parameters: ")):
        runner_for(data, split, config).run()


def test_a_stage_without_init_from_starts_from_a_fresh_model() -> None:
    data, split, _ = small_world()
    config = staged()
    del config["stages"][1]["init_from"]
    runner = runner_for(data, split, config)
    fresh, _ = runner.attached_model(runner.config.stages[1], 0)
    again, _ = runner.attached_model(runner.config.stages[1], 1)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), again.state_dict().values()))
    assert not any(p.requires_grad for n, p in fresh.named_parameters() if n.startswith("weights."))


def test_repeated_stage_starting_from_a_repeated_stage_uses_the_same_hospitals_weights() -> None:
    data, split, _ = small_world()
    config = staged(stages=[
        {"name": "pre", "repeat_per": "hospital"},
        {"name": "tune", "init_from": "pre", "repeat_per": "hospital", "freeze": ["bias"]},
    ])
    spy = FitSpy()
    with pytest.MonkeyPatch.context() as patch:
        spy.install(patch)
        runner_for(data, split, config).run()
    pre_units, tune_units = spy.calls[:2], spy.calls[2:]
    for pre, tune in zip(pre_units, tune_units):
        assert np.array_equal(pre["train"], tune["train"])
        assert all(torch.equal(tune["start"][k], pre["end"][k]) for k in pre["end"])
    assert not torch.equal(pre_units[0]["end"]["bias"], pre_units[1]["end"]["bias"])


# ---------------------------------------------------------------------------- single-stage runs, CLI, example
def test_a_single_stage_run_keeps_its_files_and_config(tmp_path: Path) -> None:
    config = staged()
    del config["stages"]
    result = medtoolkit.build(config).run(out_dir=tmp_path, progress=False)
    assert "stages" not in yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    assert "stages" not in result.metrics and list(result.metrics["history"]) == ["seed0"]
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["checkpoint_seed0.pt", "model_seed0.pt"]


def test_stage_line_summarises_a_stage() -> None:
    stage = {"name": "tune", "repeat_per": "hospital", "adapter": "lora", "init_from": "pretrain", "units": 100,
             "trained_units": 98, "skipped_units": ["7", "12"], "trainable_params": 1234, "total_params": 56789,
             "trainable_share": 1234 / 56789, "seconds": 12.34}
    assert stage_line(stage) == ("stage tune (per hospital, adapter lora, from pretrain): 98 of 100 units trained, "
                                 "2 skipped; trainable 1,234 of 56,789 parameters (2.17%); 12.3 s")
    once = {"name": "pre", "repeat_per": None, "adapter": None, "init_from": None, "units": 1, "trained_units": 1,
            "skipped_units": [], "trainable_params": 10, "total_params": 10, "trainable_share": 1.0, "seconds": 0.5}
    assert stage_line(once) == "stage pre: 1 of 1 units trained; trainable 10 of 10 parameters (100.00%); 0.5 s"


def test_the_multicenter_example_validates_as_gamenet_finetune_per_hospital() -> None:
    config = validate_config(load_yaml(EXAMPLE), source=str(EXAMPLE))
    assert config.model.type == "gamenet" and config.dataset.params.n_hospitals > 0
    tune = config.stages[-1]
    assert (tune.adapter.type, tune.repeat_per, tune.init_from) == ("finetune", "hospital", "pretrain")


@pytest.mark.slow
def test_the_multicenter_example_runs(tmp_path: Path) -> None:
    raw, _ = apply_overrides(load_yaml(EXAMPLE), ["trainer.epochs=1", "stages.1.trainer.epochs=1",
                                                  "device=cpu", "stages.1.trainer.progress=none"])
    result = medtoolkit.build(raw).run(out_dir=tmp_path, progress=False)
    tune = result.metrics["stages"][1]
    assert tune["units"] == 30 and tune["trained_units"] + len(tune["skipped_units"]) == 30
    assert set(result.metrics["test"]["groups"]["per_bin"]) == {"small", "medium", "large", "all"}
