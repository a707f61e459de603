"""Numba's on-disk cache of a kernel, made to notice edits of the files the kernel imports.

Numba keys a cached kernel on its own source file only (its modification time and size). A
kernel that calls a compiled function or reads a constant from another file keeps the version it
was compiled with when only that other file changes: after editing ``vector_math.py``, or after a
``git pull`` that changed it in an editable install, ``gelu``'s cache would still hold the old
exponential, and a changed array layout in a helper can make the stale code read out of bounds.

:func:`refresh` closes that gap for the kernel tree (``refvit/kernels/cpu`` and below). It runs once,
when :mod:`refvit.kernels.cpu` is imported, before any kernel is loaded:

1. It hashes the tree's sources (about 7 ms). If the hash equals the one stored last time, it stops.
2. Otherwise it reads each module's ``from refvit.kernels.cpu... import ...`` lines, and for each module
   hashes the sources of every module of the tree it reaches that way (itself included). Imports from
   outside the tree (``refvit.ops``) are plain Python run by the kernel entries, never compiled into a
   kernel, so they do not count.
3. Where that hash differs from the one stored beside the module's cache files, it deletes the
   module's cache files (``<module>.*.nbi``, ``<module>.*.nbc``), so Numba compiles it afresh, and
   stores the new hashes (``refvit-kernel-sources.json`` in each cache folder).

The cache folders are the ones Numba itself picks (``NUMBA_CACHE_DIR``, else ``__pycache__`` beside
the source, else the user-wide cache). A folder that cannot be written is left alone.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re

STAMP_FILE = "refvit-kernel-sources.json"
TREE_KEY = "*"  # the stamp of the whole tree, in the cache folder of the tree's root

_IMPORT = re.compile(r"^[ \t]*from[ \t]+([A-Za-z_][\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.M)


def _probe():
    """A function for Numba's cache locators, which read a function's line number."""


def cache_dir(py_file):
    """The folder Numba caches the kernels of ``py_file`` in, or ``None`` when it has none."""
    from numba.core.caching import CacheImpl

    for locator_class in CacheImpl._locator_classes:
        locator = locator_class.from_function(_probe, py_file)
        if locator is not None:
            return locator.get_cache_path()
    return None


def _module_file(top, dotted):
    """The source file of module ``dotted`` under ``top`` (a module or a package's ``__init__``), or ``None``."""
    base = os.path.join(top, *dotted.split("."))
    for candidate in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def imported_files(text, top, package):
    """The source files under ``top`` that ``text`` imports with ``from package... import ...``: the
    module named, and each imported name that is itself a module of that package."""
    found = set()
    for match in _IMPORT.finditer(text):
        module = match.group(1)
        if module != package and not module.startswith(package + "."):
            continue
        path = _module_file(top, module)
        if path is not None:
            found.add(path)
        names = re.sub(r"#[^\n]*", "", match.group(2)).strip("() \t\n")
        for name in names.split(","):
            name = name.split(" as ")[0].strip()
            sub = _module_file(top, f"{module}.{name}") if name.isidentifier() else None
            if sub is not None:
                found.add(sub)
    return found


def _read(path, sources):
    if path not in sources:
        with open(path, "rb") as handle:
            sources[path] = handle.read()
    return sources[path]


def _digest(parts):
    digest = hashlib.sha1()
    for name, content in parts:
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(hashlib.sha1(content).digest())
    return digest.hexdigest()


def _reached(path, top, package, sources, tree, edges):
    """Every file of ``tree`` that ``path`` reaches through its imports (itself included)."""
    reached, stack = {path}, [path]
    while stack:
        current = stack.pop()
        if current not in edges:
            text = _read(current, sources).decode("utf-8", "replace")
            edges[current] = {dep for dep in imported_files(text, top, package) if dep.startswith(tree + os.sep)}
        for dep in edges[current] - reached:
            reached.add(dep)
            stack.append(dep)
    return reached


def _load(path):
    try:
        with open(path) as handle:
            stamps = json.load(handle)
        return stamps if isinstance(stamps, dict) else {}
    except (OSError, ValueError):
        return {}


def _store(path, stamps):
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as handle:
        json.dump(stamps, handle, sort_keys=True)
    os.replace(temporary, path)  # atomic: a process reading it meanwhile sees the old or the new file


def _drop_cached(folder, stem):
    removed = []
    for pattern in (f"{stem}.*.nbi", f"{stem}.*.nbc"):
        for path in glob.glob(os.path.join(glob.escape(folder), pattern)):
            try:
                os.remove(path)
                removed.append(path)
            except OSError:
                pass  # another process removed it first
    return removed


def refresh(tree, top, package):
    """Delete the Numba cache files of every module of ``tree`` (a folder of the package ``package``,
    which lies in ``top``) whose imported sources changed since the last call; return their paths.

    ``refresh(".../refvit/kernels/cpu", ".../site-packages", "refvit")`` is what importing
    :mod:`refvit.kernels.cpu` does. Never raises for a folder that cannot be read or written."""
    tree = os.path.abspath(tree)
    top = os.path.abspath(top)
    files = sorted(glob.glob(os.path.join(glob.escape(tree), "**", "*.py"), recursive=True))
    sources = {}
    try:
        whole = _digest((os.path.relpath(p, tree), _read(p, sources)) for p in files)
        root_folder = cache_dir(os.path.join(tree, "__init__.py"))
        if root_folder is None or _load(os.path.join(root_folder, STAMP_FILE)).get(TREE_KEY) == whole:
            return []
    except OSError:
        return []
    removed, folders, edges = [], {}, {}
    for path in files:
        folder = cache_dir(path)
        if folder is None:
            continue
        if folder not in folders:
            folders[folder] = _load(os.path.join(folder, STAMP_FILE))
        stem = os.path.splitext(os.path.basename(path))[0]
        reached = _reached(path, top, package, sources, tree, edges)
        stamp = _digest(sorted((os.path.relpath(p, top), sources[p]) for p in reached))
        if folders[folder].get(stem) != stamp:
            removed += _drop_cached(folder, stem)
            folders[folder][stem] = stamp
    folders.setdefault(root_folder, _load(os.path.join(root_folder, STAMP_FILE)))[TREE_KEY] = whole
    for folder, stamps in folders.items():
        try:
            _store(os.path.join(folder, STAMP_FILE), stamps)
        except OSError:
            pass
    return removed


def refresh_kernels():
    """:func:`refresh` for ``refvit/kernels/cpu``, the tree whose kernels import one another."""
    tree = os.path.dirname(os.path.abspath(__file__))
    package_dir = os.path.dirname(os.path.dirname(tree))
    return refresh(tree, os.path.dirname(package_dir), os.path.basename(package_dir))
