"""The core's own plugin: registers the built-in parts through the public hooks."""

from __future__ import annotations

from medtoolkit.hookspecs import Register, hookimpl


@hookimpl
def register_datasets(register: Register) -> None:
    from medtoolkit.data.loaders.eicu import EICUDataset
    from medtoolkit.data.loaders.mimic3 import MIMIC3Dataset
    from medtoolkit.data.loaders.mimic4 import MIMIC4Dataset
    from medtoolkit.data.loaders.safedrug_pickle import SafeDrugPickleDataset
    from medtoolkit.data.loaders.synthetic import SyntheticDataset

    register("safedrug_pickle", SafeDrugPickleDataset)
    register("synthetic", SyntheticDataset)
    register("mimic3", MIMIC3Dataset)
    register("mimic4", MIMIC4Dataset)
    register("eicu", EICUDataset)


@hookimpl
def register_tasks(register: Register) -> None:
    from medtoolkit.tasks.medication import MedicationRecommendationTask
    from medtoolkit.tasks.package_task import PackageRecommendationTask

    register("medication_recommendation", MedicationRecommendationTask)
    register("package_recommendation", PackageRecommendationTask)


@hookimpl
def register_encoders(register: Register) -> None:
    from medtoolkit.components.encoders.gru import GRUEncoder

    register("gru", GRUEncoder)


@hookimpl
def register_memories(register: Register) -> None:
    from medtoolkit.components.memories.gcn import GCNMemory

    register("gcn", GCNMemory)


@hookimpl
def register_losses(register: Register) -> None:
    from medtoolkit.components.losses.bce import BCELoss
    from medtoolkit.components.losses.ddi import DDILoss
    from medtoolkit.components.losses.margin import MultiLabelMarginLoss

    register("bce", BCELoss)
    register("multilabel_margin", MultiLabelMarginLoss)
    register("ddi", DDILoss)


@hookimpl
def register_recommenders(register: Register) -> None:
    from medtoolkit.components.recommenders.gamenet import GAMENet
    from medtoolkit.components.recommenders.logistic_regression import LogisticRegressionRecommender
    from medtoolkit.components.recommenders.previous_visit import PreviousVisitRecommender

    register("gamenet", GAMENet)
    register("logistic_regression", LogisticRegressionRecommender)
    register("previous_visit", PreviousVisitRecommender)


@hookimpl
def register_adapters(register: Register) -> None:
    from medtoolkit.components.adapters import FinetuneAdapter, FinetuneFreezeAdapter, LoRAAdapter

    register("finetune", FinetuneAdapter)
    register("finetune_freeze", FinetuneFreezeAdapter)
    register("lora", LoRAAdapter)


@hookimpl
def register_presets(register: Register) -> None:
    from medtoolkit.presets import builtin_presets

    for name, path in builtin_presets().items():
        register(name, path)
