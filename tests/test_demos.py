"""The one-line demo commands of README.md and docs/quickstart.rst work as documented.

The commands are read from the documents themselves: each demo's row gives the command and
the patient / visit / drug counts the run must report, and ``medtoolkit data info`` on the
same dataset must count the same patients.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medtoolkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMOS = ("MIMIC-III", "MIMIC-IV", "eICU")
#: demo -> dataset type of the shipped loader
DATASET_TYPES = {"MIMIC-III": "mimic3", "MIMIC-IV": "mimic4", "eICU": "eicu"}
CORE_PRESETS = ("gamenet", "logistic_regression", "previous_visit")
#: appended to a documented command to make it a quick smoke run
QUICK = ["-o", "trainer.epochs=1", "-o", "eval.bootstrap_rounds=2", "-o", "trainer.progress=none"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _counts(text: str) -> tuple[int, int, int]:
    patients, visits, drugs = (int(part.strip().replace(",", "")) for part in text.split("/"))
    return patients, visits, drugs


def readme_demos() -> dict[str, tuple[tuple[int, int, int], list[str]]]:
    """README's demo table: ``{demo: ((patients, visits, drugs), command argv)}``."""
    rows = {}
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| (MIMIC-III|MIMIC-IV|eICU) \| ([\d,]+ / [\d,]+ / [\d,]+) \| `(medtoolkit [^`]+)` \|", line)
        if match:
            rows[match[1]] = (_counts(match[2]), shlex.split(match[3]))
    return rows


def quickstart_demos() -> dict[str, tuple[tuple[int, int, int], list[str]]]:
    """The same table in docs/quickstart.rst (an RST list-table)."""
    text = (ROOT / "docs" / "quickstart.rst").read_text(encoding="utf-8")
    pattern = re.compile(r"   \* - (MIMIC-III|MIMIC-IV|eICU)\n     - ([\d,]+ / [\d,]+ / [\d,]+)\n     - ``(medtoolkit [^`]+)``")
    return {m[1]: (_counts(m[2]), shlex.split(m[3])) for m in pattern.finditer(text)}


def with_preset(argv: list[str], preset: str) -> list[str]:
    """A documented ``medtoolkit train gamenet ...`` command for another preset, without --out."""
    assert argv[:3] == ["medtoolkit", "train", "gamenet"], argv
    rest = argv[3:]
    out = rest.index("--out")
    return [preset, *rest[:out], *rest[out + 2:]]


def test_readme_and_quickstart_document_the_same_command_for_every_demo() -> None:
    readme = readme_demos()
    assert sorted(readme) == sorted(DEMOS)
    assert quickstart_demos() == readme
    for demo, (_, argv) in readme.items():
        assert "--out" in argv
        if DATASET_TYPES[demo] != "mimic3":  # the presets' default dataset needs no override
            assert f"dataset.type={DATASET_TYPES[demo]}" in argv


def _presets() -> list[str]:
    """The core presets, and ``algnet`` when the plugin is installed."""
    from medtoolkit.plugins import default_host

    names = {entry.name for entry in default_host().registry("preset")}
    return [*CORE_PRESETS, *(["algnet"] if "algnet" in names else [])]


@pytest.mark.parametrize("demo", DEMOS)
@pytest.mark.parametrize("preset", _presets())
def test_demo_command_validates_for_every_preset(demo: str, preset: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, argv = readme_demos()[demo]
    assert main(["validate", *with_preset(argv, preset)]) == 0
    out = capsys.readouterr().out
    assert f"OK: {preset}: dataset={DATASET_TYPES[demo]} " in out


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private dataset cache for this module's runs."""
    path = tmp_path_factory.mktemp("demo-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDTOOLKIT_CACHE_DIR", str(path))
        yield path


def _data_info(spec: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["data", "info", spec, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("demo", DEMOS)  # 3-5 s each on a 2-core CPU, the first data build included
def test_demo_command_trains_on_the_documented_data(
    demo: str, demo_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    counts, argv = readme_demos()[demo]
    out = tmp_path / "run"
    command = [*argv[1:argv.index("--out")], *QUICK, "--out", str(out)]
    assert main(command) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    data = metrics["data"]
    assert (data["patients"], data["visits"], data["n_drugs"]) == counts
    assert metrics["protocol"]["splits"] == ["seed0"] and len(metrics["epoch_seconds"]) == 1
    report = (out / "report.md").read_text(encoding="utf-8")
    assert f"- dataset: `{data['name']}`: {counts[0]:,} patients" in report
    # `medtoolkit data info <type>` counts the patients the run trained on
    info = _data_info(DATASET_TYPES[demo], capsys)
    assert info["statistics"]["patients"] == data["patients"]
    assert info["fingerprint"] == metrics["data_fingerprint"]


def test_readme_main_job_is_the_mimic3_demo_row_and_its_counts_are_stated_once() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    main_job = re.search(r"```bash\n(python3 -m venv [^\n]+)\n```", readme)
    assert main_job is not None
    last = main_job[1].split("&&")[-1].split()
    _, mimic3_argv = readme_demos()["MIMIC-III"]
    assert [Path(last[0]).name, *last[1:]] == mimic3_argv
    # the counts live in the demo table only (one truth): nowhere else in the README or quickstart
    for text in (readme, (ROOT / "docs" / "quickstart.rst").read_text(encoding="utf-8")):
        assert len(re.findall(r"\b82\b", text)) == 1, "the MIMIC-III demo's patient count is stated more than once"
