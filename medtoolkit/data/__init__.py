"""EHR data model, vocabularies, drug knowledge, batching and loaders."""

from medtoolkit.data.batching import PaddedBatch, iterate_batches, make_batch
from medtoolkit.data.ehr import DIAGNOSES, MEDICATIONS, PROCEDURES, EHRData
from medtoolkit.data.knowledge import DrugKnowledge, cooccurrence_adjacency
from medtoolkit.data.vocab import Vocabulary

__all__ = [
    "DIAGNOSES",
    "MEDICATIONS",
    "PROCEDURES",
    "DrugKnowledge",
    "EHRData",
    "PaddedBatch",
    "Vocabulary",
    "cooccurrence_adjacency",
    "iterate_batches",
    "make_batch",
]
