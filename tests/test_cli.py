"""The ``medtoolkit`` command line, driven in-process through :func:`medtoolkit.cli.main`.

Exit codes: 0 success, 1 invalid input, 2 usage errors. Training uses a 60-patient
synthetic dataset and a tiny logistic regression for one epoch.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import medtoolkit
from medtoolkit.cli import main
from medtoolkit.presets import builtin_presets

Capture = pytest.CaptureFixture[str]

TINY_RUN = {
    "name": "cli-tiny",
    "seed": 0,
    "device": "cpu",
    "dataset": {"type": "synthetic", "n_patients": 60, "n_diagnoses": 40, "n_procedures": 30, "n_drugs": 12,
                "seed": 0, "mean_diagnoses": 5, "mean_procedures": 3, "mean_medications": 4, "n_ddi_pairs": 8,
                "n_substructures": 0, "n_conditions": 4},
    "task": {"type": "medication_recommendation", "seeds": [0]},
    "model": {"type": "logistic_regression"},
    "losses": [{"type": "bce"}],
    "trainer": {"epochs": 3, "lr": 0.05, "batch_size": 16, "progress": "none"},
    "eval": {"bootstrap_rounds": 2},
}

CORE_RECOMMENDERS = {"gamenet", "logistic_regression", "previous_visit"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is fastest


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(TINY_RUN, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run directory made by ``medtoolkit train`` and what the command printed."""
    root = tmp_path_factory.mktemp("cli")
    run = root / "run.yaml"
    run.write_text(yaml.safe_dump(TINY_RUN, sort_keys=False), encoding="utf-8")
    out = root / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["train", str(run), "-o", "trainer.epochs=1", "--out", str(out)])
    assert code == 0
    return out, stdout.getvalue()


def table_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


# ---------------------------------------------------------------------------- listing
def test_plugins_lists_the_core(capsys: Capture) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("medtoolkit "))
    assert f" {medtoolkit.__version__} " in row and " ok " in row
    assert "recommender: gamenet, logistic_regression, previous_visit" in row


def test_plugins_json_is_valid_and_the_core_is_ok(capsys: Capture) -> None:
    assert main(["plugins", "--json"]) == 0
    plugins = json.loads(capsys.readouterr().out)
    core = next(p for p in plugins if p["name"] == "medtoolkit")
    assert core["status"] == "ok" and not core["error"] and core["version"] == medtoolkit.__version__
    assert set(core["registered"]["recommender"]) >= CORE_RECOMMENDERS
    assert set(core["registered"]["preset"]) >= set(builtin_presets())


def test_components_of_one_kind(capsys: Capture) -> None:
    assert main(["components", "--kind", "recommender"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert {row.split()[0] for row in rows} == {"recommender"}
    assert {row.split()[1] for row in rows} >= CORE_RECOMMENDERS
    gamenet = next(row for row in rows if row.split()[1] == "gamenet")
    assert f"medtoolkit {medtoolkit.__version__}" in gamenet and "Graph-augmented memory network" in gamenet


def test_components_json_lists_every_kind(capsys: Capture) -> None:
    assert main(["components", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    found = {(row["kind"], row["name"]) for row in rows}
    assert {("encoder", "gru"), ("memory", "gcn"), ("loss", "ddi"), ("dataset", "synthetic")} <= found
    assert not any(row["kind"] in ("preset", "command") for row in rows)


def test_components_rejects_an_unknown_kind(capsys: Capture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["components", "--kind", "recommenders"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'recommenders'" in capsys.readouterr().err


def test_presets_list(capsys: Capture) -> None:
    assert main(["presets", "list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert set(names) >= {"gamenet", "logistic_regression", "previous_visit"}


# ---------------------------------------------------------------------------- presets copy + validate
def test_presets_copy_then_validate(tmp_path: Path, capsys: Capture) -> None:
    dest = tmp_path / "my_gamenet.yaml"
    assert main(["presets", "copy", "gamenet", str(dest)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {dest}"
    assert dest.read_text(encoding="utf-8") == builtin_presets()["gamenet"].read_text(encoding="utf-8")
    assert main(["validate", str(dest)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"OK: {dest}: dataset=mimic3 task=medication_recommendation model=gamenet "
        "losses=[bce, multilabel_margin, ddi]"
    )


def test_presets_copy_into_a_directory_and_refuse_to_overwrite(tmp_path: Path, capsys: Capture) -> None:
    assert main(["presets", "copy", "previous_visit", str(tmp_path)]) == 0
    assert (tmp_path / "previous_visit.yaml").exists()
    capsys.readouterr()
    assert main(["presets", "copy", "previous_visit", str(tmp_path)]) == 1
    assert "exists; pass --force to overwrite" in capsys.readouterr().err
    assert main(["presets", "copy", "previous_visit", str(tmp_path), "--force"]) == 0


def test_presets_copy_needs_a_name_and_destination(capsys: Capture) -> None:
    assert main(["presets", "copy", "gamenet"]) == 2
    assert "usage: medtoolkit presets copy NAME DEST" in capsys.readouterr().err


def test_presets_copy_of_an_unknown_preset(tmp_path: Path, capsys: Capture) -> None:
    assert main(["presets", "copy", "gamenet2", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "gamenet2" in err and "'gamenet'" in err
    assert list(tmp_path.iterdir()) == []


def test_validate_reports_every_mistake_at_once(tmp_path: Path, capsys: Capture) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "dataset: {type: synthetic, n_patients: 60}\n"
        "model: {type: gamenet, hidden_dimm: 8}\n"
        "losses: [{type: bcee}]\n"
        "trainer: {epochs: -1}\n",
        encoding="utf-8",
    )
    assert main(["validate", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"error: {path}: 3 error(s)" in captured.err
    assert "  - model.hidden_dimm: unknown key 'hidden_dimm'; did you mean 'hidden_dim'?" in captured.err
    assert "  - losses.0.type: unknown loss 'bcee'. Did you mean 'bce'?" in captured.err
    assert "  - trainer.epochs: Input should be greater than or equal to 0" in captured.err


def test_override_switching_the_dataset_type_prints_a_note(tmp_path: Path, capsys: Capture) -> None:
    code = main(["validate", "gamenet", "-o", "dataset.type=safedrug_pickle", "-o", f"dataset.root={tmp_path}"])
    assert code == 0
    captured = capsys.readouterr()
    assert ("note: dataset: switched type 'mimic3' -> 'safedrug_pickle'; reset parameters min_visits"
            in captured.err.splitlines())
    assert "dataset=safedrug_pickle" in captured.out


def test_malformed_override_is_an_input_error(capsys: Capture) -> None:
    assert main(["validate", "gamenet", "-o", "trainer.epochs"]) == 1
    assert "override 'trainer.epochs' must look like key.path=value" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["validate", "train"])
def test_unknown_preset_name(command: str, capsys: Capture) -> None:
    assert main([command, "gamenett"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 'gamenett' is neither a run file nor a preset; presets: ")
    assert {"gamenet", "logistic_regression", "previous_visit"} <= set(err.split("presets: ")[1].split(", "))


def test_missing_run_file(capsys: Capture) -> None:
    assert main(["validate", "nowhere/run.yaml"]) == 1
    assert "error: run file not found: nowhere/run.yaml" in capsys.readouterr().err


# ---------------------------------------------------------------------------- train / evaluate
def test_train_prints_the_table_and_writes_the_report(trained: tuple[Path, str]) -> None:
    out, printed = trained
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert len(metrics["epoch_seconds"]) == 1  # the -o override was applied
    jaccard = metrics["test"]["jaccard"]
    assert "### cli-tiny (logistic_regression) - test" in printed
    assert f"| Jaccard | {jaccard['mean']:.4f} ± {jaccard['std']:.4f} |" in printed
    assert len(table_of(printed)) == 2 + 7
    assert "data: 60 patients, " in printed and ", 12 drugs, ground-truth DDI rate " in printed
    assert "epochs: 1, mean " in printed and f"parameters: {metrics['n_params']:,}" in printed
    assert f"report: {out / 'report.md'}" in printed
    assert {"config.yaml", "report.md", "curves.png", "model_seed0.pt"} <= {p.name for p in out.iterdir()}


def test_evaluate_prints_the_same_table(trained: tuple[Path, str], capsys: Capture) -> None:
    out, printed = trained
    assert main(["evaluate", str(out)]) == 0
    captured = capsys.readouterr()
    assert table_of(captured.out) == table_of(printed)
    assert f"evaluated {out} on 1 split(s)" in captured.err


def test_evaluate_json(trained: tuple[Path, str], capsys: Capture) -> None:
    out, _ = trained
    assert main(["evaluate", str(out), "--json"]) == 0
    text = capsys.readouterr().out
    payload = json.loads(text[text.index("\n{") + 1:])
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert payload["test"]["jaccard"] == metrics["test"]["jaccard"]


def test_evaluate_a_directory_that_is_not_a_run(tmp_path: Path, capsys: Capture) -> None:
    assert main(["evaluate", str(tmp_path)]) == 1
    assert "has no config.yaml" in capsys.readouterr().err


def test_train_resume_needs_out(run_file: Path, capsys: Capture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(run_file), "--resume"])
    assert exit_info.value.code == 2
    assert "--resume needs --out DIR" in capsys.readouterr().err


def test_train_resume_of_a_finished_run_gives_the_same_result(
    trained: tuple[Path, str], tmp_path: Path, capsys: Capture
) -> None:
    out, printed = trained
    for item in out.iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump(TINY_RUN), encoding="utf-8")
    assert main(["train", str(run), "-o", "trainer.epochs=1", "--out", str(tmp_path), "--resume"]) == 0
    assert table_of(capsys.readouterr().out) == table_of(printed)


def test_train_resume_with_other_settings_is_refused(trained: tuple[Path, str], tmp_path: Path, capsys: Capture) -> None:
    out, _ = trained
    (tmp_path / "checkpoint_seed0.pt").write_bytes((out / "checkpoint_seed0.pt").read_bytes())
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump(TINY_RUN), encoding="utf-8")
    code = main(["train", str(run), "-o", "trainer.lr=0.5", "--out", str(tmp_path), "--resume"])
    assert code == 1
    assert "error: cannot resume: the checkpoint's config differs" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_train_on_a_missing_gpu(run_file: Path, tmp_path: Path, capsys: Capture) -> None:
    assert main(["train", str(run_file), "--device", "cuda", "--out", str(tmp_path / "out")]) == 1
    assert "device 'cuda' requested but CUDA is not available" in capsys.readouterr().err


# ---------------------------------------------------------------------------- entry points
def test_no_command_prints_help(capsys: Capture) -> None:
    assert main([]) == 2
    assert "usage: medtoolkit" in capsys.readouterr().out


def test_version(capsys: Capture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"medtoolkit {medtoolkit.__version__}"


def test_python_dash_m_help() -> None:
    done = subprocess.run([sys.executable, "-m", "medtoolkit", "--help"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: medtoolkit")
    for command in ("plugins", "components", "presets", "validate", "train", "evaluate"):
        assert command in done.stdout
