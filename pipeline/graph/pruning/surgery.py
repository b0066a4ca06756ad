"""Surgery: remove a set of units from a prepared model, consistently.

Initializer axes are sliced (weights, biases, BN parameters, per-channel constants), the
static shapes recorded in ``value_info`` follow, and the fixups the handlers left are
applied: Reshape target shapes, Split sizes, Slice bounds and Conv ``group`` counts.
A constant shared with nodes whose value must not change is cloned for the node that
changes, never edited under the others.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

from pipeline.graph.pruning.deps import Analysis, Fixup, Space


def apply_removal(an: Analysis, remove: np.ndarray) -> onnx.ModelProto:
    """Remove the units (component ids) in ``remove`` from ``an.index.model`` in place; return it."""
    keep = {s.id: ~np.isin(an.labels_of(s), remove) for s in an.spaces}
    _slice_params(an, keep)
    _update_shapes(an, keep)
    nodes = {n.name: n for n in an.index.nodes}
    for fix in an.fixups:
        _FIXERS[fix.kind](an, nodes[fix.node], fix, keep)
    return an.index.model


def kept(an: Analysis, keep: dict[int, np.ndarray], tensor: str, axis: int) -> int | None:
    sp = an.space_of(tensor, axis)
    return None if sp is None else int(keep[sp.id].sum())


def _slice_params(an: Analysis, keep: dict[int, np.ndarray]) -> None:
    by_tensor: dict[str, list[Space]] = defaultdict(list)
    for s in an.spaces:
        if s.kind == "param" and not keep[s.id].all():
            by_tensor[s.tensor].append(s)
    for name, spaces in by_tensor.items():
        value = an.index.const(name)
        assert value is not None
        for s in spaces:
            value = np.take(value, np.flatnonzero(keep[s.id]), axis=s.axis)
        _write_const(an, name, np.ascontiguousarray(value))
        _retype(an, name, value.shape)


def _retype(an: Analysis, name: str, shape: tuple[int, ...]) -> None:
    """Keep value_info / graph-input entries that describe a sliced initializer in step with it."""
    graph = an.index.model.graph
    for vi in list(graph.value_info) + list(graph.input):
        if vi.name == name and vi.type.tensor_type.HasField("shape"):
            dims = vi.type.tensor_type.shape.dim
            if len(dims) == len(shape):
                for d, n in zip(dims, shape):
                    d.ClearField("dim_param")
                    d.dim_value = int(n)


def _write_const(an: Analysis, name: str, value: np.ndarray) -> None:
    idx = an.index
    if name in idx.inits:
        idx.inits[name].CopyFrom(numpy_helper.from_array(value, name))
    else:
        node = idx.const_nodes[name]
        del node.attribute[:]
        node.attribute.append(onnx.helper.make_attribute("value", numpy_helper.from_array(value, name)))
    idx._const_cache[name] = value


def _set_node_const(an: Analysis, node: onnx.NodeProto, i: int, value: np.ndarray) -> None:
    """Give input ``i`` of ``node`` the constant ``value``, cloning it when other nodes share it."""
    name = node.input[i]
    if an.index.users(name) > 1 or name in an.index.graph_outputs:
        new = f"{name}__{node.name}"
        an.index.model.graph.initializer.append(numpy_helper.from_array(value, new))
        node.input[i] = new
        return
    _write_const(an, name, value)


def _update_shapes(an: Analysis, keep: dict[int, np.ndarray]) -> None:
    changed = {
        (s.tensor, s.axis): int(keep[s.id].sum())
        for s in an.spaces
        if s.kind == "act" and not keep[s.id].all()
    }
    if not changed:
        return
    graph = an.index.model.graph
    for vi in list(graph.value_info) + list(graph.output):
        dims = vi.type.tensor_type.shape.dim
        for axis in range(len(dims)):
            n = changed.get((vi.name, axis))
            if n is not None:
                dims[axis].ClearField("dim_param")
                dims[axis].dim_value = n


def _fix_reshape(an: Analysis, node: onnx.NodeProto, fix: Fixup, keep: dict[int, np.ndarray]) -> None:
    shape = an.index.const(node.input[1])
    n = kept(an, keep, node.output[0], fix.data["axis"])
    if shape is None or n is None:
        return
    j = fix.data["axis"]
    if int(shape[j]) > 0 and int(shape[j]) != n:
        new = shape.copy()
        new[j] = n
        _set_node_const(an, node, 1, new)


def _fix_split(an: Analysis, node: onnx.NodeProto, fix: Fixup, keep: dict[int, np.ndarray]) -> None:
    axis = fix.data["axis"]
    sizes = []
    for out in node.output:
        n = kept(an, keep, out, axis)
        shape = an.index.shape(out)
        sizes.append(n if n is not None else int((shape or [0] * (axis + 1))[axis] or 0))
    arr = np.array(sizes, dtype=np.int64)
    for a in node.attribute:
        if a.name == "split":
            del a.ints[:]
            a.ints.extend(sizes)
            return
    for k in range(len(node.attribute) - 1, -1, -1):
        if node.attribute[k].name == "num_outputs":
            del node.attribute[k]
    if len(node.input) > 1 and node.input[1]:
        _set_node_const(an, node, 1, arr)
        return
    name = f"{node.name}__split"
    an.index.model.graph.initializer.append(numpy_helper.from_array(arr, name))
    node.input.append(name)


def _fix_slice(an: Analysis, node: onnx.NodeProto, fix: Fixup, keep: dict[int, np.ndarray]) -> None:
    sp = an.space_of(fix.data["tensor"], fix.data["axis"])
    if sp is None or keep[sp.id].all():
        return
    k = fix.data["index"]
    starts, ends = an.index.const(node.input[1]), an.index.const(node.input[2])
    assert starts is not None and ends is not None
    lo, hi, _ = slice(int(starts[k]), int(ends[k])).indices(sp.size)
    mask = keep[sp.id]
    new_lo = int(mask[:lo].sum())
    new_hi = new_lo + int(mask[lo : max(lo, hi)].sum())
    s2, e2 = starts.copy(), ends.copy()
    s2[k], e2[k] = new_lo, new_hi
    _set_node_const(an, node, 1, s2)
    _set_node_const(an, node, 2, e2)


def _fix_group(an: Analysis, node: onnx.NodeProto, fix: Fixup, keep: dict[int, np.ndarray]) -> None:
    n_in = int(keep[fix.data["in_space"]].sum())
    for a in node.attribute:
        if a.name == "group":
            a.i = n_in // int(fix.data["channels_per_group"])


_FIXERS = {"reshape": _fix_reshape, "split": _fix_split, "slice": _fix_slice, "group": _fix_group}
