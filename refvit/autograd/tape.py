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
    ``backward``, which returns one gradient per differentiable input. An op whose ``backward``
    takes the keyword ``needs`` is told which of them are read: one bool per differentiable
    input, False for an input with no parent ``Tensor`` that requires a gradient, and may skip
    computing those (it returns ``None`` for them).

Versions
    When it records a node, :func:`apply` also notes the version counter and version of
    every ``Tensor`` (an input, or an output) whose array the op's cache holds: the
    cache keeps references, not copies, so changing one of those arrays before the
    backward would change the gradients. When the backward reaches the node it raises
    ``RuntimeError`` naming the op, the tensor and both versions if any of them changed
    (see ``_version`` in :mod:`refvit.autograd.tensor`). Outputs that are views of an
    input (structural ops) share that input's counter.

Accumulate
    A tensor used by several ops receives the sum of their gradients; a leaf tensor
    that requires a gradient adds it to ``.grad`` (which also sums over several
    ``backward`` calls). A leaf's first gradient that an op's backward made for the pass
    alone becomes its ``.grad`` without a copy (see :func:`_accumulate_leaf`). After a
    pass the caches are freed unless ``retain_graph=True``.

No gradient here is computed by this module: it only calls the ops' ``backward``.
"""
from __future__ import annotations

import inspect

import numpy as np

from refvit._validate import is_device_array
from refvit.autograd import tensor as _tensor
from refvit.autograd.grad_mode import is_grad_enabled

_signatures = {}
_names = {}
_required = {}
_positional = {}
_takes_needs = {}


class Node:
    """One recorded op call: its ``backward``, its cache and where the gradients go.

    ``parents[i]`` belongs to ``op.DIFFERENTIABLE[i]``: ``None`` (a constant, or an
    input that needs no gradient), a ``Tensor``, or a tuple of ``Tensor``/``None`` for
    an input that is a sequence of arrays (``concatenate``).

    ``saved`` lists ``(counter, version, what, shape)`` for each tensor whose array the
    cache holds (``what``: the argument's name, ``(name, i)`` in a sequence, or the
    output's index).

    ``needs``: the ``needs`` keyword its backward is called with (one bool per parent: whether it is
    not ``None``), or ``None`` for a backward that does not take it.
    """

    __slots__ = ("name", "input_names", "backward_fn", "cache", "parents", "output_specs", "multi_output", "freed",
                 "saved", "needs")

    def __init__(self, name, input_names, backward_fn, cache, parents, output_specs, multi_output, saved=(),
                 given=None):
        self.name = name
        self.input_names = input_names
        self.backward_fn = backward_fn
        self.cache = cache
        self.parents = parents
        self.output_specs = output_specs
        self.multi_output = multi_output
        self.freed = False
        self.saved = saved
        if not takes_needs(backward_fn):
            self.needs = None
        else:  # ``given``: the same flags when the caller has them already
            self.needs = given if given is not None else tuple(p is not None for p in parents)

    def check_versions(self):
        """Raise ``RuntimeError`` if a tensor the cache holds was changed in place since the forward.

        The versions of every ``Tensor`` argument and output were noted when the op ran; only a tensor
        whose version moved is then looked for among the arrays the cache holds (that search is the
        expensive part, and it is needed only when something changed)."""
        held = None
        for counter, version, what, shape, memory in self.saved:
            if counter.value == version:
                continue
            if held is None:
                cache = self.cache
                held = _cached_memory(cache if isinstance(cache, (tuple, list, dict)) else (cache,), set())
            if memory not in held:
                continue  # changed, but the backward does not read it (add, mean, reshape keep only shapes)
            if isinstance(what, str):
                what = f"input '{what}'"
            elif isinstance(what, tuple):
                what = f"input '{what[0]}[{what[1]}]'"
            else:
                what = f"output {what}" if self.multi_output else "its output"
            raise RuntimeError(
                f"autograd: a Tensor needed for the gradient of {self.name} ({what}, shape {shape}) was "
                f"modified in place after the forward (version {version} -> {counter.value}); compute the "
                "gradient before changing it, or change a copy"
            )

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


def takes_needs(backward_fn):
    """Whether ``backward_fn`` takes the keyword ``needs`` (read from its signature once per function)."""
    takes = _takes_needs.get(backward_fn)
    if takes is None:
        try:
            parameter = inspect.signature(backward_fn).parameters.get("needs")
        except (TypeError, ValueError):  # a callable without a signature Python can read
            parameter = None
        takes = _takes_needs[backward_fn] = parameter is not None and parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return takes


def op_name(op) -> str:
    return getattr(op, "OP", None) or getattr(op, "__name__", type(op).__name__).rsplit(".", 1)[-1]


def _signature(op):
    signature = _signatures.get(op.forward)
    if signature is None:
        signature = _signatures[op.forward] = inspect.signature(op.forward)
    return signature


def _names_of(op):
    """The parameter names of ``op.forward`` when every one of them may be passed by position or by
    keyword (all ops of :mod:`refvit.ops` and :mod:`refvit.autograd.shape`), else ``None``."""
    names = _names.get(op.forward, False)
    if names is False:
        parameters = _signature(op).parameters.values()
        plain = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters)
        _required[op.forward] = frozenset(p.name for p in parameters if p.default is inspect.Parameter.empty)
        # (names, how many leading parameters have no default) for the positional fast path of _bind;
        # a plain signature lists its parameters without a default first
        _positional[op.forward] = (tuple(p.name for p in parameters), len(_required[op.forward])) if plain else None
        names = _names[op.forward] = tuple(p.name for p in parameters) if plain else None
    return names


def _bind(op, args, kwargs):
    """``{name: value}`` of the arguments given, in the order of ``op.forward``'s parameters.

    The common cases (positional arguments only; positional arguments, then keywords, all named by a
    plain signature) are read off the cached parameter names; anything else goes through
    ``inspect.Signature.bind``, which also raises the ``TypeError`` of a bad call."""
    if not kwargs:
        positional = _positional.get(op.forward, False)
        if positional is False:
            _names_of(op)
            positional = _positional[op.forward]
        if positional is not None and positional[1] <= len(args) <= len(positional[0]):
            return dict(zip(positional[0], args))
    names = _names_of(op)
    if names is not None and len(args) <= len(names):
        arguments = dict(zip(names, args))
        found = 0
        for name in names[len(args):]:  # the keywords, in the order of the parameters
            if name in kwargs:
                arguments[name] = kwargs[name]
                found += 1
        # every keyword names a parameter not given by position, and nothing required is missing
        if found == len(kwargs) and _required[op.forward] <= arguments.keys():
            return arguments
    return dict(_signature(op).bind(*args, **kwargs).arguments)


def _parent_of(value):
    """The ``Tensor``(s) a differentiable argument sends its gradient to, or ``None``."""
    if isinstance(value, _tensor.Tensor):
        return value if value.requires_grad else None
    if isinstance(value, (list, tuple)):
        parents = tuple(v if isinstance(v, _tensor.Tensor) and v.requires_grad else None for v in value)
        return parents if any(p is not None for p in parents) else None
    return None


def _host(a):
    if type(a) is np.ndarray:
        return a
    if is_device_array(a):
        return a.copy_to_host()
    return np.asarray(a)


def _memory(array):
    """The object that owns ``array``'s memory (``array`` itself, or the base of a view)."""
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array


def _cached_memory(cache, found, depth=0):
    """Add to ``found`` the ``id`` of the memory of each non-empty NumPy array ``cache`` holds
    (in tuples, lists and dicts, a few levels deep)."""
    for item in cache.values() if isinstance(cache, dict) else cache:
        if isinstance(item, np.ndarray):
            if item.size:
                found.add(id(_memory(item)))
        elif depth < 2 and isinstance(item, (tuple, list, dict)):
            _cached_memory(item, found, depth + 1)
    return found


def _saved_versions(inputs, whats, outputs):
    """``(counter, version, what, shape, memory)`` of each argument and output ``Tensor``: its version when
    the op ran and the ``id`` of the memory it views, for :meth:`Node.check_versions`.

    Arrays are matched by the memory they view, so a slice of a saved array counts as saved (a
    conservative test: a view of another part of the same memory counts too). An ``id`` found among
    the cache's arrays is that very object: both were alive when the op ran. ``what`` is an argument
    name, ``(name, i)`` for the ``i``-th of a sequence, or an output's index. ``inputs`` and ``whats``
    are the argument ``Tensor``s and their ``what``, as :func:`_unwrapped` lists them.
    """
    saved = []
    for tensor, what in zip(inputs, whats):  # _note, inlined: three or four of these per recorded op
        counter, data = tensor._version_counter, tensor._data
        saved.append((counter, counter.value, what, data.shape, id(data if data.base is None else _memory(data))))
    for index, tensor in enumerate(outputs):
        saved.append(_note(tensor, index))
    return tuple(saved)


def _note(tensor, what):
    counter, data = tensor._version_counter, tensor._data
    return counter, counter.value, what, data.shape, id(data if data.base is None else _memory(data))


def _view_counter(array, inputs):
    """The version counter of the input ``Tensor`` whose memory ``array`` views, or ``None``."""
    if array.base is None or not inputs:
        return None
    memory = _memory(array)
    for tensor in inputs:
        if _memory(tensor._data) is memory:
            return tensor._version_counter
    return None


def apply(op, *args, **kwargs):
    """Call ``op.forward(*args, **kwargs)`` on the arrays inside ``Tensor`` arguments; record it.

    ``op`` is anything with ``forward``, ``backward`` and ``DIFFERENTIABLE`` (an op module
    of :mod:`refvit.ops` or a structural op of :mod:`refvit.autograd.shape`). NumPy
    arrays are constants. ``Tensor`` arguments that are not differentiable (BatchNorm's
    running statistics) are passed as their own array, so in-place updates reach it.
    Returns a ``Tensor``, or a tuple of ``Tensor``s for an op with several outputs.
    """
    positional = False if kwargs else _positional.get(op.forward, False)
    if positional and positional[1] <= len(args) <= len(positional[0]):  # _bind's first case, inline
        arguments = dict(zip(positional[0], args))
    else:
        arguments = _bind(op, args, kwargs)
    values, inputs, whats = _unwrapped(arguments)
    tensor_type = _tensor.Tensor
    parents, given, recorded = [], [], False
    for name in op.DIFFERENTIABLE:
        value = arguments.get(name)
        if isinstance(value, tensor_type):  # the common case, before the search through sequences
            parent = value if value.requires_grad else None
        else:
            parent = _parent_of(value)
        if parent is not None:
            recorded = True
            given.append(True)
        else:
            given.append(False)
        parents.append(parent)
    out, cache = op.forward(**values)

    from_op = tensor_type._from_op
    record = recorded and is_grad_enabled()
    node = None
    if record:
        node = Node(op_name(op), tuple(op.DIFFERENTIABLE), op.backward, cache, tuple(parents), None, False,
                    given=tuple(given))
    if not isinstance(out, tuple):  # one output
        array = out if type(out) is np.ndarray else _host(out)
        output = from_op(array, node, 0, None if array.base is None else _view_counter(array, inputs))
        if record:
            node.output_specs = ((array.shape, array.dtype),)
            node.saved = _saved_versions(inputs, whats, (output,))
        return output
    arrays = tuple(_host(o) for o in out)
    outputs = tuple(from_op(a, node, i, _view_counter(a, inputs)) for i, a in enumerate(arrays))
    if record:
        node.output_specs = tuple((a.shape, a.dtype) for a in arrays)
        node.multi_output = True
        node.saved = _saved_versions(inputs, whats, outputs)
    return outputs


def _unwrapped(arguments):
    """``({name: value}, [the Tensors among the values], [where each of them was])`` in one pass: a
    ``Tensor`` argument becomes its array, and a list/tuple holding ``Tensor``s a tuple with each
    ``Tensor`` replaced by its array. Where a ``Tensor`` was: the argument's name, or ``(name, i)`` for
    the ``i``-th item of a sequence."""
    tensor_type = _tensor.Tensor
    values, inputs, whats = {}, [], []
    for name, value in arguments.items():
        if isinstance(value, tensor_type):
            inputs.append(value)
            whats.append(name)
            value = value._data
        elif isinstance(value, (list, tuple)):
            found = False
            for i, v in enumerate(value):
                if isinstance(v, tensor_type):
                    inputs.append(v)
                    whats.append((name, i))
                    found = True
            if found:
                value = tuple(v._data if isinstance(v, tensor_type) else v for v in value)
        values[name] = value
    return values, inputs, whats


def _parent_node_list(node):
    """:meth:`Node.parent_nodes` as a list, in the same order (the walk below calls it once per node)."""
    found = []
    for parent in node.parents:
        if parent is None:
            continue
        if isinstance(parent, tuple):
            found.extend(p._node for p in parent if p is not None and p._node is not None)
        elif parent._node is not None:
            found.append(parent._node)
    return found


def _topological_order(root):
    """Nodes reachable from ``root``, each before the nodes that produced its inputs."""
    post_order, visited = [], {root}
    stack = [(root, iter(_parent_node_list(root)))]
    while stack:
        node, parents = stack[-1]
        for parent in parents:
            if parent not in visited:
                visited.add(parent)
                stack.append((parent, iter(_parent_node_list(parent))))
                break
        else:
            stack.pop()
            post_order.append(node)
    post_order.reverse()
    return post_order


def _accumulate_leaf(tensor, grad, taken=None):
    """Add ``grad`` to ``tensor.grad``.

    ``taken`` (a pass without ``retain_graph``): the ``id``s of the arrays this pass has already made
    some leaf's ``.grad``, and of the caller's own gradient. A first gradient that owns its memory,
    is writeable, has the leaf's dtype and is not among them was made by an op's backward for this
    pass alone: it becomes ``.grad`` without a copy. Such a ``.grad`` may still be read by the nodes
    the pass has not reached yet, so within the pass a further gradient makes a new sum instead of
    adding in place."""
    if tensor.grad is None:
        if (taken is not None and isinstance(grad, np.ndarray) and grad.base is None and grad.flags.writeable
                and grad.dtype == tensor.dtype and id(grad) not in taken):
            taken.add(id(grad))
            tensor.grad = grad
        else:
            tensor.grad = np.array(grad, dtype=tensor.dtype, copy=True)
    elif taken is not None and id(tensor.grad) in taken:
        tensor.grad = (tensor.grad + grad).astype(tensor.dtype, copy=False)
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
    taken = None if retain_graph else {id(grad)}  # the caller's array is never taken over
    for node in _topological_order(root._node):
        douts = pending.pop(node, None)
        if douts is None:
            continue
        for d in douts:
            if d is not None:
                break
        else:  # no output of this node received a gradient
            continue
        if node.freed:
            raise RuntimeError(
                f"autograd: the graph through '{node.name}' was freed by an earlier backward; "
                "call backward(..., retain_graph=True) to go through it more than once"
            )
        node.check_versions()
        if node.multi_output:
            dout = tuple(np.zeros(shape, dtype) if d is None else d
                         for d, (shape, dtype) in zip(douts, node.output_specs))
        else:
            dout = douts[0]  # not None: checked above
        if node.needs is None:
            grads = node.backward_fn(dout, node.cache)
        else:
            grads = node.backward_fn(dout, node.cache, needs=node.needs)
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
                if type(g) is not np.ndarray:
                    g = _host(g)
                if g.shape != tensor._data.shape:
                    _check_gradient(node, name, tensor, g)
                if tensor._node is None:
                    _accumulate_leaf(tensor, g, taken)
                    continue
                slots = pending.get(tensor._node)
                if slots is None:
                    slots = pending[tensor._node] = [None] * len(tensor._node.output_specs)
                current = slots[tensor._output_index]
                slots[tensor._output_index] = g if current is None else current + g
