"""refvit.kernels.cpu._stale_cache: a cached kernel is compiled afresh when a file it imports changes."""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

from refvit.kernels.cpu import _stale_cache

HELPER = """
from numba import njit

OFFSET = {offset}


@njit(cache=True)
def shift(x):
    return x + OFFSET
"""
KERNEL = """
from numba import njit

from stalepkg.kernels.helper import shift


@njit(cache=True)
def kernel(x):
    return 2 * shift(x)
"""
UNRELATED = """
from numba import njit


@njit(cache=True)
def alone(x):
    return x - 1
"""
RUN = """
import sys
sys.path.insert(0, {top!r})
if {refresh}:
    from refvit.kernels.cpu._stale_cache import refresh
    refresh({tree!r}, {top!r}, "stalepkg")
from stalepkg.kernels.kernel import kernel
from stalepkg.kernels.unrelated import alone
print(kernel(1), alone(1))
"""


def _package(tmp_path, offset):
    tree = tmp_path / "stalepkg" / "kernels"
    tree.mkdir(parents=True, exist_ok=True)
    (tmp_path / "stalepkg" / "__init__.py").write_text("")
    (tree / "__init__.py").write_text("")
    helper = tree / "helper.py"
    helper.write_text(HELPER.format(offset=offset))
    (tree / "kernel.py").write_text(KERNEL)
    (tree / "unrelated.py").write_text(UNRELATED)
    return tree


def _edit_offset(tree, offset):
    helper = tree / "helper.py"
    before = helper.stat().st_mtime
    helper.write_text(HELPER.format(offset=offset))
    os.utime(helper, (before + 10, before + 10))  # a new mtime even on a coarse clock


def _run(tmp_path, tree, refresh):
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)  # the in-tree __pycache__ folders of the temporary package
    code = RUN.format(top=str(tmp_path), tree=str(tree), refresh=refresh)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


def test_without_refresh_numba_keeps_the_stale_kernel(tmp_path):
    # Numba's own behaviour, which the module exists for: the kernel's cache ignores its import's edit.
    tree = _package(tmp_path, 1)
    assert _run(tmp_path, tree, False) == ["4", "0"]
    _edit_offset(tree, 2)
    assert _run(tmp_path, tree, False) == ["4", "0"]


def test_refresh_recompiles_the_kernels_that_import_the_edited_file(tmp_path):
    tree = _package(tmp_path, 1)
    assert _run(tmp_path, tree, True) == ["4", "0"]
    cache = tree / "__pycache__"
    unrelated_before = sorted(p.name for p in cache.glob("unrelated.*.nb*"))
    assert unrelated_before
    _edit_offset(tree, 2)
    assert _run(tmp_path, tree, True) == ["6", "0"]
    # the module that imports nothing that changed kept its cache files
    assert sorted(p.name for p in cache.glob("unrelated.*.nb*")) == unrelated_before
    stamps = json.loads((cache / _stale_cache.STAMP_FILE).read_text())
    assert {"helper", "kernel", "unrelated", _stale_cache.TREE_KEY} <= stamps.keys()


def _cache_folder(tree):
    """Where Numba caches the temporary package's kernels in this process (``__pycache__`` beside them, or
    under ``NUMBA_CACHE_DIR`` when the user set it)."""
    cache = pathlib.Path(_stale_cache.cache_dir(str(tree / "kernel.py")))
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def test_refresh_removes_only_stale_modules_and_stops_early_when_nothing_changed(tmp_path):
    tree = _package(tmp_path, 1)
    cache = _cache_folder(tree)
    for stem in ("helper", "kernel", "unrelated"):
        (cache / f"{stem}.f-3.py311.nbi").write_text("")
        (cache / f"{stem}.f-3.py311.1.nbc").write_text("")
    first = _stale_cache.refresh(str(tree), str(tmp_path), "stalepkg")
    assert len(first) == 6  # no stamps yet: every module's files go
    for stem in ("helper", "kernel", "unrelated"):
        (cache / f"{stem}.f-3.py311.nbi").write_text("")
    assert _stale_cache.refresh(str(tree), str(tmp_path), "stalepkg") == []  # nothing changed
    _edit_offset(tree, 5)
    removed = sorted(os.path.basename(p) for p in _stale_cache.refresh(str(tree), str(tmp_path), "stalepkg"))
    assert removed == ["helper.f-3.py311.nbi", "kernel.f-3.py311.nbi"]


def test_imported_files_reads_every_form_of_from_import(tmp_path):
    tree = _package(tmp_path, 1)
    text = textwrap.dedent("""
        from stalepkg.kernels.helper import shift
        from stalepkg.kernels import (kernel,  # a comment
                                      unrelated as other)
        from numpy import dot
        import stalepkg.kernels.nothing
        from stalepkg.kernels.missing import x
    """)
    found = _stale_cache.imported_files(text, str(tmp_path), "stalepkg")
    assert {os.path.relpath(p, tree) for p in found} == {"helper.py", "__init__.py", "kernel.py", "unrelated.py"}


def test_an_unwritable_cache_or_a_bad_stamp_file_is_no_error(tmp_path, monkeypatch):
    tree = _package(tmp_path, 1)
    cache = _cache_folder(tree)
    (cache / _stale_cache.STAMP_FILE).write_text("not json")
    assert _stale_cache.refresh(str(tree), str(tmp_path), "stalepkg") == []  # nothing cached to delete
    assert json.loads((cache / _stale_cache.STAMP_FILE).read_text())[_stale_cache.TREE_KEY]
    monkeypatch.setattr(_stale_cache, "cache_dir", lambda path: None)
    _edit_offset(tree, 3)
    assert _stale_cache.refresh(str(tree), str(tmp_path), "stalepkg") == []


def test_the_kernel_tree_is_stamped_on_import():
    from refvit.kernels import cpu

    tree = os.path.dirname(cpu.__file__)
    folder = _stale_cache.cache_dir(os.path.join(tree, "__init__.py"))
    stamps = json.loads(open(os.path.join(folder, _stale_cache.STAMP_FILE)).read())
    assert len(stamps[_stale_cache.TREE_KEY]) == 40  # a sha1 of the tree's sources
    assert _stale_cache.refresh_kernels() == []  # already current: the fast path
