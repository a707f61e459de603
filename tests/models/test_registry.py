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
