"""``refvit.torch_ports.build``: every ``*_nano`` model's port, holding refvit's weights, gives refvit's logits.

The ports themselves are checked against refvit in float64, block by block, in ``tests/models``; this
file checks the float32 weight transfer that ``refvit bench`` relies on before timing, and the
dense masked attention the NAT / DiNAT ports run there.
"""
import numpy as np
import pytest
import torch

from refvit.bench import model_worker
from refvit.models import list_models
from refvit.torch_ports import dinat
from refvit.torch_ports.build import official_names, torch_model

NANO = [name for name in list_models() if name.endswith("_nano")]


@pytest.mark.parametrize("name", NANO)
def test_the_port_loads_the_seeded_model_and_gives_its_logits(name):
    model = model_worker.seeded_model(name, 32)
    port = torch_model(name, model, 32)
    images, _ = model_worker.inputs(3, 32, seed=1)
    assert model_worker.check_logits(model, port, images) < 1e-4
    trainable = {key for key, _ in model.named_parameters()}
    assert set(official_names(port).values()) == trainable


def test_a_changed_weight_makes_the_check_fail():
    model = model_worker.seeded_model("smt_nano", 32)
    port = torch_model("smt_nano", model, 32)
    with torch.no_grad():
        next(iter(port.parameters())).add_(0.5)
    images, _ = model_worker.inputs(2, 32)
    with pytest.raises(AssertionError, match="logits"):
        model_worker.check_logits(model, port, images)


@pytest.mark.parametrize("size, kernel, dilation", [(7, 3, 1), (9, 3, 2), (6, 5, 1)])
def test_dense_masked_attention_equals_the_gathered_neighbourhoods(size, kernel, dilation):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, size, size + 1, 4, generator=generator, dtype=torch.float64) for _ in range(3))
    rpb = torch.randn(2, 2 * kernel - 1, 2 * kernel - 1, generator=generator, dtype=torch.float64)
    expected = dinat.neighborhood_attention(q, k, v, rpb, kernel, dilation)
    got = dinat.dense_neighborhood_attention(q, k, v, rpb, kernel, dilation)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)
