"""Conformance checks for components (public: plugin authors run them in their tests).

Usage::

    from medtoolkit.testing import check_component

    def test_my_recommender_conforms():
        check_component(MyRecommender)                      # default Params, fake data
        check_component(MyRecommender, MyRecommender.Params(hidden_dim=8))

Every check raises ``AssertionError`` whose message starts with
``check_component(<Class>) [<check name>]`` so a failure says what broke. Checks:

* ``params``: ``Params`` round-trips through ``model_dump`` and JSON, rejects unknown keys
  and is frozen (every kind).
* ``shapes``: on a fake batch, encoders return ``[B, T, output_dim]``, memories
  ``[B, T, output_dim]`` for a ``[B, T, query_dim]`` query, recommenders ``[B, T, n_drugs]``,
  losses a finite scalar (also through ``combine``, after which ``tracked()`` is a dict of
  finite floats); values at real visits are finite.
  Drug encoders (:class:`~medtoolkit.components.base.DrugEncoder`) take no batch:
  ``forward()`` returns ``[n_drugs, output_dim]``, all finite.
* ``gradients``: a loss gives finite gradients to the logits; for trainable modules every
  parameter that requires a gradient gets one (a recommender providing extras is asked
  for all of them and its floating-point extras join the objective, so parameters that
  serve only extras, such as a mask-prediction head, count as used).
* ``state_dict``: a fresh instance loading ``state_dict()`` (through ``torch.save`` /
  ``torch.load(weights_only=True)``) gives the same eval-mode output.
* ``device``: no tensor is held outside registered parameters/buffers, at construction or
  after a forward (eval and train mode, so lazy caches count): every submodule's attributes
  are searched, through dicts and other mappings, lists/tuples/sets and plain objects (a
  ``torch_geometric`` ``Data``/``Batch`` keeps its tensors in the mapping ``_store``), and
  each offending tensor is named by its path, e.g. ``graph._store['x']``. A plain attribute
  that aliases a registered buffer is refused too (``.to()`` replaces buffers, so the alias
  goes stale), and so is a module kept in a container outside the registered submodules.
  Not seen: tensors captured in closures, ``functools.lru_cache`` or other C-level state,
  and anything deeper than a few levels of nesting. Then ``.to(device)`` moves every
  parameter and buffer (CUDA when available, else a CPU round trip) and outputs follow.
* ``determinism``: the same torch seed gives identical parameters and outputs.
* ``causality`` (recommenders, adapted recommenders, visit encoders, memories): changing
  visit t's medications (the multi-hot ``batch.medications``, recommenders and memories) or
  visit t's medication codes (``batch.codes["medications"]``, when the batch has them:
  every real code replaced by another valid code, padding kept) does not change outputs at
  visits <= t; changing visit t+1's codes (or query) does not change outputs at visits <= t.
  Drug encoders read no visits: skipped.
* ``batch_items`` (a recommender, or the ``recommender=`` provider, whose
  :meth:`~medtoolkit.components.base.Recommender.batch_items_needed` is not empty): pass
  ``collate=`` (e.g. the task's ``collate_fn``); it is applied to every batch the checks
  build (perturbed batches are re-collated) and must add every needed item.
* ``extras`` (recommenders whose :meth:`~medtoolkit.components.base.Recommender.extras_provided`
  is not empty): ``model(batch, extras=names)`` returns a
  :class:`~medtoolkit.components.base.ModelOutput` holding every name, with logits
  ``[B, T, n_drugs]``, and ``model(batch)`` still returns the plain logits tensor. Losses
  whose :meth:`~medtoolkit.components.base.Loss.extras_needed` is not empty need a
  provider: pass ``recommender=`` (a recommender class providing those extras, with
  ``recommender_params=``); its eval-mode extras on the fake batch feed every check of the
  loss, and ``gradients`` then checks that a train-mode objective gives gradients to the
  recommender's parameters (a loss reading only extras need not depend on the logits).

Adapters (kind ``adapter``) are checked on a recommender (``recommender=``, default
:class:`~medtoolkit.components.recommenders.gamenet.GAMENet`): each check builds a fresh
recommender and a fresh adapter and checks ``adapter.attach(recommender)``:

* ``attach``: it returns a :class:`~medtoolkit.components.base.Recommender` whose output has
  the plain recommender's shape, and no module of it has ``forward`` replaced on the
  object (a closure keeps calling the original modules in a copy; wrap instead).
* ``trainable``: at least one parameter trains (all may: ``finetune``), and every
  parameter of the adapter that trains is a parameter of the returned model (else it would
  be neither optimised nor saved). The counts are logged (logger ``medtoolkit.testing``).
* then ``shapes``, ``state_dict`` (a fresh recommender + fresh ``attach`` loads the adapted
  model's ``state_dict`` strictly, after every trainable parameter was moved off its initial
  value, and gives the same eval output), ``device``, ``determinism`` and ``causality`` on
  the adapted model, and ``gradients``: after one backward every trainable parameter has a
  gradient and no frozen one has.

The default data is :func:`~medtoolkit.testing.fake_ehr` with :data:`CHECK_HOSPITALS`
hospitals, so ``batch.hospital`` is set and ``schema.n_hospitals`` is positive.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import logging
import math
import types
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from medtoolkit.components.base import DrugEncoder, ModelOutput, Recommender
from medtoolkit.components.params import Node
from medtoolkit.components.schema import DataSchema
from medtoolkit.data.batching import PaddedBatch
from medtoolkit.data.ehr import MEDICATIONS, EHRData
from medtoolkit.testing.fake import fake_batch, fake_ehr, fake_schema

#: kinds whose instances are torch modules checked on a fake batch (adapters: the adapted recommender)
MODULE_KINDS = ("encoder", "memory", "loss", "recommender", "adapter")
#: hospitals of the default fake data (so hospital-aware parts see ``batch.hospital``)
CHECK_HOSPITALS = 3

log = logging.getLogger("medtoolkit.testing")

_RTOL = 1e-5
_ATOL = 1e-6

#: how deep :func:`loose_tensors` follows attributes, container items and object fields
SCAN_DEPTH = 6
#: at most this many objects are visited per :func:`loose_tensors` call (huge lists end early)
SCAN_BUDGET = 100_000
#: module attributes that hold what torch registers (and moves) itself
_REGISTERED_SLOTS = frozenset({"_parameters", "_buffers", "_modules"})
#: leaves that cannot hold tensors (never walked)
_ATOMS = (
    str, bytes, bytearray, int, float, complex, bool, type(None), type, range, slice,
    np.ndarray, np.generic, torch.dtype, torch.device, torch.Generator, weakref.ref, weakref.ProxyType,
    weakref.CallableProxyType,
    types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
    types.MethodWrapperType, types.WrapperDescriptorType, types.CodeType,
)


def _children(value: Any) -> Iterator[tuple[str, Any]]:
    """``(path suffix, child)`` pairs of a container or plain object (nothing for leaves)."""
    if isinstance(value, Mapping):
        try:
            items = list(value.items())
        except Exception:  # noqa: BLE001 - an odd mapping: its fields are still searched below
            items = []
        for key, item in items:
            yield f"[{key!r}]", item
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield f"[{index}]", item
    elif isinstance(value, (set, frozenset)):
        for item in value:
            yield "{...}", item
    fields = getattr(value, "__dict__", None)
    if isinstance(fields, dict):
        for key, item in list(fields.items()):
            yield f".{key}", item
    for cls in type(value).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot in ("__dict__", "__weakref__"):
                continue
            try:
                item = getattr(value, slot)
            except AttributeError:
                continue
            yield f".{slot}", item


def loose_tensors(module: nn.Module) -> list[str]:
    """Tensors and modules a module holds outside what ``.to(device)`` moves.

    Searches every submodule's attributes (all but ``_parameters``, ``_buffers`` and
    ``_modules``), following mapping values, list/tuple/set items and the fields of plain
    objects (``__dict__`` and ``__slots__``) up to :data:`SCAN_DEPTH` levels, each object
    once. A ``torch_geometric`` ``Data``/``Batch`` is a plain object whose ``_store`` is a
    mapping, so its tensors are found. Reported:

    * a tensor that is not a registered parameter or buffer (e.g. ``graph._store['x']``);
    * a tensor that is a registered *buffer* reached through another attribute: ``.to()``
      replaces buffer objects, so that alias keeps pointing at the old device;
    * an ``nn.Module`` in a container that is not a registered submodule (its parameters
      are neither moved, trained nor saved).

    Not seen: tensors captured in closures or ``functools.lru_cache`` (or other C-level
    state), and anything beyond the depth or :data:`SCAN_BUDGET`.

    Args:
        module: the module to search (with its submodules).

    Returns:
        one ``"<attribute path>: <why>"`` line per finding, paths relative to ``module``
        (``encoder.cache['adjacency']``); empty when everything is registered.
    """
    parameters = {id(p) for p in module.parameters()}
    buffers = {id(b): name for name, b in module.named_buffers()}
    submodules = {id(m) for m in module.modules()}
    visited: set[int] = set()
    findings: list[str] = []
    budget = SCAN_BUDGET

    def walk(value: Any, path: str, depth: int) -> None:
        nonlocal budget
        if isinstance(value, torch.Tensor):
            if id(value) in visited:
                return
            visited.add(id(value))
            if id(value) in parameters:
                return
            if id(value) in buffers:
                why = f"aliases buffer {buffers[id(value)]!r} (.to() replaces buffers; it goes stale)"
            else:
                why = f"{type(value).__name__} {tuple(value.shape)} is not a registered buffer/parameter"
            findings.append(f"{path}: {why}")
            return
        if isinstance(value, _ATOMS) or depth > SCAN_DEPTH or id(value) in visited or budget <= 0:
            return
        visited.add(id(value))
        budget -= 1
        if isinstance(value, nn.Module):
            if id(value) not in submodules:
                findings.append(f"{path}: {type(value).__name__} module is not a registered submodule")
            return  # registered submodules are searched on their own
        for suffix, child in _children(value):
            walk(child, path + suffix, depth + 1)

    for sub in module.modules():  # torch's own registries (and aliases of them) are fine
        visited.update(id(vars(sub)[slot]) for slot in _REGISTERED_SLOTS if slot in vars(sub))
    for prefix, sub in module.named_modules():
        visited.add(id(sub))
        for key, value in vars(sub).items():
            if key not in _REGISTERED_SLOTS:
                walk(value, f"{prefix}.{key}" if prefix else key, 1)
    return findings


def moved_to(value: Any, device: torch.device | str) -> Any:
    """``value`` with every tensor in it moved to ``device`` (model extras, for the device check).

    Follows mappings (a ``dict`` comes back), lists, tuples and dataclass instances (a
    shallow copy with moved fields); anything else is returned as it is.

    Args:
        value: a tensor, a container of tensors or anything else.
        device: the target device.

    Returns:
        the moved value (inputs are not modified).
    """
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, Mapping):
        return {key: moved_to(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(moved_to(item, device) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        copied = copy.copy(value)
        for item in dataclasses.fields(value):
            object.__setattr__(copied, item.name, moved_to(getattr(value, item.name), device))
        return copied
    return value


def tensors_in(value: Any) -> list[torch.Tensor]:
    """Every tensor in ``value`` (model extras): through mappings, lists, tuples and dataclass fields.

    Args:
        value: a tensor, a container of tensors or anything else.

    Returns:
        the tensors, in traversal order (empty when there is none).
    """
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for item in value.values() for t in tensors_in(item)]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in tensors_in(item)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [t for item in dataclasses.fields(value) for t in tensors_in(getattr(value, item.name))]
    return []


class _Checker:
    """Holds the inputs of one :func:`check_component` call."""

    def __init__(
        self,
        component_class: type,
        params: BaseModel | None,
        schema: DataSchema,
        batch: PaddedBatch,
        device: torch.device,
        query_dim: int,
        seed: int,
        recommender: type | None = None,
        recommender_params: BaseModel | None = None,
        collate: Callable[[PaddedBatch], PaddedBatch] | None = None,
    ) -> None:
        self.cls = component_class
        #: the task's batch-item function applied to every batch built here (None: none)
        self.collate = collate
        self.kind = getattr(component_class, "kind", "")
        #: a drug encoder: ``forward()`` without a batch, ``[n_drugs, output_dim]``
        self.drug = isinstance(component_class, type) and issubclass(component_class, DrugEncoder)
        self.schema = schema
        self.batch = batch
        self.device = device
        self.query_dim = query_dim
        self.seed = seed
        self.passed: list[str] = []
        if params is None:
            try:
                params = component_class.Params()
            except ValidationError as error:
                self.fail("params", f"Params() needs values without defaults; pass params=... ({error})")
        self.params = params
        generator = torch.Generator().manual_seed(1234)
        b, t = batch.visit_mask.shape
        # fixed inputs of memories (query) and losses (logits)
        self.query = torch.randn(b, t, query_dim, generator=generator)
        self.logits = 2 * torch.randn(b, t, schema.n_drugs, generator=generator)
        #: the recommender adapters adapt and extras-reading losses read (None: none needed)
        self.recommender_cls = recommender
        self.recommender_params = recommender_params
        if self.kind == "adapter" and self.recommender_cls is None:
            from medtoolkit.components.recommenders.gamenet import GAMENet

            self.recommender_cls = GAMENet
        #: names a loss reads from the model (:meth:`Loss.extras_needed`), sorted
        self.needed: tuple[str, ...] = ()
        #: the provider's extras on the fake batch (eval mode), fed to extras-reading losses
        self.extras: dict[str, Any] | None = None

    # ------------------------------------------------------------------ helpers
    def collated(self, batch: PaddedBatch) -> PaddedBatch:
        """``batch`` with its items rebuilt by ``collate`` (unchanged without it)."""
        if self.collate is None:
            return batch
        return self.collate(dataclasses.replace(batch, items={}))

    def check_batch_items(self) -> None:
        """A recommender (or the ``recommender=`` provider) needing batch items needs ``collate=``, which adds them."""
        name = "batch_items"
        cls, params = (self.cls, self.params) if self.kind == "recommender" else (
            self.recommender_cls, self.recommender_params)
        needs = getattr(cls, "batch_items_needed", None) if cls is not None else None
        if needs is None:
            return
        if params is None:
            params = cls.Params()
        needed = frozenset(needs(params))
        if not needed:
            return
        self.expect(self.collate is not None, name,
                    f"{cls.__name__} needs batch items {sorted(needed)}: pass collate= (the task's "
                    f"collate_fn(data, split, schema, items)) so that every checked batch carries them")
        missing = sorted(needed - set(self.batch.items))
        self.expect(not missing, name, f"collate= did not add the batch items {missing} that {cls.__name__} needs")
        self.passed.append(name)

    def fail(self, check: str, message: str) -> None:
        raise AssertionError(f"check_component({self.cls.__name__}) [{check}] {message}")

    def expect(self, condition: bool, check: str, message: str) -> None:
        if not condition:
            self.fail(check, message)

    def build(self) -> nn.Module:
        """A fresh instance (adapters: a fresh recommender adapted by a fresh adapter)."""
        if self.kind == "memory":
            return self.cls(self.params, self.schema, query_dim=self.query_dim)
        if self.kind == "adapter":
            return self.cls(self.params, self.schema).attach(self.build_recommender())
        return self.cls(self.params, self.schema)

    def build_recommender(self) -> nn.Module:
        """A fresh ``recommender=`` instance (the adapted model, or the extras provider)."""
        assert self.recommender_cls is not None
        if self.recommender_params is None:
            try:
                self.recommender_params = self.recommender_cls.Params()
            except ValidationError as error:
                self.fail("params", f"{self.recommender_cls.__name__}.Params() needs values without defaults; "
                                    f"pass recommender_params=... ({error})")
        return self.recommender_cls(self.recommender_params, self.schema)

    def run(
        self,
        module: nn.Module,
        batch: PaddedBatch | None = None,
        query: torch.Tensor | None = None,
        logits: torch.Tensor | None = None,
        extras: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """The module's output on ``batch`` (moved to the module's inputs' device by the caller)."""
        batch = self.batch if batch is None else batch
        if self.drug:
            return module()
        if self.kind == "memory":
            return module(self.query if query is None else query, batch)
        if self.kind == "loss":
            logits = self.logits if logits is None else logits
            if self.needed:
                return module(logits, batch, dict(self.extras if extras is None else extras))
            return module(logits, batch)
        return module(batch)

    def same(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        return a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=_RTOL, atol=_ATOL, equal_nan=True)

    def real(self, output: torch.Tensor, batch: PaddedBatch | None = None) -> torch.Tensor:
        """Values at real visits (losses: the scalar itself; drug encoders: every row)."""
        if self.kind == "loss" or self.drug:
            return output
        mask = (self.batch if batch is None else batch).visit_mask.to(output.device)
        return output[mask]

    def provider_output(self, provider: nn.Module) -> tuple[torch.Tensor, dict[str, Any]]:
        """``provider(batch, extras=needed)`` split into logits and extras (check ``extras``)."""
        name = "extras"
        provider_name = type(provider).__name__
        try:
            output = provider(self.batch, extras=self.needed)
        except Exception as error:  # noqa: BLE001
            self.fail(name, f"{provider_name}(batch, extras={self.needed}) raised {type(error).__name__}: {error}")
        self.expect(isinstance(output, ModelOutput), name, f"{provider_name}(batch, extras={self.needed}) must "
                    f"return a ModelOutput, got {type(output).__name__}")
        missing = [extra for extra in self.needed if extra not in output.extras]
        self.expect(not missing, name, f"{provider_name}'s ModelOutput lacks the extras {missing}")
        return output.logits, dict(output.extras)

    # ------------------------------------------------------------------ checks
    def check_params(self) -> None:
        name = "params"
        params_class = self.cls.Params
        self.expect(isinstance(self.params, params_class), name, f"params is not a {params_class.__qualname__}")
        dump = self.params.model_dump()
        try:
            again = params_class(**dump)
        except ValidationError as error:
            self.fail(name, f"Params(**params.model_dump()) fails: {error}")
        self.expect(again.model_dump() == dump, name, f"model_dump round trip changed the params: {again!r} != {self.params!r}")
        has_nodes = any(isinstance(getattr(self.params, f), Node) for f in type(self.params).model_fields)
        if not has_nodes:  # resolved child nodes compare unequal to re-parsed ones; dumps suffice there
            self.expect(again == self.params, name, f"Params(**params.model_dump()) != params: {again!r}")
        try:
            from_json = params_class.model_validate_json(self.params.model_dump_json())
        except ValidationError as error:
            self.fail(name, f"JSON round trip fails: {error}")
        self.expect(
            from_json.model_dump(mode="json") == self.params.model_dump(mode="json"),
            name,
            "JSON round trip changed the params",
        )
        try:
            params_class(**dump, conformance_unknown_key=1)
        except ValidationError:
            pass
        else:
            self.fail(name, 'unknown keys must be rejected (model_config extra="forbid")')
        fields = list(params_class.model_fields)
        if fields:
            try:
                setattr(self.params, fields[0], getattr(self.params, fields[0]))
            except (ValidationError, TypeError, AttributeError):
                pass
            else:
                self.fail(name, "Params must be frozen (model_config frozen=True)")
        self.passed.append(name)

    def prepare_extras(self) -> None:
        """For a loss reading extras: the ``recommender=`` provider's eval-mode extras on the fake batch.

        Check ``extras``: a provider was given and provides every needed name.
        """
        declare = getattr(self.cls, "extras_needed", None)
        needed = tuple(sorted(declare(self.params))) if declare is not None else ()
        if not needed:
            return
        name = "extras"
        if self.recommender_cls is None:
            self.fail(name, f"this loss reads the model extras {list(needed)}: pass recommender=<a Recommender "
                            "class providing them> (and recommender_params=... when its defaults do not)")
        torch.manual_seed(self.seed)
        try:
            provider = self.build_recommender()
        except AssertionError:
            raise
        except Exception as error:  # noqa: BLE001
            self.fail(name, f"{self.recommender_cls.__name__}(recommender_params, schema) raised "
                            f"{type(error).__name__}: {error}")
        provided = frozenset(self.recommender_cls.extras_provided(self.recommender_params))
        missing = sorted(set(needed) - provided)
        self.expect(not missing, name, f"recommender {self.recommender_cls.__name__} does not provide the extras "
                    f"{missing} this loss reads (it provides: {sorted(provided) or 'none'})")
        self.needed = needed
        provider.eval()
        torch.manual_seed(self.seed)
        with torch.no_grad():
            _, self.extras = self.provider_output(provider)
        self.passed.append(name)

    def provided_extras(self) -> tuple[str, ...]:
        """The extras a recommender under check declares (sorted; ``()`` for other kinds)."""
        if self.kind != "recommender":
            return ()
        return tuple(sorted(self.cls.extras_provided(self.params)))

    def check_extras(self, module: nn.Module) -> None:
        """``extras`` of a recommender providing extras (see the module docstring)."""
        names = self.provided_extras()
        if not names:
            return
        name = "extras"
        b, t = self.batch.visit_mask.shape
        expected = (b, t, self.schema.n_drugs)
        module.eval()
        requests = [names] + ([(single,) for single in names] if len(names) > 1 else [])
        with torch.no_grad():
            for request in requests:
                try:
                    output = module(self.batch, extras=request)
                except Exception as error:  # noqa: BLE001
                    self.fail(name, f"forward(batch, extras={request}) raised {type(error).__name__}: {error}")
                self.expect(isinstance(output, ModelOutput), name,
                            f"forward(batch, extras={request}) must return a ModelOutput, got {type(output).__name__}")
                missing = [extra for extra in request if extra not in output.extras]
                self.expect(not missing, name, f"forward(batch, extras={request}) lacks the extras {missing} "
                            f"that extras_provided() declares")
                shape = tuple(output.logits.shape) if isinstance(output.logits, torch.Tensor) else None
                self.expect(shape == expected, name, f"ModelOutput.logits must be {expected}, got {shape}")
            for call, plain in (("forward(batch)", module(self.batch)),
                                ("forward(batch, extras=())", module(self.batch, extras=()))):
                self.expect(isinstance(plain, torch.Tensor), name,
                            f"{call} must still return the logits tensor, got {type(plain).__name__}")
        self.passed.append(name)

    def check_attach(self) -> nn.Module:
        """``attach`` and ``trainable`` of an adapter; returns the adapted model, trainable parameters nudged."""
        from medtoolkit.components.adapters.common import count_parameters

        name = "attach"
        rec_name = self.recommender_cls.__name__ if self.recommender_cls is not None else "?"
        torch.manual_seed(self.seed)
        plain = self.build_recommender()
        plain.eval()
        with torch.no_grad():
            plain_output = plain(self.batch)
        torch.manual_seed(self.seed)
        try:
            adapter = self.cls(self.params, self.schema)
        except Exception as error:  # noqa: BLE001
            self.fail("construction", f"{self.cls.__name__}(params, schema) raised {type(error).__name__}: {error}")
        self.expect(isinstance(adapter, nn.Module), "construction", "an adapter must be a torch.nn.Module")
        recommender = self.build_recommender()
        try:
            model = adapter.attach(recommender)
        except Exception as error:  # noqa: BLE001
            self.fail(name, f"attach({rec_name}) raised {type(error).__name__}: {error}")
        self.expect(isinstance(model, Recommender), name,
                    f"attach({rec_name}) must return a Recommender, got {type(model).__name__}")
        model.eval()
        with torch.no_grad():
            try:
                output = model(self.batch)
            except Exception as error:  # noqa: BLE001
                self.fail(name, f"the adapted {rec_name} raised {type(error).__name__} on a fake batch: {error}")
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        self.expect(shape == tuple(plain_output.shape), name, f"the adapted {rec_name} returns {shape}, the plain "
                    f"one {tuple(plain_output.shape)}")
        patched = [f"'{prefix or '<model>'}.forward'" for prefix, sub in model.named_modules() if "forward" in vars(sub)]
        self.expect(not patched, name, f"attach replaced forward on the model object ({', '.join(patched[:5])}): a "
                    "copy of the model (deepcopy, pickling) keeps calling the original modules; return a wrapper "
                    "(a Recommender subclass holding the recommender and the adapter's parameters) instead")
        self.passed.append(name)

        name = "trainable"
        trainable, total = count_parameters(model)
        registered = {id(p) for p in model.parameters()}
        stray = [n for n, p in adapter.named_parameters() if p.requires_grad and id(p) not in registered]
        self.expect(not stray, name, f"the adapter's trainable parameters {stray[:10]} are not parameters of the "
                    "returned model, so they would be neither trained nor saved: register them (or the adapter) "
                    "as a submodule of the model")
        self.expect(trainable > 0, name, f"attach({rec_name}) left no parameter to train (0 of {total})")
        log.info("check_component(%s): %d of %d parameters of %s train (%.2f%%)", self.cls.__name__, trainable,
                 total, rec_name, 100.0 * trainable / total)
        self.passed.append(name)
        noise = torch.Generator().manual_seed(11)  # the state_dict check must see the adapter's parameters
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.requires_grad and parameter.is_floating_point():
                    parameter.add_(0.05 * torch.randn(parameter.shape, generator=noise).to(parameter))
        return model

    def check_shapes(self, module: nn.Module) -> torch.Tensor:
        name = "shapes"
        b, t = self.batch.visit_mask.shape
        module.eval()
        with torch.no_grad():
            try:
                output = self.run(module)
            except Exception as error:  # noqa: BLE001 - report any failure as this check's
                self.fail(name, f"forward on a fake batch raised {type(error).__name__}: {error}")
        if isinstance(output, ModelOutput):
            self.fail(name, "forward(batch) must return the logits tensor, got a ModelOutput (return one only when "
                            "extras are asked for: forward(batch, extras=names))")
        self.expect(isinstance(output, torch.Tensor), name, f"forward must return a tensor, got {type(output)}")
        if self.kind == "loss":
            self.expect(output.ndim == 0, name, f"a loss must return a scalar, got shape {tuple(output.shape)}")
        elif self.drug:
            expected = (self.schema.n_drugs, int(module.output_dim))
            self.expect(tuple(output.shape) == expected, name, f"expected output shape {expected} "
                        f"([n_drugs, output_dim]), got {tuple(output.shape)}")
            self.expect(output.is_floating_point(), name, f"output must be floating point, got {output.dtype}")
        else:
            width = self.schema.n_drugs if self.kind in ("recommender", "adapter") else int(module.output_dim)
            expected = (b, t, width)
            self.expect(tuple(output.shape) == expected, name, f"expected output shape {expected}, got {tuple(output.shape)}")
            self.expect(output.is_floating_point(), name, f"output must be floating point, got {output.dtype}")
        where = "" if self.drug else " at real visits"
        self.expect(bool(torch.isfinite(self.real(output)).all()), name, f"output has NaN/inf{where}")
        if self.kind == "loss":
            total = torch.tensor(1.0)
            with torch.no_grad():
                combined = module.combine(total, self.logits, self.batch, extras=self.extras)
            self.expect(
                isinstance(combined, torch.Tensor) and combined.ndim == 0 and bool(torch.isfinite(combined)),
                name,
                "combine(total, logits, batch, extras=...) must return a finite scalar",
            )
            values = module.tracked()
            self.expect(
                isinstance(values, dict)
                and all(isinstance(k, str) and isinstance(v, (int, float)) and math.isfinite(v)
                        for k, v in values.items()),
                name,
                f"tracked() must return a dict of str -> finite float, got {values!r}",
            )
            module.reset_tracking()
        self.passed.append(name)
        return output

    def check_gradients(self, module: nn.Module) -> None:
        name = "gradients"
        module.train()
        module.zero_grad(set_to_none=True)
        if self.kind == "loss" and self.needed:
            self.check_extras_gradients(module)
            return
        if self.kind == "loss":
            logits = self.logits.clone().requires_grad_(True)
            value = module(logits, self.batch)
            self.expect(value.requires_grad, name, "the loss is not differentiable w.r.t. the logits")
            value.backward()
            self.expect(logits.grad is not None and bool(torch.isfinite(logits.grad).all()), name, "non-finite logit gradients")
            self.expect(bool(logits.grad.abs().sum() > 0), name, "the loss gives zero gradients to the logits")
            self.passed.append(name)
            return
        if self.kind == "recommender" and not getattr(self.cls, "trainable", True):
            self.passed.append(name)
            return
        torch.manual_seed(self.seed)
        names = self.provided_extras()
        if names:  # parameters serving only extras (mask heads...) get their gradients through them
            full = module(self.batch, extras=names)
            output, extra_tensors = full.logits, tensors_in(full.extras)
        else:
            output, extra_tensors = self.run(module), []
        trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not trainable:
            self.passed.append(name)
            return
        self.expect(output.requires_grad, name, "the output does not depend on any parameter")
        objective = (self.real(output).float() ** 2).mean()
        for tensor in extra_tensors:
            finite = tensor[torch.isfinite(tensor)] if tensor.is_floating_point() else tensor[:0]
            if finite.numel() and finite.requires_grad:
                objective = objective + (finite.float() ** 2).mean()
        objective.backward()
        missing = [n for n, p in trainable if p.grad is None]
        self.expect(not missing, name, f"parameters without gradients (unused?): {', '.join(missing[:10])}"
                    + (f" (the objective covered the logits and the extras {list(names)})" if names else ""))
        bad = [n for n, p in trainable if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        self.expect(not bad, name, f"non-finite gradients in: {', '.join(bad[:10])}")
        if self.kind == "adapter":
            leaked = [n for n, p in module.named_parameters() if not p.requires_grad and p.grad is not None]
            self.expect(not leaked, name, f"frozen parameters got gradients after attach: {', '.join(leaked[:10])}")
        module.zero_grad(set_to_none=True)
        self.passed.append(name)

    def check_extras_gradients(self, module: nn.Module) -> None:
        """``gradients`` of a loss reading extras: a train-mode objective reaches the provider's parameters."""
        name = "gradients"
        torch.manual_seed(self.seed)
        provider = self.build_recommender()
        provider.train()
        torch.manual_seed(self.seed)
        logits, extras = self.provider_output(provider)
        logits = logits.detach().requires_grad_(True) if not logits.requires_grad else logits
        value = module(logits, self.batch, extras)
        self.expect(isinstance(value, torch.Tensor) and value.ndim == 0, name,
                    "the loss must return a scalar given the provider's train-mode output")
        self.expect(bool(torch.isfinite(value)), name,
                    f"the loss is {float(value.detach())} on the provider's train-mode output")
        if value.requires_grad:
            value.backward()
        reached = [n for n, p in provider.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)]
        self.expect(bool(reached), name, f"no gradient reaches the parameters of {self.recommender_cls.__name__} "
                    f"through the extras {list(self.needed)} (detached?)")
        bad = [n for n, p in provider.named_parameters()
               if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        self.expect(not bad, name, f"non-finite gradients in the provider's: {', '.join(bad[:10])}")
        self.passed.append(name)

    def check_state_dict(self, module: nn.Module, reference: torch.Tensor) -> None:
        name = "state_dict"
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        buffer.seek(0)
        try:
            state = torch.load(buffer, weights_only=True)
        except Exception as error:  # noqa: BLE001
            self.fail(name, f"state_dict cannot be loaded with torch.load(weights_only=True): {error}")
        torch.manual_seed(self.seed + 1)
        fresh = self.build()
        what = ("a fresh recommender after a fresh attach" if self.kind == "adapter" else "a fresh instance")
        try:
            fresh.load_state_dict(state, strict=True)
        except Exception as error:  # noqa: BLE001
            self.fail(name, f"{what} cannot load the state_dict: {error}")
        fresh.eval()
        with torch.no_grad():
            output = self.run(fresh)
        self.expect(
            self.same(self.real(output), self.real(reference)),
            name,
            f"{what} with the loaded state_dict gives a different eval-mode output",
        )
        self.passed.append(name)

    def check_device(self, module: nn.Module, reference: torch.Tensor) -> None:
        name = "device"
        self.check_loose_tensors(module)
        moved = copy.deepcopy(module).to(self.device)
        wrong = [n for n, t in [*moved.named_parameters(), *moved.named_buffers()] if t.device.type != self.device.type]
        self.expect(not wrong, name, f"after .to({self.device}) these tensors stayed behind: {wrong[:10]}")
        moved.eval()
        batch = self.batch.to(self.device)
        with torch.no_grad():
            try:
                output = self.run(moved, batch, self.query.to(self.device), self.logits.to(self.device),
                                  moved_to(self.extras, self.device) if self.extras is not None else None)
            except Exception as error:  # noqa: BLE001
                self.fail(name, f"forward on {self.device} raised {type(error).__name__}: {error}")
        self.expect(output.device.type == self.device.type, name, f"output on {output.device}, expected {self.device}")
        tolerance = dict(rtol=1e-3, atol=1e-4) if self.device.type != "cpu" else dict(rtol=_RTOL, atol=_ATOL)
        self.expect(
            torch.allclose(self.real(output, batch).float().cpu(), self.real(reference).float(), **tolerance),
            name,
            f"output on {self.device} differs from the CPU output",
        )
        back = moved.to("cpu")
        with torch.no_grad():
            again = self.run(back)
        self.expect(self.same(self.real(again), self.real(reference)), name, "output changed after a device round trip")
        self.passed.append(name)

    def check_loose_tensors(self, module: nn.Module) -> None:
        """Part of ``device``: :func:`loose_tensors` of ``module`` and of a fresh instance.

        The fresh instance is searched at construction, after an eval-mode forward and after
        a train-mode forward, so tensors cached lazily by a forward are caught too.
        """
        name = "device"
        findings: dict[str, str] = {}

        def scan(instance: nn.Module, when: str) -> None:
            for finding in loose_tensors(instance):
                findings.setdefault(finding, when)

        torch.manual_seed(self.seed)
        fresh = self.build()
        scan(fresh, "at construction")
        fresh.eval()
        with torch.no_grad():
            self.run(fresh)
        scan(fresh, "after an eval forward")
        fresh.train()
        torch.manual_seed(self.seed)
        self.run(fresh)
        scan(fresh, "after a train forward")
        scan(module, "after the checks' forwards")
        if findings:
            where = type(module).__name__
            lines = "; ".join(f"{finding} ({when})" for finding, when in list(findings.items())[:10])
            more = f" (+{len(findings) - 10} more)" if len(findings) > 10 else ""
            self.fail(
                name,
                f"{where} holds tensors that are not registered buffers/parameters, so they will not follow "
                f".to(device); register them with register_buffer(name, tensor, persistent=False) "
                f"(keep index tensors, not whole graph objects): {lines}{more}",
            )

    def check_determinism(self, module: nn.Module) -> None:
        name = "determinism"
        outputs = []
        states = []
        for _ in range(2):
            torch.manual_seed(self.seed)
            instance = self.build()
            states.append(instance.state_dict())
            instance.train()
            torch.manual_seed(self.seed + 7)
            with torch.no_grad():
                train_out = self.run(instance)
            instance.eval()
            with torch.no_grad():
                eval_out = self.run(instance)
            outputs.append((train_out, eval_out))
        first, second = states
        for key, value in first.items():
            if isinstance(value, torch.Tensor):
                self.expect(torch.equal(value, second[key]), name, f"same seed, different initial {key!r}")
        self.expect(torch.equal(outputs[0][0], outputs[1][0]), name, "same seed, different train-mode outputs")
        self.expect(torch.equal(outputs[0][1], outputs[1][1]), name, "same seed, different eval-mode outputs")
        self.passed.append(name)

    def replaced_codes(self, vocab: str, t: int, generator: torch.Generator) -> torch.Tensor:
        """``batch.codes[vocab]`` with every real code of visit ``t`` replaced by another valid one.

        Args:
            vocab: a vocabulary of the batch.
            t: the visit slot to change.
            generator: draws the replacements.

        Returns:
            ``[B, T, L]`` int64, a copy; padding (0) is kept, other visits are unchanged.
        """
        tensor = self.batch.codes[vocab]
        size = self.schema.vocab_sizes.get(vocab, self.schema.n_drugs if vocab == MEDICATIONS else int(tensor.max()))
        shift = torch.randint(1, max(size, 2), tensor[:, t].shape, generator=generator)
        new = tensor.clone()
        real = new[:, t] > 0
        new[:, t] = torch.where(real, (new[:, t] - 1 + shift) % size + 1, new[:, t])
        return new

    def check_causality(self, module: nn.Module) -> None:
        name = "causality"
        if self.kind not in ("recommender", "adapter", "encoder", "memory") or self.drug:
            return
        # on a copy whose parameters are nudged off their initial values: a weight initialised
        # at zero (a logistic regression's) would hide a leak behind an output that cannot move
        module = copy.deepcopy(module)
        noise = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for parameter in module.parameters():
                if parameter.is_floating_point():
                    parameter.add_(0.05 * torch.randn(parameter.shape, generator=noise).to(parameter))
        module.eval()
        mask = self.batch.visit_mask
        n_visits = mask.shape[1]
        with torch.no_grad():
            base = self.run(module)
        generator = torch.Generator().manual_seed(99)

        def unchanged_up_to(t: int, output: torch.Tensor) -> bool:
            prefix = mask[:, : t + 1]
            return self.same(base[:, : t + 1][prefix], output[:, : t + 1][prefix])

        for t in range(n_visits):
            perturbations: list[tuple[str, int, Callable[[], torch.Tensor]]] = []
            if self.kind in ("recommender", "adapter", "memory"):
                medications = self.batch.medications.clone()
                medications[:, t] = torch.where(mask[:, t, None], 1 - medications[:, t], medications[:, t])
                changed = self.collated(dataclasses.replace(self.batch, medications=medications))
                perturbations.append(
                    (f"changing the medications of visit {t} changed outputs at visits <= {t}", t,
                     lambda b=changed: self.run(module, b))
                )
            if MEDICATIONS in self.batch.codes:
                codes = dict(self.batch.codes)
                codes[MEDICATIONS] = self.replaced_codes(MEDICATIONS, t, generator)
                changed = self.collated(dataclasses.replace(self.batch, codes=codes))
                perturbations.append(
                    (f"changing the medication codes of visit {t} (batch.codes['medications']) changed outputs "
                     f"at visits <= {t}: the current visit's medication codes are its target", t,
                     lambda b=changed: self.run(module, b))
                )
            if t + 1 < n_visits and self.kind in ("recommender", "adapter", "encoder"):
                codes = {vocab: self.replaced_codes(vocab, t + 1, generator) for vocab in self.batch.codes}
                changed = self.collated(dataclasses.replace(self.batch, codes=codes))
                perturbations.append(
                    (f"changing the codes of visit {t + 1} changed outputs at visits <= {t}", t,
                     lambda b=changed: self.run(module, b))
                )
            if t + 1 < n_visits and self.kind == "memory":
                query = self.query.clone()
                query[:, t + 1 :] = torch.randn(query[:, t + 1 :].shape, generator=generator)
                perturbations.append(
                    (f"changing the queries of visits > {t} changed outputs at visits <= {t}", t,
                     lambda q=query: self.run(module, query=q))
                )
            for message, upto, produce in perturbations:
                with torch.no_grad():
                    output = produce()
                self.expect(unchanged_up_to(upto, output), name, message + " (a model may read medications, "
                            "multi-hot or codes, of visits < t and other codes of visits <= t only)")
        self.passed.append(name)


def check_component(
    component_class: type,
    params: BaseModel | None = None,
    schema: DataSchema | None = None,
    data: EHRData | None = None,
    device: torch.device | str | None = None,
    *,
    query_dim: int = 16,
    seed: int = 0,
    recommender: type | None = None,
    recommender_params: BaseModel | None = None,
    collate: Callable[[PaddedBatch], PaddedBatch] | None = None,
) -> list[str]:
    """Run the conformance checks on a component class.

    Args:
        component_class: the class (a subclass of one of the kinds in
            :mod:`medtoolkit.components.base`, with a nested ``Params``).
        params: its ``Params`` (default: ``component_class.Params()``).
        schema: data schema (default: :func:`~medtoolkit.testing.fake_schema` of ``data``).
        data: data to cut the fake batch from (default: :func:`~medtoolkit.testing.fake_ehr`
            with :data:`CHECK_HOSPITALS` hospitals).
        device: device of the device check (default: CUDA when available, else a CPU round trip).
        query_dim: query width given to memories.
        seed: torch seed used to build instances.
        recommender: the recommender class an adapter is attached to (default:
            :class:`~medtoolkit.components.recommenders.gamenet.GAMENet`), or that provides
            the extras a loss reads (required for such a loss); ignored otherwise.
        recommender_params: its ``Params`` (default: ``recommender.Params()``).
        collate: adds task-supplied items to every batch the checks build (the fake batch
            and each perturbed copy, rebuilt from scratch), e.g. a task's
            :meth:`~medtoolkit.components.base.Task.collate_fn`. Required when the
            recommender (or the ``recommender=`` provider) declares
            :meth:`~medtoolkit.components.base.Recommender.batch_items_needed`.

    Returns:
        the names of the checks that ran and passed.

    Raises:
        AssertionError: ``check_component(<Class>) [<check>] <what went wrong>``.
    """
    if not hasattr(component_class, "Params"):
        raise AssertionError(f"check_component({component_class.__name__}) [params] the class has no nested Params")
    data = data if data is not None else fake_ehr(n_hospitals=CHECK_HOSPITALS)
    schema = schema if schema is not None else fake_schema(data)
    batch = fake_batch(data)
    if collate is not None:
        batch = collate(batch)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    checker = _Checker(component_class, params, schema, batch, torch.device(device), query_dim, seed,
                       recommender, recommender_params, collate)
    checker.check_params()
    checker.check_batch_items()
    if checker.kind not in MODULE_KINDS:
        return checker.passed
    if checker.kind == "adapter":
        module = checker.check_attach()
    else:
        if checker.kind == "loss":
            checker.prepare_extras()
        torch.manual_seed(seed)
        try:
            module = checker.build()
        except Exception as error:  # noqa: BLE001
            checker.fail("construction",
                         f"{component_class.__name__}(params, schema) raised {type(error).__name__}: {error}")
        checker.expect(isinstance(module, nn.Module), "construction", "a neural component must be a torch.nn.Module")
    reference = checker.check_shapes(module)
    checker.check_extras(module)
    checker.check_state_dict(module, reference)
    checker.check_device(module, reference)
    checker.check_determinism(module)
    checker.check_causality(module)
    checker.check_gradients(module)
    return checker.passed


__all__ = ["CHECK_HOSPITALS", "check_component", "loose_tensors", "moved_to"]
