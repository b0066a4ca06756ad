"""Dependency analysis: which channels must be removed together.

Every tracked tensor axis (a *space*: an activation axis or an initializer axis) gets one
*atom* per position. Op handlers (``ops/``) link atoms that must go together: a Conv's
output channel ``i`` with row ``i`` of its weight, a residual Add's inputs position by
position, a Concat input's channel ``i`` with output channel ``offset + i``, a channel of a
Flatten input with its block of spatial positions in the Gemm input. Connected components
of atoms (scipy's ``connected_components``, so a 1,000-node graph stays well under a
second) are the *units* that can be removed; units reached from the same prunable producers
form a *group* (the plan's ratio applies per group).

Anything the analysis cannot prove safe *pins* the atoms it touches: graph inputs and
outputs, tensors read by an op without a handler, tensors coupled to ones no prunable
producer controls. A pinned unit is never removed; the reasons are reported per group.

This module holds the analysis state only; ``walk.analyze`` fills it by asking the handlers of
a ``registry.HandlerRegistry``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from trtforge.pipeline.graph.pruning.graph import GraphIndex


@dataclass
class Space:
    """One tracked axis of one tensor; ``kind`` is "act" (activation) or "param" (initializer)."""

    id: int
    tensor: str
    axis: int
    size: int
    kind: str
    base: int
    role: str = ""  # params: weight | bias | bn_scale | other
    source: str | None = None  # node name when this is a prunable producer's output space

    @property
    def atoms(self) -> np.ndarray:
        return np.arange(self.base, self.base + self.size)


@dataclass
class Fixup:
    """A non-sliced change surgery must make after removal (Reshape shape, Split sizes, ...)."""

    kind: str
    node: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Flow:
    """Positions of an op's output space that carry the value of positions of an input space."""

    node: str
    out: int
    out_pos: np.ndarray
    inp: int
    in_pos: np.ndarray


@dataclass
class Group:
    """Units (removable channel sets) reached from the same prunable producers."""

    id: str
    sources: tuple[str, ...]
    units: np.ndarray  # component id per unit, ordered by position in the first source space
    pinned: np.ndarray  # bool per unit
    channels: int  # positions per unit in the first source space
    reasons: tuple[str, ...] = ()
    spaces: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return len(self.units)

    @property
    def blocked(self) -> bool:
        return bool(self.pinned.all())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sources": list(self.sources),
            "size": self.size,
            "channels_per_unit": self.channels,
            "pinned": int(self.pinned.sum()),
            "blocked": self.blocked,
            "reasons": list(self.reasons),
        }


class Analysis:
    """Spaces, links and pins of one graph; op handlers call its methods while ``walk`` walks it."""

    def __init__(self, index: GraphIndex) -> None:
        self.index = index
        self.spaces: list[Space] = []
        self.by_key: dict[tuple[str, int, str], Space] = {}
        self._edges: list[tuple[np.ndarray, np.ndarray]] = []
        self.pins: list[tuple[Space, np.ndarray | None, str]] = []
        self.required: dict[int, str] = {}
        self.reached: set[int] = set()
        self.sinks: set[int] = set()
        self.fixups: list[Fixup] = []
        self.flows: list[Flow] = []
        self.queue: deque[Space] = deque()
        self.n_atoms = 0
        self.labels = np.zeros(0, dtype=np.int64)
        self.groups: list[Group] = []

    # -- spaces ---------------------------------------------------------------------------
    def _space(self, tensor: str, axis: int, kind: str, size: int, role: str = "") -> Space:
        key = (tensor, axis, kind)
        if key not in self.by_key:
            sp = Space(len(self.spaces), tensor, axis, size, kind, self.n_atoms, role)
            self.n_atoms += size
            self.spaces.append(sp)
            self.by_key[key] = sp
        return self.by_key[key]

    def act(self, tensor: str, axis: int) -> Space | None:
        """Activation space of ``tensor`` at ``axis`` (negative allowed); None if its size is unknown."""
        shape = self.index.shape(tensor)
        if shape is None or not shape:
            return None
        axis = axis % len(shape)
        size = shape[axis]
        if size is None or size <= 0:
            return None
        return self._space(tensor, axis, "act", int(size))

    def param(self, tensor: str, axis: int, role: str = "other") -> Space:
        value = self.index.const(tensor)
        assert value is not None, tensor
        axis = axis % value.ndim
        return self._space(tensor, axis, "param", int(value.shape[axis]), role)

    # -- relations ------------------------------------------------------------------------
    def link(
        self, a: Space, b: Space, pos_a: np.ndarray | None = None, pos_b: np.ndarray | None = None
    ) -> None:
        pa = np.arange(a.size) if pos_a is None else np.asarray(pos_a)
        pb = np.arange(b.size) if pos_b is None else np.asarray(pos_b)
        if pa.shape != pb.shape:
            raise ValueError(f"link {a.tensor}:{a.axis} -> {b.tensor}:{b.axis}: {pa.shape} != {pb.shape}")
        self._edges.append((pa + a.base, pb + b.base))

    def flow(
        self,
        node: onnx.NodeProto,
        out: Space,
        inp: Space,
        out_pos: np.ndarray | None = None,
        in_pos: np.ndarray | None = None,
    ) -> None:
        """``out`` positions carry ``inp`` positions through ``node`` (a link, remembered for lossless)."""
        op = np.arange(out.size) if out_pos is None else np.asarray(out_pos)
        ip = np.arange(inp.size) if in_pos is None else np.asarray(in_pos)
        self.link(out, inp, op, ip)
        self.flows.append(Flow(node.name, out.id, op, inp.id, ip))

    def reach(self, space: Space) -> None:
        if space.id not in self.reached:
            self.reached.add(space.id)
            self.queue.append(space)

    def require(self, space: Space, why: str) -> None:
        """``space`` must be controlled by a prunable producer, or its units are pinned."""
        self.required.setdefault(space.id, why)

    def pin(self, space: Space, reason: str, positions: np.ndarray | None = None) -> None:
        self.pins.append((space, positions, reason))

    def sink(self, space: Space) -> None:
        """``space`` is summed over by a contraction (Conv/Gemm/MatMul input channels)."""
        self.sinks.add(space.id)

    def fixup(self, kind: str, node: onnx.NodeProto, **data: Any) -> None:
        self.fixups.append(Fixup(kind, node.name, data))

    def source(self, node: onnx.NodeProto, out: Space) -> None:
        out.source = node.name
        self.reach(out)

    # -- results --------------------------------------------------------------------------
    def space_of(self, tensor: str, axis: int) -> Space | None:
        return self.by_key.get((tensor, axis, "act"))

    def solve(self) -> None:
        """Connected components of atoms, pinned components, and groups."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        n = self.n_atoms
        if self._edges:
            rows = np.concatenate([e[0] for e in self._edges])
            cols = np.concatenate([e[1] for e in self._edges])
        else:
            rows = cols = np.zeros(0, dtype=np.int64)
        graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n)).tocsr()
        _, labels = connected_components(graph, directed=False)
        self.labels = labels.astype(np.int64)
        for sid, why in self.required.items():
            if sid not in self.reached:
                self.pin(self.spaces[sid], why)
        self.groups = _make_groups(self)

    def labels_of(self, space: Space) -> np.ndarray:
        return self.labels[space.base : space.base + space.size]


def _make_groups(an: Analysis) -> list[Group]:
    n_comp = int(an.labels.max()) + 1 if an.n_atoms else 0
    reasons: dict[int, set[str]] = {}
    pinned = np.zeros(n_comp, dtype=bool)
    for space, pos, reason in an.pins:
        labs = an.labels_of(space) if pos is None else an.labels_of(space)[pos]
        for c in np.unique(labs):
            pinned[c] = True
            reasons.setdefault(int(c), set()).add(reason)
    comp_sources: dict[int, set[str]] = {}
    order = {n.name: i for i, n in enumerate(an.index.nodes)}
    src_spaces = sorted((s for s in an.spaces if s.source), key=lambda s: order.get(s.source or "", 0))
    for s in src_spaces:
        for c in np.unique(an.labels_of(s)):
            comp_sources.setdefault(int(c), set()).add(s.source or "")
    by_key: dict[tuple[str, ...], list[int]] = {}
    for c, srcs in comp_sources.items():
        by_key.setdefault(tuple(sorted(srcs, key=lambda x: order.get(x, 0))), []).append(c)
    comp_group = np.full(n_comp, -1, dtype=np.int64)
    groups: list[Group] = []
    for key in sorted(by_key, key=lambda k: [order.get(x, 0) for x in k]):
        comps = set(by_key[key])
        first = next(s for s in src_spaces if s.source == key[0])
        labs = an.labels_of(first)
        mine = np.isin(labs, np.fromiter(comps, dtype=np.int64))
        uniq, first_at = np.unique(labs[mine], return_index=True)
        units = uniq[np.argsort(first_at)].astype(np.int64)
        per_unit = int(np.sum(np.isin(labs, units[:1]))) if len(units) else 0
        gid = len(groups)
        comp_group[units] = gid
        why = sorted(set().union(*(reasons.get(int(c), set()) for c in units))) if len(units) else []
        groups.append(Group(f"g{gid}", key, units, pinned[units], per_unit, tuple(why)))
    for s in an.spaces:
        for g in np.unique(comp_group[an.labels_of(s)]):
            if g >= 0:
                groups[int(g)].spaces += (s.id,)
    return groups
