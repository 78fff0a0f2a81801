"""The ``medtoolkit`` command line, driven in-process through :func:`medtoolkit.cli.main`.

Exit codes: 0 success, 1 invalid input, 2 usage errors. Training uses a 60-patient
synthetic dataset and a tiny logistic regression for one epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import medtoolkit
import medtoolkit.plugins
from medtoolkit import cli
from medtoolkit.cli import main
from medtoolkit.plugins import PluginHost
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
    # the three mistakes first, then one error line that ends the output
    assert captured.err.splitlines()[-1] == f"error: {path}: 3 errors (listed above)"
    assert captured.err.count("error:") == 1
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


def test_override_order_does_not_matter_for_a_switched_type(tmp_path: Path, capsys: Capture) -> None:
    code = main(["validate", "gamenet", "-o", f"dataset.root={tmp_path}", "-o", "dataset.type=safedrug_pickle"])
    assert code == 0
    assert ("note: dataset: switched type 'mimic3' -> 'safedrug_pickle'; reset parameters min_visits; "
            "kept root (set by an override)") in capsys.readouterr().err.splitlines()


def test_switch_notes_come_before_a_validation_error(capsys: Capture) -> None:
    code = main(["validate", "gamenet", "-o", "model.encoder.type=gruu", "-o", "trainer.epochs=-1"])
    assert code == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == ("note: model.encoder: switched type 'gru' -> 'gruu'; "
                        "reset parameters dropout, embedding_dim, hidden_dim, output_dim")
    assert lines[-1] == "error: preset 'gamenet': 2 errors (listed above)"
    assert sum(line.startswith("error:") for line in lines) == 1


def test_malformed_override_is_an_input_error(capsys: Capture) -> None:
    assert main(["validate", "gamenet", "-o", "trainer.epochs"]) == 1
    assert "override 'trainer.epochs' must look like key.path=value" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["validate", "train"])
def test_unknown_preset_name(command: str, capsys: Capture) -> None:
    assert main([command, "gamenett"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 'gamenett' is neither a run file nor a preset; did you mean 'gamenet'")
    assert err.endswith("presets: 'medtoolkit presets list' shows them)")


@pytest.mark.parametrize("command", ["validate", "train"])
def test_a_run_file_that_is_a_symlink_loop_names_the_os_error(
    tmp_path: Path, capsys: Capture, command: str
) -> None:
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    assert main([command, str(loop)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {loop}: Too many levels of symbolic links"


def test_a_dangling_run_file_link_names_the_file(tmp_path: Path, capsys: Capture) -> None:
    dangling = tmp_path / "run.yaml"
    dangling.symlink_to(tmp_path / "gone.yaml")
    assert main(["validate", str(dangling)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {dangling}: No such file or directory"


def test_invalid_dataset_options_of_a_preset_do_not_echo_pydantic_details(capsys: Capture) -> None:
    assert main(["train", "gamenet", "-o", "dataset.min_visits=abc"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: preset 'gamenet': dataset.min_visits: Input should be a valid integer, "
        "unable to parse string as an integer (got 'abc') [medtoolkit]"
    )
    assert "input_value" not in err and "errors.pydantic.dev" not in err


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
    assert error_line(capsys.readouterr().err).startswith(
        f"error: cannot resume from {tmp_path / 'checkpoint_seed0.pt'}: the checkpoint's config differs"
    )


def test_a_refused_resume_leaves_config_yaml_as_it_was(run_copy: Path, tmp_path: Path, capsys: Capture) -> None:
    """config.yaml must keep matching the model files: a refused --resume used to rewrite it first."""
    before = (run_copy / "config.yaml").read_bytes()
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump(TINY_RUN), encoding="utf-8")
    assert main(["train", str(run), "-o", "trainer.lr=0.5", "--out", str(run_copy), "--resume"]) == 1
    assert "the checkpoint's config differs" in error_line(capsys.readouterr().err)
    assert (run_copy / "config.yaml").read_bytes() == before
    assert main(["evaluate", str(run_copy)]) == 0


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


# ---------------------------------------------------------------------------- one-line errors
def error_line(err: str) -> str:
    """The only line of ``err``, which must start with ``error: ``."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def run_copy(trained: tuple[Path, str], tmp_path: Path) -> Path:
    """A private copy of the trained run directory (its files may be damaged)."""
    copy = tmp_path / "run"
    copy.mkdir()
    for item in trained[0].iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    return copy


def _without_model(saved: dict) -> dict:
    return {key: value for key, value in saved.items() if key != "model"}


def _wrong_weights(saved: dict) -> dict:
    return {**saved, "model": {"bogus.weight": torch.zeros(2, 3)}}


@pytest.mark.parametrize(
    "damage",
    [
        lambda saved: torch.zeros(3),
        lambda saved: [1, 2, 3],
        lambda saved: {},
        _without_model,
        _wrong_weights,
        lambda saved: argparse.Namespace(model=saved["model"]),  # not plain data: refused unread
        b"not a checkpoint at all",
        b"",
    ],
    ids=["tensor", "list", "empty-dict", "no-model", "state-dict-mismatch", "unsafe-object", "garbage", "empty-file"],
)
def test_evaluate_a_damaged_checkpoint_is_one_error_line(run_copy: Path, damage: Any, capsys: Capture) -> None:
    checkpoint = run_copy / "model_seed0.pt"
    if isinstance(damage, bytes):
        checkpoint.write_bytes(damage)
    else:
        torch.save(damage(torch.load(checkpoint, weights_only=True)), checkpoint)
    assert main(["evaluate", str(run_copy)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(run_copy) in error_line(captured.err)


def test_debug_prints_the_traceback_before_the_error_line(run_copy: Path, capsys: Capture) -> None:
    torch.save([1, 2, 3], run_copy / "model_seed0.pt")
    assert main(["--debug", "evaluate", str(run_copy)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.splitlines()[-1].startswith("error: ") and str(run_copy) in err.splitlines()[-1]


def test_debug_after_the_command_and_from_the_environment(monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    assert main(["validate", "gamenett", "--debug"]) == 1
    assert "Traceback (most recent call last):" in capsys.readouterr().err
    monkeypatch.setenv("MEDTOOLKIT_DEBUG", "1")
    assert main(["validate", "gamenett"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err
    assert err.splitlines()[-1].startswith("error: 'gamenett' is neither a run file nor a preset")


def test_a_component_whose_constructor_raises_is_named_by_config_path(tmp_path: Path, capsys: Capture) -> None:
    run = tmp_path / "run.yaml"
    config = {**TINY_RUN, "model": {"type": "gamenet", "encoder": {"type": "gru", "vocabularies": ["labs"]}}}
    run.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    assert main(["validate", str(run)]) == 0  # the parameters are valid; the data decides
    capsys.readouterr()
    assert main(["train", str(run)]) == 1
    assert error_line(capsys.readouterr().err) == (
        "error: model.encoder (gru): the data has no 'labs' vocabulary (it has: diagnoses, procedures, medications)"
    )
    assert main(["train", str(run), "--debug"]) == 1
    err = capsys.readouterr().err
    assert "KeyError: \"the data has no 'labs' vocabulary" in err  # the original, kept as __cause__
    assert "The above exception was the direct cause of the following exception:" in err
    assert "ComponentBuildError: model.encoder (gru): the data has no 'labs' vocabulary" in err


def test_train_out_pointing_at_a_file(run_file: Path, tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "taken"
    out.write_text("not a directory", encoding="utf-8")
    assert main(["train", str(run_file), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert str(out) in error_line(captured.err)
    assert out.read_text(encoding="utf-8") == "not a directory"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (MemoryError(), "error: {run}: out of memory (MemoryError)"),
        (RecursionError("maximum recursion depth exceeded"),
         "error: {run}: RecursionError: maximum recursion depth exceeded"),
        (pickle.UnpicklingError("invalid load key, 'x'."), "error: {run}: UnpicklingError: invalid load key, 'x'."),
        (KeyError("model"), "error: {run}: KeyError: 'model'"),
        (PermissionError(13, "Permission denied", "/data/x.csv"), "error: /data/x.csv: Permission denied"),
        (OSError(28, "No space left on device"), "error: {run}: No space left on device"),
        (RuntimeError("Error(s) in loading state_dict:\n\tMissing key(s)"),
         "error: {run}: RuntimeError: Error(s) in loading state_dict: Missing key(s)"),
        (TypeError("unsupported operand"),
         "error: {run}: TypeError: unsupported operand (unexpected error, probably a bug; "
         "run with --debug for the traceback)"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
)
def test_any_escaping_exception_is_one_error_line(
    error: BaseException, expected: str, run_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(cli, "cmd_validate", fail)
    assert main(["validate", str(run_file)]) == 1
    assert error_line(capsys.readouterr().err) == expected.format(run=run_file)


def test_ctrl_c_is_one_line_and_exit_130(run_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_validate", interrupted)
    assert main(["validate", str(run_file)]) == 130
    assert capsys.readouterr().err == "error: interrupted\n"


# ---------------------------------------------------------------------------- fast --version / --help
@pytest.mark.parametrize("argv", [["--version"], ["--help"], []])
def test_version_and_help_import_neither_plugins_nor_torch(argv: list[str]) -> None:
    script = (
        "import sys\n"
        "from medtoolkit.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'torch', 'numpy', 'pandas', 'medtoolkit.builtins', 'medtoolkit.plugins'} & set(sys.modules)\n"
        "print('heavy:', sorted(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "heavy: []"


def test_top_level_help_says_where_plugin_commands_are(capsys: Capture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--debug print the full traceback of a failure (also MEDTOOLKIT_DEBUG=1)" in out
    assert " ".join(cli.PLUGIN_COMMANDS_NOTE.split()) in out


class HelloCommand:
    """Say hello."""

    help = "say hello"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--name", default="world")

    @staticmethod
    def run(args: argparse.Namespace, host: Any) -> int:
        print(f"hello {args.name}")
        return 0


class HelloPlugin:
    @medtoolkit.hookimpl
    def register_commands(self, register: Any) -> None:
        register("hello", HelloCommand)


def test_a_plugin_command_loads_the_plugins_when_it_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    host = PluginHost(load_entry_points=False, extra_plugins=(("medtoolkit-hello", "1", HelloPlugin()),))
    monkeypatch.setattr(medtoolkit.plugins, "default_host", lambda: host)
    assert main(["--debug", "hello", "--name", "you"]) == 0
    assert capsys.readouterr().out == "hello you\n"
    assert "hello" not in cli._parser_for(["--help"]).format_help()


# ---------------------------------------------------------------------------- hostile inputs (issue 8 review)
def test_a_multi_line_yaml_error_in_config_yaml_is_still_one_line(run_copy: Path, capsys: Capture) -> None:
    (run_copy / "config.yaml").write_text("model: [unclosed\n", encoding="utf-8")
    assert main(["evaluate", str(run_copy)]) == 1
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {run_copy / 'config.yaml'}: <root>: invalid YAML (line 2, column 1): ")


def test_several_mistakes_in_config_yaml_name_the_file(run_copy: Path, capsys: Capture) -> None:
    (run_copy / "config.yaml").write_text("", encoding="utf-8")
    assert main(["evaluate", str(run_copy)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "  - dataset: missing required section 'dataset'",
        "  - model: missing required section 'model'",
        f"error: {run_copy / 'config.yaml'}: 2 errors (listed above)",
    ]


def test_a_model_file_that_is_a_fifo_is_refused_not_waited_on(run_copy: Path, capsys: Capture) -> None:
    import os

    checkpoint = run_copy / "model_seed0.pt"
    checkpoint.unlink()
    os.mkfifo(checkpoint)
    assert main(["evaluate", str(run_copy)]) == 1
    assert error_line(capsys.readouterr().err) == f"error: cannot read checkpoint {checkpoint}: not a regular file"


def test_a_run_file_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path, capsys: Capture) -> None:
    import os

    fifo = tmp_path / "run.yaml"
    os.mkfifo(fifo)
    assert main(["validate", str(fifo)]) == 1
    assert error_line(capsys.readouterr().err) == (
        f"error: {fifo}: not a regular file (a run file must be a plain YAML file)"
    )


def test_a_foreign_pickle_in_a_model_file_is_one_error_line(run_copy: Path, capsys: Capture) -> None:
    checkpoint = run_copy / "model_seed0.pt"
    checkpoint.write_bytes(pickle.dumps(argparse.Namespace(a=1), protocol=4))  # torch would warn about it
    assert main(["evaluate", str(run_copy)]) == 1
    assert error_line(capsys.readouterr().err).startswith(f"error: cannot read checkpoint {checkpoint}: corrupt")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--overwrite"], "medtoolkit: error: --overwrite needs --out DIR"),
        (["--out", ""], "medtoolkit: error: --out needs a directory name (got an empty string)"),
    ],
    ids=["overwrite-without-out", "empty-out"],
)
def test_train_flags_that_would_silently_do_the_wrong_thing(
    extra: list[str], message: str, run_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    monkeypatch.chdir(tmp_path)  # `--out ''` used to write the run into the current directory
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(run_file), *extra])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == message
    assert not (tmp_path / "config.yaml").exists()


def test_train_out_on_a_file_says_it_is_not_a_directory(run_file: Path, tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "taken"
    out.write_text("x", encoding="utf-8")
    assert main(["train", str(run_file), "--out", str(out)]) == 1
    assert error_line(capsys.readouterr().err) == (
        f"error: {out} exists and is not a directory: name a directory for the run"
    )


def test_an_unknown_device_is_one_plain_error_line(run_file: Path, capsys: Capture) -> None:
    assert main(["train", str(run_file), "--device", "nonsense"]) == 1
    assert error_line(capsys.readouterr().err) == (
        "error: unknown device 'nonsense': expected auto, cpu, cuda, cuda:N (or another torch device type)"
    )


def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched(
    run_file: Path, tmp_path: Path, capsys: Capture
) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("precious data\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").symlink_to(precious)
    assert main(["train", str(run_file), "--out", str(out)]) == 1
    assert error_line(capsys.readouterr().err) == (
        f"error: {out / '.lock'} is a symbolic link: refusing to lock the run directory through it (remove it)"
    )
    assert precious.read_text(encoding="utf-8") == "precious data\n"


def _damage_checkpoint(run_copy: Path, change: Any) -> Path:
    path = run_copy / "checkpoint_seed0.pt"
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("change", "part", "reason"),
    [
        (lambda s: s.update(optimizer={}), "optimizer", "'param_groups'"),
        (lambda s: s.update(history=[1, 2]), "history", "expected a mapping with a list of epochs"),
        (lambda s: s.update(rng_seed="abc"), "rng_seed", "SeedSequence expects int or sequence of ints"),
        (lambda s: s.update(torch_rng=torch.zeros(3)), "torch_rng", "RNG state must be a torch.ByteTensor"),
        (lambda s: s.update(best_model={"a": torch.zeros(1)}), "best_model", "missing keys"),
    ],
    ids=["optimizer", "history", "rng_seed", "torch_rng", "best_model"],
)
def test_resume_from_a_damaged_checkpoint_names_the_file_and_the_entry(
    change: Any, part: str, reason: str, run_copy: Path, tmp_path: Path, capsys: Capture
) -> None:
    config = yaml.safe_load((run_copy / "config.yaml").read_text(encoding="utf-8"))
    run = tmp_path / "resume.yaml"
    run.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    path = _damage_checkpoint(run_copy, change)
    assert main(["train", str(run), "-o", "trainer.epochs=2", "--out", str(run_copy), "--resume"]) == 1
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"error: cannot resume from {path}: its {part!r} entry does not fit this run ({reason}")
    assert line.endswith("use a new --out directory or --overwrite")


def test_warnings_are_one_line_on_the_command_line(monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    """A corrupt-cache RuntimeWarning is printed as ``warning: ...``, not file:line plus a source line."""
    import warnings

    seen: list[str] = []

    def warn(args: argparse.Namespace) -> int:
        seen.append(warnings.formatwarning("cache entry is corrupt,\nrebuilding", RuntimeWarning, "x.py", 3))
        return 0

    original = warnings.formatwarning
    monkeypatch.setattr(cli, "cmd_plugins", warn)
    assert main(["plugins"]) == 0
    assert seen == ["warning: cache entry is corrupt, rebuilding\n"]
    assert warnings.formatwarning is original  # restored after the command
    assert main(["plugins", "--debug"]) == 0  # --debug keeps Python's full format
    assert seen[-1].startswith("x.py:3: RuntimeWarning: cache entry is corrupt,")


def test_presets_copy_onto_a_directory_named_like_the_preset(tmp_path: Path, capsys: Capture) -> None:
    (tmp_path / "gamenet.yaml").mkdir()
    for force in ([], ["--force"]):
        assert main(["presets", "copy", "gamenet", str(tmp_path), *force]) == 1
        assert error_line(capsys.readouterr().err) == f"error: {tmp_path / 'gamenet.yaml'} is a directory"


def test_presets_copy_refusing_to_overwrite_is_an_error_line(tmp_path: Path, capsys: Capture) -> None:
    dest = tmp_path / "mine.yaml"
    dest.write_text("keep", encoding="utf-8")
    assert main(["presets", "copy", "gamenet", str(dest)]) == 1
    assert error_line(capsys.readouterr().err) == f"error: {dest} exists; pass --force to overwrite"
    assert dest.read_text(encoding="utf-8") == "keep"


def test_data_info_with_an_invalid_dataset_option_is_a_short_line(capsys: Capture) -> None:
    assert main(["data", "info", "mimic3", "-o", "min_visits=abc"]) == 1
    assert error_line(capsys.readouterr().err) == (
        "error: dataset 'mimic3': invalid Params: min_visits: Input should be a valid integer, "
        "unable to parse string as an integer"
    )


def test_a_refused_pickle_is_one_line_naming_the_file(
    tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("records_final.pkl", "voc_final.pkl", "ddi_A_final.pkl"):
        (tmp_path / name).write_bytes(pickle.dumps([1, 2, 3]))
    monkeypatch.setenv("MEDTOOLKIT_PICKLE_MAX_BYTES", "5")
    assert main(["data", "info", "safedrug_pickle", "-o", f"root={tmp_path}"]) == 1
    size = (tmp_path / "voc_final.pkl").stat().st_size
    assert capsys.readouterr().err.strip() == (
        f"error: refusing to load {tmp_path / 'voc_final.pkl'}: the file has {size} bytes, more than the limit "
        "of 5; if the file is genuine, raise it with the environment variable MEDTOOLKIT_PICKLE_MAX_BYTES=<bytes>"
    )
