"""No code path unpickles anything except through gpueval.io.safe_pickle.restricted_load.

Scans the package source: a textual grep for the obvious spellings, and an AST walk for calls
that load pickles less obviously (``np.load`` without ``allow_pickle=False``, ``Unpickler``,
``pandas.read_pickle``, ``joblib.load``, unsafe YAML loaders).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gpueval"
ALLOWED = {PACKAGE / "io" / "safe_pickle.py"}
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p not in ALLOWED)

TEXT_PATTERNS = [r"\bpickle\.loads?\(", r"allow_pickle\s*=\s*True", r"\bcPickle\b",
                 r"\bdill\b\.", r"\bread_pickle\(", r"\bunsafe_load\(", r"\bfull_load\("]

# (object, attribute) pairs whose call loads a pickle or runs arbitrary constructors
FORBIDDEN_CALLS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"),
                   ("_pickle", "load"), ("_pickle", "loads"), ("pd", "read_pickle"),
                   ("pandas", "read_pickle"), ("joblib", "load"), ("torch", "load"),
                   ("dill", "load"), ("dill", "loads"), ("yaml", "unsafe_load"),
                   ("yaml", "full_load"), ("marshal", "loads"), ("shelve", "open")}


def _code_lines(text: str) -> list[tuple[int, str]]:
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        out.append((i, code))
    return out


def _dotted(node: ast.AST) -> tuple[str, str] | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id, node.attr
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
        return node.value.attr, node.attr
    return None


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _violations(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    text = path.read_text()
    rel = path.relative_to(root)
    found = []
    for lineno, code in _code_lines(text):
        for pat in TEXT_PATTERNS:
            if re.search(pat, code):
                found.append(f"{rel}:{lineno}: matches {pat!r}")
    tree = ast.parse(text, filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "_pickle", "dill"):
            names = {a.name for a in node.names}
            if names & {"load", "loads", "Unpickler"}:
                found.append(f"{rel}:{node.lineno}: imports {names} from {node.module}")
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if _dotted(base) in {("pickle", "Unpickler"), ("_pickle", "Unpickler")}:
                    found.append(f"{rel}:{node.lineno}: subclasses pickle.Unpickler")
        if not isinstance(node, ast.Call):
            continue
        target = _dotted(node.func)
        if target in FORBIDDEN_CALLS:
            found.append(f"{rel}:{node.lineno}: calls {target[0]}.{target[1]}")
        if target in {("np", "load"), ("numpy", "load")}:
            ap = _keyword(node, "allow_pickle")
            if not (isinstance(ap, ast.Constant) and ap.value is False):
                found.append(f"{rel}:{node.lineno}: np.load without allow_pickle=False")
        if target is not None and target[1] == "read_array":
            ap = _keyword(node, "allow_pickle")
            if not (isinstance(ap, ast.Constant) and ap.value is False):
                found.append(f"{rel}:{node.lineno}: read_array without allow_pickle=False")
        if target == ("yaml", "load"):
            loader = _keyword(node, "Loader")
            name = loader.attr if isinstance(loader, ast.Attribute) else getattr(loader, "id", "")
            if name not in ("SafeLoader", "CSafeLoader"):
                found.append(f"{rel}:{node.lineno}: yaml.load without a SafeLoader")
    return found


def test_the_scanner_finds_every_spelling(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle, numpy as np, yaml\n"
        "from pickle import loads\n"
        "class U(pickle.Unpickler): pass\n"
        "a = pickle.load(open('x', 'rb'))\n"
        "b = np.load('x.npy')\n"
        "c = np.load('x.npz', allow_pickle=True)\n"
        "d = np.load('x.npz', allow_pickle=False)\n"
        "e = yaml.load('a: 1')\n"
        "f = yaml.load('a: 1', Loader=yaml.SafeLoader)\n"
        "g = np.lib.format.read_array(fh)\n"
    )
    hits = _violations(bad, tmp_path)
    lines = sorted({int(h.split(":")[1]) for h in hits})
    assert lines == [2, 3, 4, 5, 6, 8, 10], hits


def test_sources_exist():
    assert len(SOURCES) > 10


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(PACKAGE)) for p in SOURCES])
def test_no_pickle_loading_outside_safe_pickle(path):
    assert _violations(path) == []
