"""nn.Mlp computes act(fc1(x)) with the one op linear_gelu when fc1 is a plain Linear and act a plain GELU,
with the results of the two modules (bit for bit on cpu), and calls the modules otherwise."""
import numpy as np
import pytest

from refvit import functional as F
from refvit import nn
from refvit.autograd import Tensor
from refvit.bench.profile import _OpClock


def _run(mlp, x, upstream):
    """The output, the input's gradient, the parameters' gradients and the ops called (``{(op, step): calls}``)."""
    mlp.zero_grad()
    tensor = Tensor(x, requires_grad=True)
    with _OpClock() as clock:
        out = mlp(tensor)
        out.backward(upstream)
        _, calls = clock.take()
    grads = {name: p.grad for name, p in mlp.named_parameters()}
    return out.data, tensor.grad, grads, dict(calls)


def _unfused(mlp, x, upstream):
    """The same Mlp computed module by module: fc2(act(fc1(x)))."""
    mlp.zero_grad()
    tensor = Tensor(x, requires_grad=True)
    out = mlp.fc2(mlp.act(mlp.fc1(tensor)))
    out.backward(upstream)
    return out.data, tensor.grad, {name: p.grad for name, p in mlp.named_parameters()}


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_mlp_runs_linear_gelu_with_the_bits_of_the_modules(approximate, dtype):
    rng = np.random.default_rng(0)
    mlp = nn.Mlp(8, 24, dtype=dtype)
    mlp.act.approximate = approximate  # read at each call, as GELU.forward does
    x = rng.standard_normal((2, 4, 4, 8)).astype(dtype)
    upstream = rng.standard_normal((2, 4, 4, 8)).astype(dtype)
    out, dx, grads, calls = _run(mlp, x, upstream)
    assert calls[("linear_gelu", "forward")] == calls[("linear_gelu", "backward")] == 1
    assert calls[("linear", "forward")] == 1 and ("gelu", "forward") not in calls
    expected_out, expected_dx, expected_grads = _unfused(mlp, x, upstream)
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(dx, expected_dx)
    for name, grad in grads.items():
        np.testing.assert_array_equal(grad, expected_grads[name])


def test_structure_is_unchanged():
    mlp = nn.Mlp(4, 6, 3)
    assert [name for name, _ in mlp.named_children()] == ["fc1", "act", "drop1", "norm", "fc2", "drop2"]
    assert list(mlp.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert "(act): GELU(approximate='none')" in repr(mlp)


class LoggingGELU(nn.GELU):
    def forward(self, x):
        return F.relu(super().forward(x))  # something else than GELU: must be called


class ScaledLinear(nn.Linear):
    def forward(self, x):
        return F.mul(super().forward(x), np.asarray(2.0))  # float64, as the tests below


def _patched_act(mlp):
    mlp.act.forward = lambda x: F.relu(x)  # an instance attribute shadows the class's forward
    return mlp


@pytest.mark.parametrize("make, expected_op", [
    (lambda: nn.Mlp(4, 6, act_layer=nn.ReLU, dtype=np.float64), "relu"),
    (lambda: nn.Mlp(4, 6, act_layer=LoggingGELU, dtype=np.float64), "relu"),
    (lambda: _patched_act(nn.Mlp(4, 6, dtype=np.float64)), "relu"),
], ids=["relu", "gelu-subclass", "patched-forward"])
def test_other_activations_are_called_as_modules(make, expected_op):
    rng = np.random.default_rng(1)
    mlp = make()
    x, upstream = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    out, dx, grads, calls = _run(mlp, x, upstream)
    assert ("linear_gelu", "forward") not in calls and calls[(expected_op, "forward")] == 1
    expected_out, expected_dx, expected_grads = _unfused(mlp, x, upstream)
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(dx, expected_dx)


def test_a_linear_subclass_is_called_as_a_module():
    rng = np.random.default_rng(2)
    mlp = nn.Mlp(4, 6, dtype=np.float64)
    mlp.fc1 = ScaledLinear(4, 6, dtype=np.float64)
    x, upstream = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    out, dx, _, calls = _run(mlp, x, upstream)
    assert ("linear_gelu", "forward") not in calls and calls[("gelu", "forward")] == 1
    expected_out, expected_dx, _ = _unfused(mlp, x, upstream)
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(dx, expected_dx)


def test_the_backend_of_the_modules_is_kept():
    rng = np.random.default_rng(3)
    mlp = nn.Mlp(4, 6, dtype=np.float64).to("numpy")
    x, upstream = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    out, _, _, calls = _run(mlp, x, upstream)
    assert calls[("linear_gelu", "forward")] == 1
    mlp.fc1.backend = "cpu"  # fc1 and act on different backends: each module runs on its own
    _, _, _, calls = _run(mlp, x, upstream)
    assert ("linear_gelu", "forward") not in calls and calls[("gelu", "forward")] == 1
