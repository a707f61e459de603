"""Image folders too large for the memory budget are memory-mapped from a cache folder: in these
tests it is a fresh temporary folder, never the user's ``~/.cache``."""
import pytest


@pytest.fixture(autouse=True)
def _image_folder_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("REFVIT_CACHE_DIR", str(tmp_path_factory.mktemp("refvit-cache")))
    monkeypatch.delenv("REFVIT_IMAGE_MEMORY_BYTES", raising=False)
