"""The tape: record op calls on ``Tensor``s, then run their ``backward`` in reverse.

Record
    :func:`apply` calls ``op.forward`` on the arrays inside the ``Tensor`` arguments.
    When recording is on and a differentiable input requires a gradient, it keeps a
    :class:`Node` holding ``op.backward``, the op's cache and the parent ``Tensor`` of
    every differentiable input. The output ``Tensor`` points at its node.

Reverse
    :func:`run_backward` orders the nodes reachable from the output so that every node
    comes after all the nodes that consume its outputs, then walks them: a node's
    output gradients (zeros for an output that received none) go through the op's own
    ``backward``, which returns one gradient per differentiable input.

Accumulate
    A tensor used by several ops receives the sum of their gradients; a leaf tensor
    that requires a gradient adds it to ``.grad`` (which also sums over several
    ``backward`` calls). After a pass the caches are freed unless ``retain_graph=True``.

No gradient here is computed by this module: it only calls the ops' ``backward``.
"""
from __future__ import annotations

import inspect

import numpy as np

from refvit._validate import is_device_array
from refvit.autograd import tensor as _tensor
from refvit.autograd.grad_mode import is_grad_enabled

_signatures = {}


class Node:
    """One recorded op call: its ``backward``, its cache and where the gradients go.

    ``parents[i]`` belongs to ``op.DIFFERENTIABLE[i]``: ``None`` (a constant, or an
    input that needs no gradient), a ``Tensor``, or a tuple of ``Tensor``/``None`` for
    an input that is a sequence of arrays (``concatenate``).
    """

    __slots__ = ("name", "input_names", "backward_fn", "cache", "parents", "output_specs", "multi_output", "freed")

    def __init__(self, name, input_names, backward_fn, cache, parents, output_specs, multi_output):
        self.name = name
        self.input_names = input_names
        self.backward_fn = backward_fn
        self.cache = cache
        self.parents = parents
        self.output_specs = output_specs
        self.multi_output = multi_output
        self.freed = False

    def parent_nodes(self):
        for tensor in _flat_parents(self.parents):
            if tensor._node is not None:
                yield tensor._node

    def __repr__(self):
        return f"<Node {self.name}>"


def _flat_parents(parents):
    for parent in parents:
        if isinstance(parent, tuple):
            yield from (p for p in parent if p is not None)
        elif parent is not None:
            yield parent


def op_name(op) -> str:
    return getattr(op, "OP", None) or getattr(op, "__name__", type(op).__name__).rsplit(".", 1)[-1]


def _signature(op):
    signature = _signatures.get(op.forward)
    if signature is None:
        signature = _signatures[op.forward] = inspect.signature(op.forward)
    return signature


def _unwrap(value):
    """``Tensor`` -> its array; a list/tuple holding ``Tensor``s -> a tuple of arrays."""
    if isinstance(value, _tensor.Tensor):
        return value.data
    if isinstance(value, (list, tuple)) and any(isinstance(v, _tensor.Tensor) for v in value):
        return tuple(v.data if isinstance(v, _tensor.Tensor) else v for v in value)
    return value


def _parent_of(value):
    """The ``Tensor``(s) a differentiable argument sends its gradient to, or ``None``."""
    if isinstance(value, _tensor.Tensor):
        return value if value.requires_grad else None
    if isinstance(value, (list, tuple)):
        parents = tuple(v if isinstance(v, _tensor.Tensor) and v.requires_grad else None for v in value)
        return parents if any(p is not None for p in parents) else None
    return None


def _host(a):
    if is_device_array(a):
        return a.copy_to_host()
    return np.asarray(a)


def apply(op, *args, **kwargs):
    """Call ``op.forward(*args, **kwargs)`` on the arrays inside ``Tensor`` arguments; record it.

    ``op`` is anything with ``forward``, ``backward`` and ``DIFFERENTIABLE`` (an op module
    of :mod:`refvit.ops` or a structural op of :mod:`refvit.autograd.shape`). NumPy
    arrays are constants. ``Tensor`` arguments that are not differentiable (BatchNorm's
    running statistics) are passed as their own array, so in-place updates reach it.
    Returns a ``Tensor``, or a tuple of ``Tensor``s for an op with several outputs.
    """
    bound = _signature(op).bind(*args, **kwargs)
    parents = tuple(_parent_of(bound.arguments.get(name)) for name in op.DIFFERENTIABLE)
    for name, value in bound.arguments.items():
        bound.arguments[name] = _unwrap(value)
    out, cache = op.forward(*bound.args, **bound.kwargs)

    multi_output = isinstance(out, tuple)
    arrays = tuple(_host(o) for o in out) if multi_output else (_host(out),)
    record = is_grad_enabled() and any(p is not None for p in parents)
    node = None
    if record:
        specs = tuple((a.shape, a.dtype) for a in arrays)
        node = Node(op_name(op), tuple(op.DIFFERENTIABLE), op.backward, cache, parents, specs, multi_output)
    outputs = tuple(_tensor.Tensor._from_op(a, node, i) for i, a in enumerate(arrays))
    return outputs if multi_output else outputs[0]


def _topological_order(root):
    """Nodes reachable from ``root``, each before the nodes that produced its inputs."""
    post_order, visited = [], {root}
    stack = [(root, root.parent_nodes())]
    while stack:
        node, parents = stack[-1]
        for parent in parents:
            if parent not in visited:
                visited.add(parent)
                stack.append((parent, parent.parent_nodes()))
                break
        else:
            stack.pop()
            post_order.append(node)
    return post_order[::-1]


def _accumulate_leaf(tensor, grad):
    if tensor.grad is None:
        tensor.grad = np.array(grad, dtype=tensor.dtype, copy=True)
    else:
        tensor.grad += grad


def _check_gradient(node, name, tensor, grad):
    if tuple(np.shape(grad)) != tensor.shape:
        raise RuntimeError(
            f"autograd: {node.name}.backward returned a gradient of shape {tuple(np.shape(grad))} "
            f"for '{name}' of shape {tensor.shape}"
        )


def run_backward(root, grad, retain_graph=False):
    """Send ``grad`` (the gradient of some scalar with respect to ``root``) through the tape."""
    if root._node is None:
        _accumulate_leaf(root, grad)
        return
    pending = {root._node: [None] * len(root._node.output_specs)}
    pending[root._node][root._output_index] = grad
    for node in _topological_order(root._node):
        douts = pending.pop(node, None)
        if douts is None or all(d is None for d in douts):
            continue
        if node.freed:
            raise RuntimeError(
                f"autograd: the graph through '{node.name}' was freed by an earlier backward; "
                "call backward(..., retain_graph=True) to go through it more than once"
            )
        douts = [np.zeros(shape, dtype) if d is None else d for d, (shape, dtype) in zip(douts, node.output_specs)]
        grads = node.backward_fn(tuple(douts) if node.multi_output else douts[0], node.cache)
        if len(grads) != len(node.parents):
            raise RuntimeError(
                f"autograd: {node.name}.backward returned {len(grads)} gradients; expected {len(node.parents)}"
            )
        if not retain_graph:
            node.cache, node.freed = None, True
        for name, parent, grad_in in zip(node.input_names, node.parents, grads):
            if parent is None or grad_in is None:
                continue
            pairs = zip(parent, grad_in) if isinstance(parent, tuple) else ((parent, grad_in),)
            for tensor, g in pairs:
                if tensor is None or g is None:
                    continue
                g = _host(g)
                _check_gradient(node, name, tensor, g)
                if tensor._node is None:
                    _accumulate_leaf(tensor, g)
                    continue
                slots = pending.setdefault(tensor._node, [None] * len(tensor._node.output_specs))
                current = slots[tensor._output_index]
                slots[tensor._output_index] = g if current is None else current + g
