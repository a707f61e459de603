"""Model arguments and inputs (issue 13, items 8 and 10): errors name the model and what it expects."""
import numpy as np
import pytest

from refvit.autograd import Tensor
from refvit.models import MAX_NUM_CLASSES, create_model
from refvit.models.dinat import DiNAT, NANO
from refvit.nn import random as nn_random

NANOS = ["nat_nano", "dinat_nano", "cswin_nano", "smt_nano", "dualvit_nano", "coatnet_nano"]


@pytest.fixture(scope="module")
def models():
    nn_random.seed(0)
    built = {name: create_model(name, num_classes=3) for name in NANOS}
    for model in built.values():
        model.eval()
    return built


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(num_classes=2.5), TypeError, "dinat_nano: 'num_classes' must be an integer; got float 2.5"),
    (dict(num_classes=True), TypeError, "dinat_nano: 'num_classes' must be an integer; got bool True"),
    (dict(num_classes=1e9), TypeError, "dinat_nano: 'num_classes' must be an integer"),
    (dict(num_classes=10 ** 9), ValueError, rf"dinat_nano: 'num_classes' must be an integer >= 0 and <= "
                                            rf"{MAX_NUM_CLASSES} \(the largest head refvit builds\); got 1000000000"),
    (dict(num_classes=-1), ValueError, "dinat_nano: 'num_classes' must be an integer >= 0"),
    (dict(drop_path_rate=2), ValueError, r"dinat_nano: 'drop_path_rate' must be a probability in \[0, 1\); got 2"),
    (dict(drop_path_rate=1.0), ValueError, r"dinat_nano: 'drop_path_rate' must be a probability in \[0, 1\)"),
    (dict(drop_rate=-0.1), ValueError, "dinat_nano: 'drop_rate' must be a probability"),
    (dict(in_chans=0), ValueError, "dinat_nano: 'in_chans' must be an integer >= 1; got 0"),
    (dict(in_chans=3.0), TypeError, "dinat_nano: 'in_chans' must be an integer"),
    (dict(img_size=0), ValueError, "dinat_nano: 'img_size' must be an integer >= 1; got 0"),
    (dict(img_size=32.0), TypeError, "dinat_nano: 'img_size' must be an integer"),
])
def test_create_model_checks_shared_arguments(kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        create_model("dinat_nano", **kwargs)
    assert "DropPath" not in str(info.value)


@pytest.mark.parametrize("name", NANOS)
def test_every_model_checks_its_arguments_when_built_directly(name):
    with pytest.raises(ValueError, match=rf"{name}: 'num_classes' must be an integer >= 0 and <= {MAX_NUM_CLASSES}"):
        create_model(name, num_classes=MAX_NUM_CLASSES + 1)
    with pytest.raises(ValueError, match=rf"{name}: 'drop_path_rate' must be a probability in \[0, 1\)"):
        create_model(name, drop_path_rate=2)


def test_the_model_class_names_itself():
    with pytest.raises(ValueError, match=r"DiNAT: 'drop_path_rate' must be a probability in \[0, 1\); got 2"):
        DiNAT(**NANO, drop_path_rate=2)
    with pytest.raises(TypeError, match="DiNAT: 'num_classes' must be an integer"):
        DiNAT(**NANO, num_classes=2.5)


def test_numpy_integer_arguments_are_accepted():
    model = create_model("nat_nano", num_classes=np.int64(4), in_chans=np.int32(1))
    assert model.head.weight.shape[0] == 4 and model.in_chans == 1


@pytest.mark.parametrize("name", NANOS)
def test_nchw_input_is_named(models, name):
    x = np.zeros((8, 3, 32, 32), np.float32)
    with pytest.raises(ValueError, match=rf"^{name}: expected images of shape \(B, .*, 3\).*, channels-last, float32; "
                                         rf"got \(8, 3, 32, 32\) float32 \(this looks like NCHW: use "
                                         rf"x.transpose\(0, 2, 3, 1\)\)$"):
        models[name](x)


@pytest.mark.parametrize("name", NANOS)
def test_wrong_channel_count_is_named(models, name):
    with pytest.raises(ValueError, match=rf"^{name}: expected images of shape .*got \(2, 32, 32, 1\) float32 "
                                         rf"\(the model was built with in_chans=3\)$"):
        models[name](np.zeros((2, 32, 32, 1), np.float32))


@pytest.mark.parametrize("name", NANOS)
def test_integer_images_are_refused_with_a_conversion_hint(models, name):
    with pytest.raises(TypeError, match=rf"^{name}: expected images .*got \(2, 32, 32, 3\) uint8 \(convert the images "
                                        rf"to float, e.g. x.astype\(np.float32\) / 255"):
        models[name](np.zeros((2, 32, 32, 3), np.uint8))


@pytest.mark.parametrize("name", NANOS)
def test_single_image_is_named(models, name):
    with pytest.raises(ValueError, match=rf"{name}: .*got \(32, 32, 3\) float32 \(a single image\? add the batch "
                                         rf"axis: x\[None\]\)"):
        models[name](np.zeros((32, 32, 3), np.float32))


def test_coatnet_names_its_fixed_size(models):
    model = models["coatnet_nano"]
    for size in (64, 16, 33):
        with pytest.raises(ValueError, match=rf"^coatnet_nano: expected images of shape \(B, 32, 32, 3\), "
                                             rf"channels-last, float32; got \(1, {size}, {size}, 3\)"):
            model(np.zeros((1, size, size, 3), np.float32))
    assert model(np.zeros((1, 40, 40, 3), np.float32)).shape == (1, 3)  # the same stage maps as 32x32


@pytest.mark.parametrize("name", NANOS)
def test_a_dtype_other_than_the_parameters_is_named(models, name):
    with pytest.raises(TypeError, match=rf"^{name}: expected images .*, channels-last, float32; got \(2, 32, 32, 3\) "
                                        rf"float64 \(the model's parameters are float32: use x.astype\(np.float32\), "
                                        rf"or model.to\(np.float64\)\)$"):
        models[name](np.zeros((2, 32, 32, 3)))


@pytest.mark.parametrize("name", NANOS)
def test_valid_inputs_still_run(models, name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
    out = models[name](x)
    assert out.shape == (2, 3) and out.dtype == np.float32
    tensor_out = models[name](Tensor(x))
    np.testing.assert_array_equal(tensor_out.data, out.data if hasattr(out, "data") else out)
    model64 = create_model(name, num_classes=3, dtype=np.float64)
    model64.eval()
    assert model64(x.astype(np.float64)).dtype == np.float64


@pytest.mark.parametrize("name", NANOS)
def test_one_channel_models_take_grey_images(name):
    model = create_model(name, num_classes=2, in_chans=1)
    model.eval()
    assert model(np.zeros((2, 32, 32, 1), np.float32)).shape == (2, 2)
