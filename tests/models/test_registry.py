import pytest

from refvit.models import _registry, create_model, list_models, model_info, register_model


def test_unknown_model_lists_available():
    with pytest.raises(ValueError, match="create_model: unknown model 'nope'; available:"):
        create_model("nope")


def test_register_and_create(monkeypatch):
    monkeypatch.setattr(_registry, "_MODELS", {})

    @register_model("toy", 32, "a toy")
    def toy_nano(num_classes=10):
        return ("toy", num_classes)

    assert "toy_nano" in list_models() and list_models("toy") == ["toy_nano"]
    assert create_model("toy_nano", num_classes=3) == ("toy", 3)
    assert model_info("toy_nano").img_size == 32
    with pytest.raises(ValueError, match="already registered"):
        register_model("toy", 32)(toy_nano)


def test_shared_arguments_are_checked_before_the_constructor_runs(monkeypatch):
    monkeypatch.setattr(_registry, "_MODELS", {})
    built = []

    @register_model("toy", 32, "a toy")
    def toy_nano(num_classes=10, drop_path_rate=0.0):
        built.append(num_classes)
        return ("toy", num_classes)

    with pytest.raises(ValueError, match=r"toy_nano: 'num_classes' must be an integer >= 0 and <= 100000 \(the "
                                         r"largest head refvit builds\); got 1000000000"):
        create_model("toy_nano", num_classes=10 ** 9)
    with pytest.raises(TypeError, match="toy_nano: 'num_classes' must be an integer; got float 2.5"):
        create_model("toy_nano", num_classes=2.5)
    with pytest.raises(ValueError, match=r"toy_nano: 'drop_path_rate' must be a probability in \[0, 1\); got 2.0"):
        create_model("toy_nano", drop_path_rate=2)
    assert built == []
    assert create_model("toy_nano", num_classes=0) == ("toy", 0)


def test_create_model_names_the_model():
    assert create_model("nat_nano").model_name == "nat_nano"
