"""Parameter models shared by every component: ``Params`` and child-slot ``Node``s."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

if TYPE_CHECKING:
    from medtoolkit.components.schema import DataSchema


class Params(BaseModel):
    """Base of every component's nested ``Params``: unknown keys are rejected, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class Node(BaseModel):
    """A child component in a config: ``{type: <registered name>, ...params}``.

    After validation (see :mod:`medtoolkit.config`) a node knows its component class and
    its validated :class:`Params`, so a parent simply calls :meth:`build`. In Python a
    node can also be made straight from a class with :meth:`of`.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    _component: Any = PrivateAttr(default=None)
    _params: Any = PrivateAttr(default=None)

    @classmethod
    def of(cls, component: type, **params: Any) -> "Node":
        """A resolved node for ``component`` (a class with a nested ``Params``)."""
        name = getattr(component, "registered_name", None) or component.__name__
        node = cls(type=name, **params)
        node.bind(component, component.Params(**params))
        return node

    def bind(self, component: type, params: Params) -> None:
        """Attach the resolved component class and its validated params."""
        self.__pydantic_private__["_component"] = component  # type: ignore[index]
        self.__pydantic_private__["_params"] = params  # type: ignore[index]

    @property
    def raw_params(self) -> dict[str, Any]:
        """The node's parameters as written (without ``type``)."""
        return dict(self.model_extra or {})

    @property
    def component(self) -> type:
        if self._component is None:
            raise RuntimeError(
                f"node of type {self.type!r} is not resolved; build configs through "
                "medtoolkit.build() / medtoolkit.config.validate_config()"
            )
        return self._component

    @property
    def params(self) -> Params:
        if self._params is None:
            raise RuntimeError(f"node of type {self.type!r} is not resolved")
        return self._params

    def build(self, schema: "DataSchema | None" = None, **extra: Any) -> Any:
        """Instantiate the component with its params and the data schema."""
        return self.component(self.params, schema, **extra)


def slot(kind: str, default: str | None = None, **default_params: Any) -> Any:
    """Declare a child slot of kind ``kind`` in a ``Params`` model.

    Args:
        kind: the component kind the slot accepts (``"encoder"``, ``"memory"``, ...).
        default: the registered name used when the config leaves the slot out
            (None makes the slot required).
        **default_params: parameters of the default node.
    """
    extra = {"slot": kind}
    if default is None:
        return Field(json_schema_extra=extra)
    return Field(
        default_factory=lambda: Node(type=default, **default_params), json_schema_extra=extra
    )


def slot_kind(params_class: type[BaseModel], field_name: str) -> str | None:
    """The kind of a slot field, or None if the field is a plain parameter."""
    info = params_class.model_fields[field_name]
    extra = info.json_schema_extra
    if isinstance(extra, dict):
        kind = extra.get("slot")
        return str(kind) if kind is not None else None
    return None
