"""Function sizes (issue 33): no function body in ``lensscore/``, ``train/`` or ``export/``
longer than :data:`MAX_BODY` lines, except those in :data:`ALLOWED`, each with its reason.

A body is measured from its first statement after the docstring to the end of its last one
(blank lines and comments inside count: they are what a reader scrolls through). Nested
functions and methods are measured too, named ``outer.inner`` and ``Class.method``. The
packages are read with :mod:`ast`, not imported, from this checkout.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lensscore", "train", "export")
MAX_BODY = 60

#: ``"package/module.py:function"`` -> why it may be longer. An entry that is no longer over
#: the limit fails too, so that the list stays the list of real exceptions.
ALLOWED: dict[str, str] = {
    # none today: a function that must stay longer names its reason here
}


def _body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = fn.body
    if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        body = body[1:]  # the docstring
    if not body:
        return 0
    return body[-1].end_lineno - body[0].lineno + 1


def _functions(tree: ast.AST, prefix: str = ""):
    """``(qualified name, body lines)`` of every function in ``tree``, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, _body_lines(node)
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def function_sizes() -> dict[str, int]:
    """``"package/module.py:function"`` -> body lines, for every function of the packages."""
    sizes = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), rel)
            for name, n in _functions(tree):
                sizes[f"{rel}:{name}"] = n
    return sizes


def test_no_function_body_over_the_limit_without_a_reason():
    sizes = function_sizes()
    assert len(sizes) > 300, "the packages were not found"  # a wrong ROOT checks nothing
    long = {k: n for k, n in sizes.items() if n > MAX_BODY and k not in ALLOWED}
    assert not long, (
        f"function bodies over {MAX_BODY} lines (split them into named helpers, or add an "
        "entry with its reason to ALLOWED in tests/test_sizes.py):\n"
        + "\n".join(f"  {k}: {n} lines" for k, n in sorted(long.items(), key=lambda kv: -kv[1])))


def test_every_allowed_exception_is_still_one():
    sizes = function_sizes()
    stale = {k: sizes.get(k) for k in ALLOWED if sizes.get(k, 0) <= MAX_BODY}
    assert not stale, ("remove these entries from ALLOWED in tests/test_sizes.py (the function "
                       f"is gone, or no longer over {MAX_BODY} lines): {stale}")
    assert all(reason.strip() for reason in ALLOWED.values())


def test_the_measure_counts_the_body_without_its_docstring():
    src = "def f():\n    '''doc\n    more'''\n    a = 1\n\n    # why\n    return a\n"
    (fn,) = ast.parse(src).body
    assert _body_lines(fn) == 4
    nested = "class C:\n    def m(self):\n        def g():\n            return 1\n        return g\n"
    assert dict(_functions(ast.parse(nested))) == {"C.m": 3, "C.m.g": 1}
