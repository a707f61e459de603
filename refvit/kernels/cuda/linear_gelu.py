"""Linear then GELU on the GPU: the kernels of :mod:`refvit.kernels.cuda.linear` and
:mod:`refvit.kernels.cuda.gelu`, one after the other, on device arrays.

* forward: ``h = X W^T + b`` (linear's tiled product, the bias added on store), then ``y = gelu(h)``
  (gelu's one thread per element); ``h`` is kept for the backward;
* backward: ``dh = dout * gelu'(h)`` (gelu's backward kernel), then linear's backward on ``dh``:
  ``dX = dh W``, ``dW = dh^T X`` and the column sums of ``dh``.

Nothing is fused on the GPU: the intermediates never leave the device, and a fused kernel would have
to earn its place with a measured gain.
"""
from refvit.kernels.cuda import gelu, linear
from refvit.kernels.cuda._device import any_device, to_device, to_host_unless


def forward(x, weight, bias, tanh_approx):
    on_device = any_device(x, weight, bias)
    x, weight, bias = to_device(x, weight, bias)
    pre_activation = linear.forward(x, weight, bias)
    y = gelu.forward(pre_activation, tanh_approx)
    return to_host_unless(on_device, y, pre_activation)


def backward(dout, x, weight, pre_activation, tanh_approx):
    on_device = any_device(dout, x, weight, pre_activation)
    dout, x, weight, pre_activation = to_device(dout, x, weight, pre_activation)
    dpre_activation = gelu.backward(dout, pre_activation, tanh_approx)
    dx, dweight, dbias = linear.backward(dpre_activation, x, weight)
    return to_host_unless(on_device, dx, dweight, dbias)
