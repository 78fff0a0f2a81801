"""``docs/adapters.rst``: its parameter-count table is measured, and its example adapter conforms."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from medtoolkit.components.adapters import FinetuneAdapter, FinetuneFreezeAdapter, LoRAAdapter, count_parameters
from medtoolkit.components.recommenders.gamenet import GAMENet
from medtoolkit.components.schema import DataSchema
from medtoolkit.testing import check_component, fake_ehr, fake_schema

PAGE = Path(__file__).resolve().parents[3] / "docs" / "adapters.rst"


def benchmark_sized_schema() -> DataSchema:
    """A schema with the processed MIMIC-III benchmark's vocabulary sizes (no data needed)."""
    empty = np.zeros((131, 131), dtype=np.float32)
    return DataSchema(vocab_sizes={"diagnoses": 1958, "procedures": 1430, "medications": 131}, n_drugs=131,
                      ddi_adjacency=empty, cooccurrence_adjacency=empty)


ADAPTERS = {
    "none / ``finetune``": FinetuneAdapter(),
    "``finetune_freeze``": FinetuneFreezeAdapter(),
    "``lora`` (rank 8)": LoRAAdapter(),
    "``lora`` (rank 2)": LoRAAdapter(LoRAAdapter.Params(rank=2)),
}


def measured(schema: DataSchema, adapter: object) -> str:
    torch.manual_seed(0)
    trainable, total = count_parameters(adapter.attach(GAMENet(GAMENet.Params(), schema)))  # type: ignore[attr-defined]
    return f"{trainable:,} of {total:,} ({100 * trainable / total:.2f} %)".replace("(100.00 %)", "(100 %)")


def table_rows() -> dict[str, list[str]]:
    """The list-table's rows: first cell -> the other cells."""
    text = PAGE.read_text(encoding="utf-8")
    rows: dict[str, list[str]] = {}
    for block in re.findall(r"   \* - (.+?)(?=\n   \* - |\n\n)", text, flags=re.S):
        cells = [cell.strip() for cell in re.split(r"\n     - ", block)]
        rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.parametrize("row", list(ADAPTERS))
def test_the_count_table_is_what_count_parameters_measures(row: str) -> None:
    cells = table_rows()[row]
    adapter = ADAPTERS[row]
    assert cells == [measured(fake_schema(fake_ehr()), adapter), measured(benchmark_sized_schema(), adapter)]


def test_lora_without_the_head_on_benchmark_sizes() -> None:
    torch.manual_seed(0)
    adapter = LoRAAdapter(LoRAAdapter.Params(train_head=False))
    model = adapter.attach(GAMENet(GAMENet.Params(), benchmark_sized_schema()))
    assert count_parameters(model)[0] == 640 * 8 + 8 * (128 + 131) == 7192
    assert "(rank 8 on the benchmark sizes: 7,192)" in " ".join(PAGE.read_text(encoding="utf-8").split())


def test_the_example_adapter_conforms() -> None:
    text = PAGE.read_text(encoding="utf-8")
    block = text[text.index("   class BiasedRecommender"):text.index("   @medtoolkit.hookimpl")]
    header = "import torch\nfrom medtoolkit.components.base import Adapter, Recommender\n" \
             "from medtoolkit.components.params import Params\nfrom torch import nn\n"
    namespace: dict[str, object] = {"__name__": "adapters_page_example"}
    exec(header + "\n".join(line[3:] for line in block.splitlines()), namespace)  # noqa: S102 - our own page
    adapter = namespace["OutputBias"]
    passed = check_component(adapter)  # type: ignore[arg-type]
    assert passed[:3] == ["params", "attach", "trainable"] and passed[-1] == "gradients"
