"""Neighbourhood attention written the way a user would: dense attention under a window mask, in
plain NumPy (with its own backward) and in torch (autograd). ``bug=`` plants one mistake of the
window rule; the conformance tests check that the kit rejects each of them where it should."""
from __future__ import annotations

import itertools

import numpy as np

BUGS = ("border-off-by-one", "rpb-without-dilation", "equal-dilation-groups", "causal-one-late",
        "stride-leader-at-block-start")


def axis_window(i, length, kernel, dilation, stride, causal, bug=None):
    """Key indices and bias indices of query ``i`` along one axis."""
    group, position = i % dilation, i // dilation
    group_length = length // dilation if bug == "equal-dilation-groups" else -(-(length - group) // dilation)
    block = (position // stride) * stride
    if causal:
        leader = min(block + stride - 1, group_length - 1)
        start = max(leader - kernel + 1, 0)
        last = min(position + 1, group_length - 1) if bug == "causal-one-late" else position
    else:
        offset = 0 if bug == "stride-leader-at-block-start" else stride // 2
        leader = min(block + offset, group_length - 1)
        highest = max(group_length - kernel - 1, 0) if bug == "border-off-by-one" else group_length - kernel
        start = min(max(leader - kernel // 2, 0), highest)
        last = start + kernel - 1
    keys = [group + dilation * t for t in range(start, last + 1)]
    if bug == "rpb-without-dilation":
        bias = [min(max(j - i + kernel - 1, 0), 2 * kernel - 2) for j in keys]
    else:
        bias = [(j - i) // dilation + kernel - 1 for j in keys]
    return keys, bias


def window_tables(spatial, kernel, dilation, stride, causal, bug=None):
    """``mask (N, N)`` of allowed (query, key) pairs and ``bias_index (N, N, dims)``, tokens row-major."""
    dims = len(spatial)
    per_axis = lambda value: tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims  # noqa: E731
    kernel, dilation, stride, causal = map(per_axis, (kernel, dilation, stride, causal))
    tokens = list(itertools.product(*[range(n) for n in spatial]))
    flat = {token: n for n, token in enumerate(tokens)}
    mask = np.zeros((len(tokens), len(tokens)), dtype=bool)
    bias_index = np.zeros((len(tokens), len(tokens), dims), dtype=np.int64)
    for query in tokens:
        axes = [axis_window(query[a], spatial[a], kernel[a], dilation[a], stride[a], causal[a], bug)
                for a in range(dims)]
        for choice in itertools.product(*[range(len(keys)) for keys, _ in axes]):
            key = tuple(axes[a][0][c] for a, c in enumerate(choice))
            mask[flat[query], flat[key]] = True
            bias_index[flat[query], flat[key]] = [axes[a][1][c] for a, c in enumerate(choice)]
    return mask, bias_index


def _bias(rpb, mask, bias_index):
    """``(heads, N, N)`` bias gathered from ``rpb (heads, *2k-1)``; -inf outside the windows."""
    gathered = rpb[(slice(None),) + tuple(bias_index[..., a] for a in range(bias_index.shape[-1]))]
    return np.where(mask, gathered, -np.inf) if rpb is not None else None


def na_numpy(q, k, v, kernel_size, dilation=1, is_causal=False, scale=None, stride=1, rpb=None, bug=None):
    """Heads-first ``(B, heads, *spatial, d)``; forward only (see :func:`na_numpy_backward`)."""
    return _forward(q, k, v, kernel_size, dilation, is_causal, scale, stride, rpb, bug)[0]


def _forward(q, k, v, kernel_size, dilation, is_causal, scale, stride, rpb, bug):
    spatial, d = q.shape[2:-1], q.shape[-1]
    mask, bias_index = window_tables(spatial, kernel_size, dilation, stride, is_causal, bug)
    flat = lambda x: x.reshape(x.shape[0], x.shape[1], -1, d)  # noqa: E731
    logits = (d ** -0.5 if scale is None else scale) * flat(q) @ np.swapaxes(flat(k), -1, -2)
    logits = np.where(mask, logits, -np.inf)
    if rpb is not None:
        logits = logits + _bias(rpb, mask, bias_index)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return (probs @ flat(v)).reshape(q.shape), probs, mask, bias_index


def na_numpy_backward(dout, q, k, v, kernel_size, dilation=1, is_causal=False, scale=None, stride=1, rpb=None,
                      bug=None):
    """``(dq, dk, dv)``, plus ``drpb`` when ``rpb`` is given: the ``backward_fn`` of :func:`na_numpy`."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    _, probs, mask, bias_index = _forward(q, k, v, kernel_size, dilation, is_causal, scale, stride, rpb, bug)
    d = q.shape[-1]
    flat = lambda x: x.reshape(x.shape[0], x.shape[1], -1, d)  # noqa: E731
    g = flat(dout)
    dprobs = g @ np.swapaxes(flat(v), -1, -2)
    dlogits = probs * (dprobs - (dprobs * probs).sum(-1, keepdims=True))
    dq = scale * dlogits @ flat(k)
    dk = scale * np.swapaxes(dlogits, -1, -2) @ flat(q)
    dv = np.swapaxes(probs, -1, -2) @ g
    grads = [dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape)]
    if rpb is not None:
        drpb = np.zeros_like(rpb)
        queries, keys = np.nonzero(mask)
        per_pair = dlogits.sum(0)[:, queries, keys]  # (heads, pairs)
        for h in range(rpb.shape[0]):
            np.add.at(drpb[h], tuple(bias_index[queries, keys, a] for a in range(bias_index.shape[-1])), per_pair[h])
        grads.append(drpb)
    return tuple(grads)


def heads_last(x):
    return np.moveaxis(x, -2, 1)


def heads_first_to_last(x):
    return np.moveaxis(x, 1, -2)


def na2d_natten_numpy(query, key, value, kernel_size, dilation=1, is_causal=False, rpb=None, scale=None, stride=1):
    """NATTEN's argument names and heads-last ``(B, H, W, heads, d)`` layout around :func:`na_numpy`."""
    out = na_numpy(heads_last(query), heads_last(key), heads_last(value), kernel_size, dilation, is_causal, scale,
                   stride, rpb)
    return heads_first_to_last(out)


def na2d_natten_numpy_backward(dout, query, key, value, kernel_size, dilation=1, is_causal=False, rpb=None,
                               scale=None, stride=1):
    grads = na_numpy_backward(heads_last(dout), heads_last(query), heads_last(key), heads_last(value), kernel_size,
                              dilation, is_causal, scale, stride, rpb)
    return tuple(heads_first_to_last(g) for g in grads[:3]) + tuple(grads[3:])


def na_torch(q, k, v, kernel_size, dilation=1, is_causal=False, scale=None, stride=1, rpb=None, bug=None):
    """:func:`na_numpy` in torch, differentiated by autograd."""
    import torch

    spatial, d = tuple(q.shape[2:-1]), q.shape[-1]
    mask, bias_index = window_tables(spatial, kernel_size, dilation, stride, is_causal, bug)
    flat = lambda x: x.reshape(x.shape[0], x.shape[1], -1, d)  # noqa: E731
    logits = (d ** -0.5 if scale is None else scale) * flat(q) @ flat(k).transpose(-1, -2)
    if rpb is not None:
        index = tuple(torch.from_numpy(bias_index[..., a]) for a in range(bias_index.shape[-1]))
        logits = logits + rpb[(slice(None),) + index]
    logits = logits.masked_fill(torch.from_numpy(~mask), float("-inf"))
    return (torch.softmax(logits, dim=-1) @ flat(v)).reshape(q.shape)


def na2d_causal_one_late_torch(q, k, v, kernel_size, dilation=1, is_causal=False, scale=None, stride=1, rpb=None):
    """:func:`na_torch` whose causal windows reach one key past the query."""
    return na_torch(q, k, v, kernel_size, dilation, is_causal, scale, stride, rpb, bug="causal-one-late")


def na2d_border_off_by_one_numpy(q, k, v, kernel_size, dilation=1, is_causal=False, scale=None, stride=1, rpb=None):
    """:func:`na_numpy` whose windows stop one key short of the far border."""
    return na_numpy(q, k, v, kernel_size, dilation, is_causal, scale, stride, rpb, bug="border-off-by-one")


def na2d_natten_torch(query, key, value, kernel_size, dilation=1, is_causal=False, scale=None, stride=1):
    """NATTEN 0.20's call (no ``rpb``) on heads-last torch tensors around :func:`na_torch`."""
    def first(x):
        return x.permute(0, 3, 1, 2, 4)

    out = na_torch(first(query), first(key), first(value), kernel_size, dilation, is_causal, scale, stride)
    return out.permute(0, 2, 3, 1, 4)
