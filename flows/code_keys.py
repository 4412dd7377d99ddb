"""What a stage's cache key must cover besides its inputs: the code it runs and the profile
fields it reads.

Code: Prefect's `TASK_SOURCE` hashes only the wrapper function in flows/stages.py, not the
`relabel.tasks` modules that do the work, so editing tasks/correct.py would serve stale
corrections. `code_fingerprint(fn)` hashes the wrapper's source, the module-level helpers
it calls, and the source files of every relabel module they import, transitively (found by
reading the import statements, also those inside functions: relabel/code_fingerprint.py,
which ingestion's own cache uses too), plus the package version. `relabel.config` is left
out on purpose: the profile reaches a stage as values, which the key covers field by field.

Profile fields: a stage's key holds the profile fields its code reads, found the same way:
every attribute named like a profile field in that code (`profile.retrain_epochs`, also
in the task modules), so changing `retrain_epochs` recomputes Model II and nothing before
it. A same-named attribute of another object only adds a field (a needless recompute at
worst). Code that reads the profile by name (`getattr(profile, ...)`, `model_dump()`)
gets every field: reading by name cannot be followed, and a stale result is worse.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

from relabel.code_fingerprint import (
    module_closure,
    module_file,
    relabel_imports,
    source_fingerprint,
)
from relabel.config import TrainProfile

# `name` only labels a profile: two profiles with equal fields share their results.
PROFILE_FIELDS = frozenset(TrainProfile.model_fields) - {"name"}
# Reading the profile by name: every field may be read.
_READS_BY_NAME = frozenset({"getattr", "vars"})
_DUMPS = frozenset({"model_dump", "model_dump_json", "__dict__"})

def _body(source: str) -> ast.Module:
    """The parsed source without its decorators (they name and configure the task; what
    they call is not code the stage runs)."""
    tree = ast.parse(textwrap.dedent(source))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.decorator_list = []
    return tree


def _references(fn: Callable[..., Any]) -> tuple[list[Callable[..., Any]], set[str]]:
    """Module-level functions of `fn`'s module that `fn` refers to by name (transitively),
    and the relabel modules of the other functions, classes and modules it refers to."""
    module_globals = getattr(fn, "__globals__", {})
    own_module = fn.__module__
    helpers: dict[str, Callable[..., Any]] = {}
    modules: set[str] = set()
    pending = [_body(inspect.getsource(fn))]
    while pending:
        for node in ast.walk(pending.pop()):
            if not isinstance(node, ast.Name) or node.id in helpers:
                continue
            value = module_globals.get(node.id)
            value = getattr(value, "fn", value)  # a Prefect task: its function
            if inspect.isfunction(value) and value.__module__ == own_module:
                if value is not fn:
                    helpers[node.id] = value
                    pending.append(_body(inspect.getsource(value)))
                continue
            home = (value.__name__ if inspect.ismodule(value)
                    else getattr(value, "__module__", None))
            if isinstance(home, str) and (home == "relabel" or home.startswith("relabel.")):
                modules.add(home)
    return [helpers[name] for name in sorted(helpers)], modules


def code_of(fn: Callable[..., Any]) -> tuple[list[Callable[..., Any]], list[str]]:
    """What `fn` runs: `fn` and its module-level helpers, and the relabel modules they
    import, transitively (sorted names)."""
    helpers, referenced = _references(fn)
    functions = [fn, *helpers]
    modules: set[str] = set()
    for name in referenced - {fn.__module__}:
        modules |= module_closure(name)
    package = fn.__module__.rpartition(".")[0]
    for function in functions:
        for name in relabel_imports(_body(inspect.getsource(function)), package):
            modules |= module_closure(name)
    return functions, sorted(modules)


@functools.cache
def code_fingerprint(fn: Callable[..., Any]) -> str:
    """SHA-256 over the code `fn` runs (`code_of`): the functions' sources, the modules'
    source files and the package version."""
    functions, modules = code_of(fn)
    return source_fingerprint(modules, (textwrap.dedent(inspect.getsource(function))
                                        for function in functions))


def _reads_profile_by_name(tree: ast.AST) -> bool:
    """`getattr(profile, ...)`, `vars(profile)` or `profile.model_dump()` in `tree`."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in _READS_BY_NAME and node.args
                and isinstance(node.args[0], ast.Name) and node.args[0].id == "profile"):
            return True
        if (isinstance(node, ast.Attribute) and node.attr in _DUMPS
                and isinstance(node.value, ast.Name) and node.value.id == "profile"):
            return True
    return False


@functools.cache
def profile_fields_read(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The profile fields that the code `fn` runs (`code_of`) may read, sorted."""
    functions, modules = code_of(fn)
    trees = [_body(inspect.getsource(function)) for function in functions]
    trees += [ast.parse(path.read_bytes()) for path in map(module_file, modules) if path]
    if any(_reads_profile_by_name(tree) for tree in trees):
        return tuple(sorted(PROFILE_FIELDS))
    attributes = {node.attr for tree in trees for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute)}
    return tuple(sorted(attributes & PROFILE_FIELDS))


def stage_code_and_profile_key(stage: str) -> Callable[[Any, dict[str, Any]], str]:
    """A Prefect cache-key function for `stage`: the code fingerprint of the running task's
    function + the profile fields that code reads (when it takes a `profile`)."""

    def key(context: Any, parameters: dict[str, Any]) -> str:
        fn = context.task.fn
        profile = parameters.get("profile")
        fields = {}
        if profile is not None:
            values = profile.model_dump(mode="json")
            fields = {f: values[f] for f in profile_fields_read(fn)}
        payload = repr(sorted(fields.items())).encode()
        return f"{code_fingerprint(fn)}|{hashlib.sha256(payload).hexdigest()}"

    key.__name__ = f"code_and_profile_key_{stage.replace('-', '_')}"
    return key

