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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from medtoolkit.components.params import Params

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import pandas as pd

    from medtoolkit.components.schema import DataSchema
    from medtoolkit.config import EvalParams
    from medtoolkit.data.batching import PaddedBatch
    from medtoolkit.data.ehr import EHRData
    from medtoolkit.training.predict import Predictions

KINDS = ("dataset", "task", "encoder", "memory", "loss", "recommender", "adapter")


@dataclass
class ModelOutput:
    """What a recommender returns when it is asked for named extras besides the logits.

    A recommender that declares extras (:meth:`Recommender.extras_provided`) accepts
    ``forward(batch, extras=("name", ...))`` and then returns a ``ModelOutput``; called
    without ``extras`` (or with an empty tuple) it returns the plain logits tensor, as
    every recommender does. Losses that read extras declare them with
    :meth:`Loss.extras_needed`; ``medtoolkit validate`` refuses a loss whose extras the
    model does not provide.

    Attributes:
        logits: ``[B, T, n_drugs]`` drug logits.
        extras: name -> value (tensors or small dataclasses of tensors; what each name
            holds is a contract between the recommender and the losses that read it).
    """

    logits: torch.Tensor
    extras: Mapping[str, Any] = field(default_factory=dict)


def require_extra(extras: Mapping[str, Any] | None, name: str, loss: str) -> Any:
    """The model extra ``name`` a loss reads from the ``extras`` it was given.

    Args:
        extras: the model's extras (:class:`ModelOutput`), as the trainer passes them.
        name: the extra's name (one of the loss's :meth:`Loss.extras_needed`).
        loss: the loss's registered name, for the message.

    Raises:
        KeyError: ``name`` is missing; the message names the loss, the extra and what was given.
    """
    if extras is None or name not in extras:
        given = sorted(extras) if extras is not None else []
        raise KeyError(f"loss {loss!r} needs the model extra {name!r}, got {given}")
    return extras[name]


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
    #: parameters that change only how test visits are predicted, never training or the
    #: splits: ``medtoolkit evaluate RUN -o task.<name>=...`` may change them on a finished run
    prediction_params: ClassVar[frozenset[str]] = frozenset()

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
        visit_group: "np.ndarray | None" = None,
    ) -> dict[str, Any]:
        """Score per-visit predictions; returns ``{metric: {"mean": m, "std": s}}``.

        Args:
            probabilities: ``[N, n_drugs]`` predicted probabilities of N visits.
            targets: ``[N, n_drugs]`` ground-truth multi-hot medications.
            visit_patient: ``[N]`` patient index of each visit.
            schema: the schema of the split (DDI adjacency, ...).
            eval_params: threshold, averaging and bootstrap settings (None: defaults).
            visit_group: ``[N]`` group (hospital index) of each visit, or None; used by
                grouped evaluation (``eval.group_by``).
        """

    #: whether the predictions of a patient array equal the concatenation of the predictions of
    #: its contiguous parts, so that data-parallel ranks may each predict a part
    #: (:func:`~medtoolkit.training.predict.predict_across_ranks`); a task that keeps state
    #: across one :meth:`predict` call (a prediction table) sets False and rank 0 predicts alone
    predicts_in_parts: ClassVar[bool] = True

    def prepare(self, data: "EHRData") -> "EHRData":
        """The data as this task's samples (default: unchanged; a per-stay task makes each visit a sample)."""
        return data

    def predict(
        self,
        model: "Recommender",
        data: "EHRData",
        split: Any,
        patients: "np.ndarray",
        batch_size: int,
        device: torch.device,
    ) -> "Predictions":
        """The predictions of ``model`` for the test visits of ``patients``, which :meth:`evaluate` scores.

        Every run scores its test patients through this method: a single-stage run
        (:func:`~medtoolkit.training.pipeline.train_split`), every unit of an evaluated
        stage (:class:`~medtoolkit.training.stages.StageRunner`, which concatenates the
        units' predictions in patient order) and ``medtoolkit evaluate``
        (:func:`~medtoolkit.experiment.evaluate_run`). A task whose protocol predicts
        otherwise (e.g. choosing one candidate medication set per visit and reporting it as
        0/1 scores) overrides it and returns the same
        :class:`~medtoolkit.training.predict.Predictions` layout. Validation during
        training does not come here: the trainer selects epochs on per-drug metrics of
        :func:`~medtoolkit.training.predict.predict`.

        Args:
            model: the trained recommender, already on ``device``.
            data: the prepared dataset.
            split: the split (of :meth:`splits`) the model was trained on; ``patients`` are
                test patients of it (a task that chooses among training items reads them here).
            patients: ``[P]`` patient indices (the test patients of a split or unit).
            batch_size: patients per forward pass (``eval.batch_size``).
            device: where batches go.

        Returns:
            Default: the per-drug probabilities of
            :func:`medtoolkit.training.predict.predict`.
        """
        from medtoolkit.training.predict import predict

        return predict(model, data, patients, batch_size, device)

    @classmethod
    def recommender_error(cls, params: Params, recommender: type) -> str | None:
        """Why this task with ``params`` cannot use recommenders of class ``recommender``, or None (default).

        ``medtoolkit validate`` asks it for the run's model before any data is read (e.g. a
        task scoring packages with the model refuses a recommender that scores none).
        """
        return None

    @classmethod
    def batch_items_provided(cls, params: Params) -> frozenset[str]:
        """Names of the per-batch items :meth:`collate_fn` can add with ``params`` (``PaddedBatch.items``).

        ``medtoolkit validate`` refuses a recommender whose
        :meth:`Recommender.batch_items_needed` names an item missing here, before any data
        is read. Default: none.
        """
        return frozenset()

    def collate_fn(
        self, data: "EHRData", split: Any, schema: "DataSchema", items: frozenset[str],
    ) -> "Callable[[PaddedBatch], PaddedBatch] | None":
        """A function adding the requested ``items`` to a (CPU) batch, or None when nothing is to add.

        The trainer applies it to every training and validation batch before moving it to
        the device (:class:`~medtoolkit.training.trainer.Trainer` ``collate``); the pipeline
        and the stage runner build it with the recommender's
        :meth:`Recommender.batch_items_needed`.

        Args:
            data: the prepared dataset.
            split: the split being trained (items may use its training part only).
            schema: the split's schema (training statistics).
            items: the item names the recommender needs (a subset of
                :meth:`batch_items_provided`).

        Returns:
            ``batch -> batch with items[name]`` set for every requested name (a new
            :class:`~medtoolkit.data.batching.PaddedBatch`; the input is not modified), or
            None. Default: None.

        Raises:
            ValueError: an item this task does not provide is requested (default: any item).
        """
        if items:
            raise ValueError(f"task {type(self).__name__} provides no batch items, but "
                             f"{', '.join(repr(name) for name in sorted(items))} were requested")
        return None

    def prediction_table(self) -> "pd.DataFrame | None":
        """A per-visit table of the last scored predictions, or None (default).

        Read by the pipeline right after :meth:`evaluate` (single-stage runs and every
        evaluated stage) and written as ``predictions_<split>.csv`` in the run directory.
        """
        return None


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

    @classmethod
    def extras_needed(cls, params: Params) -> frozenset[str]:
        """Named model extras this term reads with ``params`` (see :class:`ModelOutput`).

        A term that needs extras implements ``forward(logits, batch, extras)`` (``extras``:
        name -> value, holding at least these names); ``medtoolkit validate`` refuses it
        beside a recommender whose :meth:`Recommender.extras_provided` lacks one of them.
        Default: nothing (``forward(logits, batch)``).
        """
        return frozenset()

    @abstractmethod
    def forward(self, logits: torch.Tensor, batch: "PaddedBatch") -> torch.Tensor:
        """Scalar loss over real visits."""

    def evaluate_term(
        self, logits: torch.Tensor, batch: "PaddedBatch", extras: Mapping[str, Any] | None = None
    ) -> torch.Tensor:
        """The term's value: ``self(logits, batch)``, or ``self(logits, batch, extras)`` when it needs extras."""
        if self.extras_needed(self.params):
            return self(logits, batch, dict(extras or {}))
        return self(logits, batch)

    def combine(
        self, total: torch.Tensor, logits: torch.Tensor, batch: "PaddedBatch",
        extras: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        """Fold this term into the running objective (default: ``total + weight * term``)."""
        return total + self.weight * self.evaluate_term(logits, batch, extras)

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
    #: submodule names (prefixes of parameter names) forming the output head; the
    #: ``finetune_freeze`` adapter trains only these (empty: the last ``nn.Linear``)
    head_modules: ClassVar[tuple[str, ...]] = ()
    #: True when :meth:`score_packages` is implemented (a package scorer; a package task's
    #: ``scoring: model`` needs it)
    scores_packages: ClassVar[bool] = False

    @classmethod
    def batch_items_needed(cls, params: Params) -> frozenset[str]:
        """Names of the task-supplied per-batch items (``batch.items``) ``forward`` reads with ``params``.

        ``medtoolkit validate`` refuses the run when the task's
        :meth:`Task.batch_items_provided` lacks one; the trainer adds them to every batch
        with the task's :meth:`Task.collate_fn`. Default: none.
        """
        return frozenset()

    @classmethod
    def extras_provided(cls, params: Params) -> frozenset[str]:
        """Named extras ``forward(batch, extras=names)`` can return with ``params`` (see :class:`ModelOutput`).

        Default: none.
        """
        return frozenset()

    def __init__(self, params: Params | None = None, schema: "DataSchema | None" = None) -> None:
        nn.Module.__init__(self)
        self._store(params, schema)
        if schema is None:
            raise ValueError(f"{type(self).__name__} needs a DataSchema (vocabulary sizes, DDI graph)")

    @abstractmethod
    def forward(self, batch: "PaddedBatch") -> torch.Tensor:
        """Logits ``[B, T, n_drugs]`` for every visit (visit t sees medications < t only)."""

    def fit_state(self, data: "EHRData", patients: "np.ndarray", schema: "DataSchema") -> None:
        """Compute state fitted on the training patients once training is over (default: nothing).

        Called once per trained model, after the trainer has loaded the selected epoch's
        weights and before the model is saved or scored: in a single-stage run with the
        split's training patients, in a staged run with each trained unit's training
        patients (a skipped unit keeps its initial state), and for non-trainable
        recommenders too (a rule-based recommender builds its nearest-neighbour index here).
        It runs without gradients, in eval mode, with the model on the training device.

        The state must live in buffers declared with :meth:`register_fitted_state` in the
        constructor: they are saved in ``model_<split>.pt`` and in stage and unit model files
        (a unit file of a repeated stage stores them besides its trainable parameters), so
        ``medtoolkit evaluate`` and ``--resume`` of a finished stage load them back without
        calling ``fit_state`` again.

        Args:
            data: the prepared dataset.
            patients: ``[P]`` training patient indices.
            schema: the split's schema.
        """

    def register_fitted_state(self, name: str, tensor: torch.Tensor) -> None:
        """Declare (in the constructor) or replace (in :meth:`fit_state`) a fitted-state buffer.

        A persistent buffer, so ``state_dict`` and ``.to(device)`` carry it. Declare it in
        the constructor with a placeholder whose shape may be empty (``torch.zeros(0, D)``)
        when its size depends on the data (the number of training patients of a unit);
        :meth:`fit_state` calls this again with the fitted tensor (any shape, on the
        model's device). Loading a model file
        (:func:`~medtoolkit.training.checkpoint.load_weights`) resizes each declared buffer
        to the saved shape first, so a freshly built model accepts the fitted state.
        """
        names = self.__dict__.setdefault("_fitted_state_names", [])
        if name not in names:
            names.append(name)
        self.register_buffer(name, tensor, persistent=True)

    def visit_embedding(self, batch: "PaddedBatch") -> torch.Tensor | None:
        """A learnt embedding of every visit (the package task's neighbour search), or None (default).

        Args:
            batch: a padded batch.

        Returns:
            ``[B, T, D]`` float visit embeddings (padding rows are ignored), causal like the
            logits (visit t reads codes of visits <= t and medications of visits < t); None
            when the recommender has none.
        """
        return None

    @torch.no_grad()
    def fit_neighbour_index(self, data: "EHRData", patients: "np.ndarray", batch_size: int = 512) -> None:
        """Embed every visit of ``patients`` with :meth:`visit_embedding` and keep the result as fitted state.

        Called from :meth:`fit_state` by a recommender providing a visit embedding (which
        declares the buffers ``neighbour_keys`` ``[0, D]`` float32 and ``neighbour_visits``
        ``[0]`` int64 with :meth:`register_fitted_state` in its constructor; they are
        declared here otherwise). Runs in eval mode without gradients on the model's device.

        Args:
            data: the prepared dataset.
            patients: ``[P]`` training patient indices.
            batch_size: patients per forward pass.

        Sets:
            ``neighbour_keys`` ``[V, D]`` float32, the embedding of every visit of
            ``patients`` (patient order, then time order), and ``neighbour_visits`` ``[V]``
            int64, their global visit indices (``data.visit_offsets[p] + position``).

        Raises:
            ValueError: :meth:`visit_embedding` returns None or not ``[B, T, D]``.
        """
        import numpy as np

        from medtoolkit.tasks.medication import visits_of
        from medtoolkit.training.predict import embed_visits

        device = next(iter(self.parameters()), next(iter(self.buffers()), torch.empty(0))).device
        patients = np.asarray(patients, dtype=np.int64)
        keys = embed_visits(self, data, patients, batch_size, device)
        if keys is None:
            raise ValueError(f"{type(self).__name__}.visit_embedding returned None: a recommender "
                             f"without a visit embedding has no neighbour index")
        visits = torch.from_numpy(visits_of(data, patients))
        self.register_fitted_state("neighbour_keys", keys.contiguous())
        self.register_fitted_state("neighbour_visits", visits.to(device))

    def neighbour_index(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The fitted visit index of :meth:`fit_neighbour_index`, or None when there is none (or it is empty).

        Returns:
            ``(keys [V, D] float32, visits [V] int64 global visit indices)``.
        """
        keys = self._buffers.get("neighbour_keys")
        visits = self._buffers.get("neighbour_visits")
        if keys is None or visits is None or keys.shape[0] == 0 or keys.shape[0] != visits.shape[0]:
            return None
        return keys, visits

    def score_packages(
        self,
        batch: "PaddedBatch",
        graphs: Any,
        pair_visit: torch.Tensor,
        pair_graph: torch.Tensor,
    ) -> torch.Tensor:
        """Score (visit, package graph) pairs (a package scorer; set :attr:`scores_packages`).

        Args:
            batch: the padded batch the visits come from.
            graphs: ``torch_geometric`` ``Batch`` of G package graphs
                (:func:`~medtoolkit.tasks.package_graphs.build_package_graphs`).
            pair_visit: ``[n_pairs]`` int64 index of the visit among the batch's real visits
                (row-major order of ``batch.visit_mask``).
            pair_graph: ``[n_pairs]`` int64 graph index in ``[0, G)``.

        Returns:
            ``[n_pairs]`` float scores (higher is better).

        Raises:
            NotImplementedError: the default; the recommender is no package scorer.
        """
        raise NotImplementedError(f"{type(self).__name__} does not score packages (scores_packages is False)")

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

    @classmethod
    def recommender_error(cls, params: Params, recommender: type) -> str | None:
        """Why this adapter with ``params`` cannot adapt recommenders of class ``recommender``, or None.

        ``medtoolkit validate`` asks it for every stage adapter, so a mismatch is refused
        before any data is read (default: None, any recommender).
        """
        return None

    @abstractmethod
    def attach(self, recommender: Recommender) -> Recommender:
        """Adapt ``recommender`` (already holding its initial weights) and return the model to train.

        The adapter decides which parameters train: after ``attach`` exactly the returned
        model's parameters with ``requires_grad`` are optimised. It may change the
        recommender in place (wrap layers, add a prompt submodule, freeze parameters) and
        return it. The returned model's ``state_dict`` must load into a fresh recommender
        of the same config after ``attach`` of a fresh adapter of the same params.

        Raises:
            TypeError: the recommender lacks what this adapter needs (the message names both).
        """


def fit_model_state(model: nn.Module, data: "EHRData", patients: "np.ndarray", schema: "DataSchema") -> None:
    """Call :meth:`Recommender.fit_state` of ``model`` (eval mode, no gradients).

    ``model`` is the recommender or what an adapter returned for it: then the first
    recommender among its submodules is asked (a recommender built from other recommenders
    fits their state in its own ``fit_state``). Its training mode is restored afterwards.
    """
    recommender = next((m for m in model.modules() if isinstance(m, Recommender)), None)
    if recommender is None:
        return
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            recommender.fit_state(data, patients, schema)
    finally:
        model.train(was_training)


def fitted_state_keys(model: nn.Module) -> set[str]:
    """The ``state_dict`` keys of the fitted-state buffers (:meth:`Recommender.register_fitted_state`) in ``model``."""
    keys = set()
    for prefix, module in model.named_modules():
        for name in module.__dict__.get("_fitted_state_names", ()):
            keys.add(f"{prefix}.{name}" if prefix else name)
    return keys


def resize_fitted_state(model: nn.Module, state: Mapping[str, Any]) -> None:
    """Give each fitted-state buffer of ``model`` the shape it has in ``state`` (before loading ``state``).

    The buffer keeps its dtype and device; its values are left to ``load_state_dict``.
    Buffers absent from ``state`` are left alone.
    """
    for prefix, module in model.named_modules():
        for name in module.__dict__.get("_fitted_state_names", ()):
            saved = state.get(f"{prefix}.{name}" if prefix else name)
            current = module._buffers.get(name)
            if current is not None and hasattr(saved, "shape") and tuple(saved.shape) != tuple(current.shape):
                module._buffers[name] = torch.empty(tuple(saved.shape), dtype=current.dtype, device=current.device)


BASE_CLASSES: dict[str, type] = {
    "dataset": Dataset,
    "task": Task,
    "encoder": Encoder,
    "memory": Memory,
    "loss": Loss,
    "recommender": Recommender,
    "adapter": Adapter,
}
