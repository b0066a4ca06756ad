"""The removal being applied: which positions of every space stay, and edits to constants.

Surgery (``surgery.py``) builds one ``Cut`` per removal and hands it to the handlers' ``fix``:
``keep[space id]`` is a boolean mask over the space's positions (True = kept), so the kept
count of an axis is ``keep[id].sum()`` and a kept position ``p`` moves to ``keep[id][:p].sum()``.
Constants are edited in place unless other nodes read them, in which case the changed node
gets a clone (a shared constant never changes under a node that did not ask for it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from trtforge.pipeline.graph.pruning.deps import Analysis


@dataclass(frozen=True)
class Cut:
    """``keep``: per space id, the mask of positions that stay."""

    an: Analysis
    keep: Mapping[int, np.ndarray]

    def kept(self, tensor: str, axis: int) -> int | None:
        """How many positions of activation ``tensor`` stay on ``axis`` (None: not tracked)."""
        sp = self.an.space_of(tensor, axis)
        return None if sp is None else int(self.keep[sp.id].sum())

    def write_const(self, name: str, value: np.ndarray) -> None:
        """Replace the value of initializer or Constant-node output ``name`` (for every reader)."""
        idx = self.an.index
        if name in idx.inits:
            idx.inits[name].CopyFrom(numpy_helper.from_array(value, name))
        else:
            node = idx.const_nodes[name]
            del node.attribute[:]
            node.attribute.append(onnx.helper.make_attribute("value", numpy_helper.from_array(value, name)))
        idx._const_cache[name] = value

    def add_initializer(self, name: str, value: np.ndarray) -> str:
        """Append a new initializer ``name`` holding ``value``; return its name."""
        self.an.index.model.graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    def set_node_const(self, node: onnx.NodeProto, i: int, value: np.ndarray) -> None:
        """Give input ``i`` of ``node`` the constant ``value``, cloning it when others share it."""
        name = node.input[i]
        if self.an.index.users(name) > 1 or name in self.an.index.graph_outputs:
            node.input[i] = self.add_initializer(f"{name}__{node.name}", value)
            return
        self.write_const(name, value)
