"""GAMENet assembled from objects in Python, trained, evaluated and reported in one call.

The same run as the ``gamenet`` preset (``medtoolkit train gamenet``): with the same seed
it gives the same test metrics and the same report directory (``config.yaml``,
``metrics.json``, ``report.md``, ``curves.png``, ``model_seed0.pt``, ``checkpoint_seed0.pt``).

Run it with::

    python examples/python_api.py [OUT_DIR] [EPOCHS]
"""

from __future__ import annotations

import sys

from medtoolkit.components.encoders.gru import GRUEncoder
from medtoolkit.components.losses.bce import BCELoss
from medtoolkit.components.losses.ddi import DDILoss
from medtoolkit.components.losses.margin import MultiLabelMarginLoss
from medtoolkit.components.memories.gcn import GCNMemory
from medtoolkit.components.params import Node
from medtoolkit.components.recommenders.gamenet import GAMENet
from medtoolkit.config import EvalParams, TrainerParams
from medtoolkit.data.loaders.mimic3 import MIMIC3Dataset
from medtoolkit.fit import fit_evaluate
from medtoolkit.tasks.medication import MedicationRecommendationTask
from medtoolkit.training.device import seed_everything
from medtoolkit.training.pipeline import RunResult


def main(out_dir: str = "runs/gamenet-python", epochs: int = 40, device: str = "auto") -> RunResult:
    """Build the parts, then train, evaluate and write ``out_dir`` (replacing a run already there)."""
    dataset = MIMIC3Dataset(MIMIC3Dataset.Params())  # the built-in MIMIC-III demo
    data = dataset.load()
    task = MedicationRecommendationTask(MedicationRecommendationTask.Params(seeds=[0]))
    split = task.splits(data)[0]
    schema = task.build_schema(data, split)  # vocabulary sizes, DDI graph, training-only co-occurrence
    seed_everything(1203)  # the initial weights come from torch's generator
    model = GAMENet(GAMENet.Params(
        hidden_dim=128,
        encoder=Node.of(GRUEncoder, embedding_dim=64, hidden_dim=128, output_dim=64, dropout=0.4),
        memory=Node.of(GCNMemory, dropout=0.3, ddi_in_memory=True, history=True),
    ), schema)
    losses = [
        BCELoss(BCELoss.Params(weight=0.9), schema),
        MultiLabelMarginLoss(MultiLabelMarginLoss.Params(weight=0.1), schema),
        DDILoss(DDILoss.Params(target=0.06, temperature=2.0, decay=0.85, granularity="visit"), schema),
    ]
    return fit_evaluate(
        model, losses, data, task=task, split=split, dataset=dataset, name="gamenet", seed=1203, device=device,
        trainer=TrainerParams(epochs=epochs, lr=1e-3, batch_size=16, flush_denormal=True),
        eval=EvalParams(bootstrap_rounds=10),
        out_dir=out_dir, overwrite=True,
    )


if __name__ == "__main__":
    result = main(*sys.argv[1:2], *(int(arg) for arg in sys.argv[2:3]))
    print(result.report_markdown)
