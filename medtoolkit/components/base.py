"""The abstract component kinds of medtoolkit.

Every component has a nested ``Params`` (a :class:`~medtoolkit.components.params.Params`
subclass: unknown keys rejected, frozen) and is constructed as ``Component(params, schema)``.
Neural components are ``torch.nn.Module`` s: they never call ``.cuda()``; constant graphs
are registered buffers and the trainer moves modules and batches.

Shapes (B patients, T visits, D features, N drugs):

* Encoder: ``forward(batch) -> [B, T, output_dim]``; visit t sees codes of visits <= t.
* Memory: ``forward(query [B, T, D], batch) -> [B, T, output_dim]``; may read medications
  of visits < t only.
* Recommender: ``forward(batch) -> logits [B, T, N]`` for every visit in one call.
* Loss: ``forward(logits [B, T, N], batch) -> scalar`` over real visits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from medtoolkit.components.params import Params

if TYPE_CHECKING:
    import numpy as np

    from medtoolkit.components.schema import DataSchema
    from medtoolkit.config import EvalParams
    from medtoolkit.data.batching import PaddedBatch
    from medtoolkit.data.ehr import EHRData

KINDS = ("dataset", "task", "encoder", "memory", "loss", "recommender", "adapter")


class Component:
    """Mixin holding what every kind shares: ``kind``, ``Params`` and construction."""

    kind: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    registered_name: ClassVar[str | None] = None

    @classmethod
    def knowledge_needed(cls, params: Params) -> frozenset[str]:
        """Drug knowledge this component needs from the data with ``params`` (e.g. ``"ddi"``).

        ``medtoolkit validate`` checks it against the dataset's
        :meth:`Dataset.knowledge_provided` before any data is read
        (:mod:`medtoolkit.components.requirements`). Default: nothing.
        """
        return frozenset()

    @classmethod
    def statistics_needed(cls, params: Params) -> frozenset[str]:
        """Training-split count statistics this component reads with ``params``.

        Names are built with :func:`~medtoolkit.components.statistics.code_counts` and
        :func:`~medtoolkit.components.statistics.pair_counts` (e.g.
        ``pair_counts("diagnoses", "medications")``). ``medtoolkit validate`` refuses a
        malformed name before any data is read; the component reads each value in its
        constructor with :meth:`DataSchema.require_statistic
        <medtoolkit.components.schema.DataSchema.require_statistic>`, which computes it
        from the split's training visits on first use. A statistic no component asks for
        is never computed. Default: nothing.
        """
        return frozenset()

    def _store(self, params: Params | None, schema: "DataSchema | None") -> None:
        if params is None:
            params = self.Params()
        if not isinstance(params, self.Params):
            raise TypeError(
                f"{type(self).__name__} expects {self.Params.__qualname__}, got {type(params).__qualname__}"
            )
        self.params = params
        self.schema = schema


class Dataset(Component, ABC):
    """Loads patients -> visits -> codes and drug knowledge into :class:`EHRData`."""

    kind: ClassVar[str] = "dataset"

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        self._store(params, schema)

    @classmethod
    def knowledge_provided(cls, params: Params) -> frozenset[str] | None:
        """Drug knowledge the data will carry with ``params`` (``"ddi"``...), or None.

        None (the default) means the dataset can only tell once loaded; components that
        need missing knowledge then refuse when they are built.
        """
        return None

    @abstractmethod
    def load(self, progress: bool = True) -> "EHRData":
        """Read (or generate) the data; raises a clear error on bad input."""

    def describe(self) -> dict[str, Any]:
        """Facts for the run report (source, options)."""
        return {"type": self.registered_name or type(self).__name__, **self.params.model_dump()}


class Task(Component, ABC):
    """Turns a dataset into splits and a schema, and owns the evaluation protocol."""

    kind: ClassVar[str] = "task"

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        self._store(params, schema)

    @abstractmethod
    def splits(self, data: "EHRData") -> list[Any]:
        """The train/validation/test splits this protocol evaluates (one or several)."""

    @abstractmethod
    def build_schema(self, data: "EHRData", split: Any) -> "DataSchema":
        """The :class:`DataSchema` for models trained on ``split`` (graphs from training only)."""

    @abstractmethod
    def evaluate(
        self,
        probabilities: "np.ndarray",
        targets: "np.ndarray",
        visit_patient: "np.ndarray",
        schema: "DataSchema",
        eval_params: "EvalParams | None" = None,
    ) -> dict[str, Any]:
        """Score per-visit predictions; returns ``{metric: {"mean": m, "std": s}}``.

        Args:
            probabilities: ``[N, n_drugs]`` predicted probabilities of N visits.
            targets: ``[N, n_drugs]`` ground-truth multi-hot medications.
            visit_patient: ``[N]`` patient index of each visit.
            schema: the schema of the split (DDI adjacency, ...).
            eval_params: threshold, averaging and bootstrap settings (None: defaults).
        """


class Encoder(Component, nn.Module, ABC):
    """Maps one input kind to vectors per visit: ``[B, T, output_dim]``."""

    kind: ClassVar[str] = "encoder"
    consumes: ClassVar[str] = "visits"

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        nn.Module.__init__(self)
        self._store(params, schema)

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """Width D of the returned vectors."""

    @abstractmethod
    def forward(self, batch: "PaddedBatch") -> torch.Tensor:
        """``[B, T, output_dim]`` visit representations (causal)."""


class DrugEncoder(Encoder):
    """Maps the schema's drugs to vectors, ``forward() -> [n_drugs, output_dim]`` (no batch).

    A drug encoder is an encoder (registered with ``register_encoders``) that declares the
    drug-side input it reads in :attr:`consumes` (``"molecules"``...). Slots that take "any
    drug encoder" accept exactly these (see :func:`medtoolkit.components.params.slot`);
    ``medtoolkit validate`` refuses a visit encoder there and a drug encoder in a visit slot.
    Its input arrays come from the schema and are held as registered buffers, so
    ``.to(device)`` moves them. It runs once per training step, not once per visit.
    """

    consumes: ClassVar[str] = "molecules"

    @abstractmethod
    def forward(self) -> torch.Tensor:  # type: ignore[override]
        """``[n_drugs, output_dim]`` drug representations (row i: drug index i)."""


class Memory(Component, nn.Module, ABC):
    """Drug-side memory read with a patient query: ``[B, T, D] -> [B, T, output_dim]``."""

    kind: ClassVar[str] = "memory"

    def __init__(
        self, params: Params | None = None, schema: "DataSchema | None" = None, query_dim: int = 64
    ) -> None:
        nn.Module.__init__(self)
        self._store(params, schema)
        self.query_dim = query_dim

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """Width of the read-out."""

    @abstractmethod
    def forward(self, query: torch.Tensor, batch: "PaddedBatch") -> torch.Tensor:
        """``[B, T, output_dim]`` read-out for every visit."""


class Loss(Component, nn.Module, ABC):
    """One term of the objective. ``weight`` scales it; gating terms decide how to combine."""

    kind: ClassVar[str] = "loss"
    #: a gating loss is folded in after every additive term (see :meth:`combine`)
    gating: ClassVar[bool] = False

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        nn.Module.__init__(self)
        self._store(params, schema)

    @property
    def weight(self) -> float:
        return float(getattr(self.params, "weight", 1.0))

    @abstractmethod
    def forward(self, logits: torch.Tensor, batch: "PaddedBatch") -> torch.Tensor:
        """Scalar loss over real visits."""

    def combine(self, total: torch.Tensor, logits: torch.Tensor, batch: "PaddedBatch") -> torch.Tensor:
        """Fold this term into the running objective (default: ``total + weight * loss``)."""
        return total + self.weight * self(logits, batch)

    def on_epoch_end(self, epoch: int) -> None:
        """Called by the trainer after every epoch (schedules, annealing)."""

    def reset_tracking(self) -> None:
        """Called by the trainer before every epoch: forget the values :meth:`tracked` reports."""

    def tracked(self) -> dict[str, float]:
        """Values of this term that change during training, for the epoch just finished.

        For example a controllable DDI loss's mean ``beta`` or the predicted DDI rate it
        saw. The trainer records them per epoch in the history and ``curves.png`` draws
        them. Default: nothing.
        """
        return {}


class Recommender(Component, nn.Module, ABC):
    """Wires encoders and memories into drug scores: ``forward(batch) -> [B, T, n_drugs]``."""

    kind: ClassVar[str] = "recommender"
    #: False for rule-based recommenders that need no training (e.g. ``previous_visit``)
    trainable: ClassVar[bool] = True

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        nn.Module.__init__(self)
        self._store(params, schema)
        if schema is None:
            raise ValueError(f"{type(self).__name__} needs a DataSchema (vocabulary sizes, DDI graph)")

    @abstractmethod
    def forward(self, batch: "PaddedBatch") -> torch.Tensor:
        """Logits ``[B, T, n_drugs]`` for every visit (visit t sees medications < t only)."""

    @torch.no_grad()
    def predict_proba(self, batch: "PaddedBatch") -> torch.Tensor:
        """Probabilities ``[B, T, n_drugs]`` (sigmoid of the logits)."""
        return torch.sigmoid(self(batch))


class Adapter(Component, nn.Module, ABC):
    """Parameter-efficient adaptation of a trained recommender to a domain (hospital)."""

    kind: ClassVar[str] = "adapter"

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        nn.Module.__init__(self)
        self._store(params, schema)

    @abstractmethod
    def attach(self, recommender: Recommender) -> Recommender:
        """Return a recommender adapted by this adapter (parameters to train are this module's)."""


BASE_CLASSES: dict[str, type] = {
    "dataset": Dataset,
    "task": Task,
    "encoder": Encoder,
    "memory": Memory,
    "loss": Loss,
    "recommender": Recommender,
    "adapter": Adapter,
}
