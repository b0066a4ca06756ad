"""Which handler describes which op: ``HandlerRegistry`` and the default one.

The built-in handlers come from a static list, the ``HANDLERS`` table of each module in
``ops`` (this is the one module that imports them). An analysis walks with one registry:
``analyze``/``analyze_model`` take ``registry=...`` and, given none, use the default registry
(``analyze_model`` keeps a copy of it, so a plan is applied with the handlers it was made
with). Registrations are therefore per registry: adding a handler to a copy changes nothing
for analyses that use another one.

``register_op_handler(op_type, handler)`` registers into the default registry, which
analyses created afterwards start from; ``register_op_handler(op_type, handler, registry=r)``
registers into ``r`` only. Handlers are keyed by ``op_type`` alone (any domain). An op without
a handler pins every tracked tensor it reads, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from trtforge.pipeline.graph.pruning.ops import elementwise, linear, reduce, shape
from trtforge.pipeline.graph.pruning.ops.base import HandlerTable, OpHandler

log = logging.getLogger(__name__)

BUILTIN_HANDLERS: HandlerTable = (
    *elementwise.HANDLERS,
    *reduce.HANDLERS,
    *linear.HANDLERS,
    *shape.HANDLERS,
)


class HandlerRegistry:
    """Handlers by ``op_type``; ``copy`` gives an independent registry (sharing the stateless handlers)."""

    def __init__(self, handlers: Iterable[tuple[str, OpHandler]] = ()) -> None:
        self._handlers: dict[str, OpHandler] = {}
        for op_type, handler in handlers:
            self.register(op_type, handler)

    def register(self, op_type: str, handler: OpHandler) -> None:
        """Register (or replace) the handler of ``op_type``."""
        if not isinstance(handler, OpHandler):
            raise TypeError(f"handler for {op_type!r} must be an OpHandler, not {type(handler).__name__}")
        if op_type in self._handlers:
            log.debug("pruning: handler of %s replaced by %s", op_type, type(handler).__name__)
        self._handlers[op_type] = handler

    def remove(self, op_type: str) -> OpHandler | None:
        """Forget the handler of ``op_type`` (its nodes then pin what they read); return it."""
        return self._handlers.pop(op_type, None)

    def get(self, op_type: str) -> OpHandler | None:
        return self._handlers.get(op_type)

    def copy(self) -> HandlerRegistry:
        return HandlerRegistry(self._handlers.items())

    def op_types(self) -> tuple[str, ...]:
        return tuple(sorted(self._handlers))

    def __contains__(self, op_type: object) -> bool:
        return op_type in self._handlers


def builtin_registry() -> HandlerRegistry:
    """A new registry holding exactly the built-in handlers."""
    return HandlerRegistry(BUILTIN_HANDLERS)


_DEFAULT = builtin_registry()


def default_registry() -> HandlerRegistry:
    """The registry analyses start from when given none (what ``register_op_handler`` extends)."""
    return _DEFAULT


def resolve(registry: HandlerRegistry | None) -> HandlerRegistry:
    """``registry``, or the default registry when None."""
    return _DEFAULT if registry is None else registry


def register_op_handler(op_type: str, handler: OpHandler, registry: HandlerRegistry | None = None) -> None:
    """Register (or replace) the handler of ``op_type`` in ``registry`` (default: the default
    registry, seen by analyses created afterwards)."""
    resolve(registry).register(op_type, handler)
