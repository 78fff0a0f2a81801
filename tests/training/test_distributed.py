"""Data parallelism: the process-group helpers in one process, the rank shares, and a real 2-process torchrun run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.components.recommenders.logistic_regression import LogisticRegressionRecommender
from medtoolkit.config import TrainerParams
from medtoolkit.data.batching import batch_chunks
from medtoolkit.data.ehr import EHRData
from medtoolkit.testing import fake_ehr, fake_schema
from medtoolkit.training import distributed
from medtoolkit.training.predict import Predictions, merge_parts, predict_across_ranks
from medtoolkit.training.trainer import Trainer


@pytest.fixture(scope="module")
def fake_data() -> EHRData:
    return fake_ehr(n_patients=12, n_diagnoses=8, n_procedures=6, n_drugs=5, max_visits=4, seed=2)


@pytest.fixture
def fake_trainer_factory(fake_data: EHRData):
    schema = fake_schema(fake_data)

    def make(batch_size: int) -> Trainer:
        model = LogisticRegressionRecommender(LogisticRegressionRecommender.Params(), schema)
        return Trainer(model, [BCELoss(BCELoss.Params(), schema)],
                       TrainerParams(epochs=1, batch_size=batch_size, progress="none"), torch.device("cpu"), seed=3)

    return make


def test_helpers_are_identities_without_a_process_group() -> None:
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.reduce_sum(values) is values
    rows, mine = distributed.gather_rows(values)
    assert rows is values and mine == slice(0, 2)
    assert distributed.gather_objects("x") == ["x"]
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}


def test_launched_by_torchrun_needs_the_variables_and_two_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.setenv(name, "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.launched_by_torchrun()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.launched_by_torchrun()
    monkeypatch.delenv("MASTER_PORT")
    assert not distributed.launched_by_torchrun()


def test_backend_and_rank_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    assert distributed.backend_for(torch.device("cuda")) == "nccl"
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.device_for_rank(torch.device("cuda")) == torch.device("cuda", 3)
    assert distributed.device_for_rank(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert distributed.device_for_rank(torch.device("cpu")) == torch.device("cpu")


def _two_ranks(monkeypatch: pytest.MonkeyPatch, rank: int) -> None:
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: rank)
    monkeypatch.setattr(distributed, "is_main", lambda: rank == 0)


@pytest.mark.parametrize("rank", [0, 1])
def test_rank_batches_split_every_global_batch(monkeypatch: pytest.MonkeyPatch, rank: int,
                                               fake_data, fake_trainer_factory) -> None:
    trainer = fake_trainer_factory(batch_size=5)
    patients = np.arange(11)
    expected_chunks = batch_chunks(fake_data, patients, 5, shuffle=True, generator=np.random.default_rng(trainer.seed),
                                   sort_by_length=True)
    _two_ranks(monkeypatch, rank)
    parts = trainer.rank_batches(fake_data, patients)
    visits = fake_data.visits_per_patient
    assert len(parts) == len(expected_chunks) == 3  # 5 + 5 + 1 patients: the same number of steps on both ranks
    for (mine, global_size, scale), chunk in zip(parts, expected_chunks):
        assert global_size == len(chunk)
        if len(chunk) == 1 and rank == 1:  # nothing left for rank 1: a weightless stand-in
            assert list(mine) == list(chunk) and scale == 0.0
            continue
        halves = np.array_split(chunk, 2)
        assert list(mine) == list(halves[rank])
        assert scale == pytest.approx(2 * visits[mine].sum() / visits[chunk].sum())


def test_rank_scales_sum_to_the_world_size(monkeypatch: pytest.MonkeyPatch, fake_data, fake_trainer_factory) -> None:
    scales = []
    trainers = [fake_trainer_factory(batch_size=4) for _ in (0, 1)]  # built before the group is faked
    for rank, trainer in zip((0, 1), trainers):
        _two_ranks(monkeypatch, rank)
        scales.append([scale for _, _, scale in trainer.rank_batches(fake_data, np.arange(12))])
    assert np.allclose(np.sum(scales, axis=0), 2.0)


def _predictions(patients: np.ndarray) -> Predictions:
    visits = np.repeat(patients, 2)
    return Predictions(probabilities=visits[:, None].astype(np.float32) / 10, targets=np.zeros((len(visits), 1), bool),
                       visit_patient=visits, visit_position=np.tile([0, 1], len(patients)))


def test_predict_across_ranks_gathers_contiguous_parts_in_rank_order(monkeypatch: pytest.MonkeyPatch) -> None:
    patients = np.array([7, 3, 5, 1, 9])
    single = predict_across_ranks(_predictions, patients)
    _two_ranks(monkeypatch, 0)
    asked: list[list[int]] = []

    def gather(value: Predictions | None) -> list[Predictions | None]:  # rank 1's share predicted here too
        return [value, _predictions(np.array_split(patients, 2)[1])]

    monkeypatch.setattr(distributed, "gather_objects", gather)
    gathered = predict_across_ranks(lambda part: asked.append(part.tolist()) or _predictions(part), patients)
    assert asked == [[7, 3, 5]]
    assert gathered is not None and single is not None
    assert gathered.visit_patient.tolist() == single.visit_patient.tolist() == [7, 7, 3, 3, 5, 5, 1, 1, 9, 9]
    np.testing.assert_array_equal(gathered.probabilities, single.probabilities)


def test_predict_across_ranks_other_ranks_get_none_and_unsplittable_tasks_stay_on_rank_0(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _two_ranks(monkeypatch, 1)
    monkeypatch.setattr(distributed, "gather_objects", lambda value: None)
    assert predict_across_ranks(_predictions, np.arange(4)) is None
    called = []
    assert predict_across_ranks(lambda part: called.append(1) or _predictions(part), np.arange(4), in_parts=False) is None
    assert called == []
    _two_ranks(monkeypatch, 0)
    whole = predict_across_ranks(_predictions, np.arange(4), in_parts=False)
    assert whole is not None and whole.visit_patient.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_merge_parts_keeps_hospitals_only_when_every_part_has_them() -> None:
    first, second = _predictions(np.array([1])), _predictions(np.array([2]))
    assert merge_parts([first, second]).visit_hospital is None
    first.visit_hospital, second.visit_hospital = np.array([4, 4]), np.array([5, 5])
    assert merge_parts([first, second]).visit_hospital.tolist() == [4, 4, 5, 5]


# ---------------------------------------------------------------- a real torchrun run
LAUNCHER = """
import os, sys
log = open(os.path.join(sys.argv.pop(1), "rank%s.log" % os.environ.get("RANK", "single")), "a")
real_replace = os.replace
def replace(source, target, *args, **kwargs):
    log.write(str(target) + "\\n"); log.flush()
    return real_replace(source, target, *args, **kwargs)
os.replace = replace
import matplotlib.figure
real_savefig = matplotlib.figure.Figure.savefig
def savefig(self, path, *args, **kwargs):
    log.write(str(path) + "\\n"); log.flush()
    return real_savefig(self, path, *args, **kwargs)
matplotlib.figure.Figure.savefig = savefig
from medtoolkit.cli import main
sys.exit(main(sys.argv[1:]))
"""

#: no dropout and an additive DDI term: with the same global batches the runs draw nothing at random
EXACT = ["-o", "trainer.epochs=4", "-o", "trainer.num_threads=1", "-o", "trainer.progress=none",
         "-o", "model.encoder.dropout=0", "-o", "model.memory.dropout=0", "-o", "losses.2.mode=additive"]


def _train(tmp_path: Path, name: str, torchrun: bool, extra: list[str]) -> tuple[dict, list[str]]:
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    logs = tmp_path / f"logs_{name}"
    logs.mkdir()
    out = tmp_path / name
    command = [sys.executable, str(launcher), str(logs), "train", "gamenet", *EXACT, *extra, "--out", str(out)]
    if torchrun:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   str(launcher), str(logs), "train", "gamenet", *EXACT, *extra, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDTOOLKIT_CACHE_DIR": str(tmp_path / f"cache_{name}")}
    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text()), sorted(p.name for p in logs.iterdir())


def test_two_process_run_writes_from_rank_0_only_and_matches_one_process(tmp_path: Path) -> None:
    metrics, _ = _train(tmp_path, "single", torchrun=False, extra=[])
    parallel, logs = _train(tmp_path, "ddp", torchrun=True, extra=[])
    assert logs == ["rank0.log", "rank1.log"]
    assert (tmp_path / "logs_ddp" / "rank1.log").read_text() == ""  # rank 1 wrote nothing
    written = {Path(line).name for line in (tmp_path / "logs_ddp" / "rank0.log").read_text().split()}
    assert {"config.yaml", "metrics.json", "report.md", "curves.png", "checkpoint_seed0.pt",
            "model_seed0.pt"} <= written
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir() if not p.name.startswith(".")) == \
        sorted(p.name for p in (tmp_path / "single").iterdir() if not p.name.startswith("."))
    for key in ("jaccard", "prauc", "f1", "ddi_rate"):
        assert parallel["test"][key]["mean"] == pytest.approx(metrics["test"][key]["mean"], abs=1e-6), key
    for ours, theirs in zip(parallel["history"]["seed0"]["epochs"], metrics["history"]["seed0"]["epochs"]):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert ours["validation"]["jaccard"] == pytest.approx(theirs["validation"]["jaccard"], abs=1e-6)


def test_two_process_resume_continues_the_run(tmp_path: Path) -> None:
    first, _ = _train(tmp_path, "ddp", torchrun=True, extra=[])
    launcher = tmp_path / "launch.py"
    logs = tmp_path / "logs_resume"
    logs.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(launcher),
               str(logs), "train", "gamenet", *EXACT, "-o", "trainer.epochs=6", "--resume", "--out",
               str(tmp_path / "ddp")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDTOOLKIT_CACHE_DIR": str(tmp_path / "cache_ddp")}
    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    resumed = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    epochs = resumed["history"]["seed0"]["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5, 6]
    assert [e["train_loss"] for e in epochs[:4]] == [e["train_loss"] for e in first["history"]["seed0"]["epochs"]]
    assert (logs / "rank1.log").read_text() == ""


#: one preset per recommender (and per staged shape), with what makes each a one-epoch run
EVERY_RECOMMENDER = {
    "gamenet": [], "logistic_regression": [], "previous_visit": [], "algnet": [], "safedrug": [],
    "gamenet_controllable_ddi": [], "dnmdr": [], "dpr_ncf": [], "dpr_nn": [],
    "dpr_wg": ["-o", "stages.0.trainer.epochs=1"], "dpr_ag": ["-o", "stages.0.trainer.epochs=1"],
    "tempt": [], "tempt_lora": [],
}


def _registered_presets() -> set[str]:
    from medtoolkit.plugins import default_host

    return {entry.name for entry in default_host().registry("preset")}


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(EVERY_RECOMMENDER))
def test_every_recommender_trains_under_torchrun(preset: str, tmp_path: Path) -> None:
    if preset not in _registered_presets():
        pytest.skip(f"{preset!r} needs a plugin that is not installed")
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "medtoolkit", "train", preset, "-o", "trainer.epochs=1", "-o", "trainer.progress=none",
               "-o", "trainer.num_threads=1", "-o", "eval.bootstrap_rounds=2", *EVERY_RECOMMENDER[preset],
               "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDTOOLKIT_CACHE_DIR": str(tmp_path / "cache")}
    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["jaccard"]["mean"] is not None


def _as_torchrun_rank(monkeypatch: pytest.MonkeyPatch, rank: int) -> None:
    for name, value in {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)


def test_cli_errors_of_other_ranks_name_the_rank(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from medtoolkit.cli import main

    _as_torchrun_rank(monkeypatch, 1)
    assert main(["train", "gamenet", "-o", "trainer.epochs=x"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: rank 1: preset 'gamenet': trainer.epochs:")
    _as_torchrun_rank(monkeypatch, 0)
    assert main(["train", "gamenet", "-o", "trainer.epochs=x"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: preset 'gamenet': trainer.epochs:")


def test_cli_stays_silent_when_another_rank_reported_the_failure(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from medtoolkit.cli import main
    from medtoolkit.experiment import Experiment

    def fail(self, **kwargs):
        raise distributed.PeerFailed("rank 0: DIR already holds a run")

    _as_torchrun_rank(monkeypatch, 1)
    monkeypatch.setattr(Experiment, "run", fail)
    assert main(["train", "gamenet", "-o", "trainer.epochs=1", "--out", "somewhere"]) == 1
    assert "error" not in capsys.readouterr().err
