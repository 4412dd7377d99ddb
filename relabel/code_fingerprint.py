"""Which relabel source files a piece of code runs, found without importing it, and one
hash over them.

A cache that keys only on its inputs serves stale results after the code that made them is
edited. Both the pipeline's stage keys (flows/code_keys.py) and ingestion's own
content-addressed cache (tasks/ingest.py) key on the source of the relabel modules they
run: a module and every relabel module it imports, transitively, found by reading the
import statements (also those inside functions), plus the package version. Reading
instead of importing keeps this cheap: no TensorFlow is loaded to fingerprint a module
that imports it lazily. This module sits below relabel.tasks in the layers (.importlinter)
so that tasks/ can use it without importing flows/.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
from collections.abc import Iterable
from pathlib import Path

from relabel.constants import VERSION

# Left out: a stage gets the profile as values, which its key covers field by field
# (flows/code_keys.py); ingestion does not read the profile at all.
UNHASHED_MODULES = frozenset({"relabel.config"})
# Hashed, but their imports are not followed: the package root's only import of another
# layer is the lazy convenience `relabel.predict()`, which no stage or ingest calls.
LEAF_MODULES = frozenset({"relabel"})


def relabel_imports(tree: ast.AST, package: str | None) -> set[str]:
    """Names of the relabel modules an AST imports (absolute and relative imports, at any
    depth: function-level imports count too)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and package:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # `from relabel.tasks import train` imports a module; `from x import func` not.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(n for n in names if n == "relabel" or n.startswith("relabel."))
    return found


@functools.cache
def module_file(name: str) -> Path | None:
    """The source file of module `name`, found without importing it (only its parent
    packages, whose __init__ files are light): None when `name` is not a module, e.g. the
    function in `relabel.tasks.train.predict_proba`."""
    parent = name.rpartition(".")[0]
    if parent:
        parent_file = module_file(parent)
        if parent_file is None or parent_file.name != "__init__.py":
            return None  # the parent is not a package: this is an attribute, not a module
    try:
        spec = importlib.util.find_spec(name)  # imports the parent packages only
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


@functools.cache
def module_closure(name: str) -> frozenset[str]:
    """`name` and every relabel module it imports, transitively (sources that exist)."""
    seen: set[str] = set()
    pending = [name]
    while pending:
        current = pending.pop()
        if current in seen or current in UNHASHED_MODULES:
            continue
        path = module_file(current)
        if path is None:
            continue
        seen.add(current)
        if current in LEAF_MODULES:
            continue
        package = current if path.name == "__init__.py" else current.rpartition(".")[0]
        pending.extend(relabel_imports(ast.parse(path.read_bytes()), package))
    return frozenset(seen)


def source_fingerprint(modules: Iterable[str], sources: Iterable[str] = ()) -> str:
    """SHA-256 over the package version, the `sources` given as text (in order) and the
    source files of `modules` (by name, sorted; names that are not modules are skipped)."""
    digest = hashlib.sha256(f"relabel {VERSION}\n".encode())
    for source in sources:
        digest.update(source.encode())
    for name in sorted(modules):
        path = module_file(name)
        if path is not None:
            digest.update(f"\n{name}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def module_fingerprint(name: str) -> str:
    """`source_fingerprint` of module `name` and every relabel module it imports, once per
    process: the code a process runs does not change while it runs."""
    return source_fingerprint(module_closure(name))
