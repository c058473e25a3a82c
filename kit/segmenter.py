"""jieba's Chinese word segmentation (its dictionary and algorithm) by rjieba, built compactly, once.

`import rjieba` builds a default segmenter with jieba's dictionary when the package is imported (34 MB
resident). Grading and archive build their one segmenter from the same dictionary file instead, read
from the `jieba` package, which comes to 26 MB: the same 349,046 words and frequencies, the same cut
(a test compares every text of ../shared/data), and no part-of-speech tags, which neither service uses.
"""

import importlib.machinery
import importlib.util
import sys
import threading
from pathlib import Path
from typing import Any

_EXTENSION = "rjieba.rjieba"
_lock = threading.Lock()
_segmenter: Any = None


def _package_dir(name: str) -> Path:
    """A package's folder, found without importing (running) the package."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the {name} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _rjieba_extension():
    """rjieba's compiled module alone, without the package's `__init__` and its default segmenter."""
    loaded = sys.modules.get(_EXTENSION)
    if loaded is not None:
        return loaded
    path = next(_package_dir("rjieba").glob("rjieba*.so"))
    loader = importlib.machinery.ExtensionFileLoader(_EXTENSION, str(path))
    spec = importlib.util.spec_from_file_location(_EXTENSION, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    # One module object, also for a later `import rjieba` (its __init__ imports this by name).
    sys.modules[_EXTENSION] = module
    return module


def dictionary_path() -> Path:
    """jieba's main dictionary (word, frequency, tag per line): the one rjieba compiles in."""
    return _package_dir("jieba") / "dict.txt"


def build_segmenter(path: Path | None = None):
    """A new rjieba segmenter holding a jieba dictionary file's words and frequencies."""
    seg = _rjieba_extension().Jieba.empty()
    add = seg.add_word
    with (path or dictionary_path()).open(encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                add(parts[0], int(parts[1]), None)
    return seg


def segmenter():
    """The process's segmenter (built on first use, ~0.5 s; thread-safe)."""
    global _segmenter
    if _segmenter is None:
        with _lock:
            if _segmenter is None:
                _segmenter = build_segmenter()
    return _segmenter
