"""The layers of DESIGN.md stay apart: an import check over ``authserver/``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "authserver"

#: package -> module prefixes it may not import (DESIGN.md, "Layers").
FORBIDDEN = {
    "oauth": (
        "flask",
        "flask_sqlalchemy",
        "sqlalchemy",
        "redis",
        "authserver.storage",
        "authserver.web",
    ),
    "keys": ("flask", "werkzeug", "authserver.web", "authserver.oauth"),
    "identity": (
        "authserver.oauth.rfc6749",
        "authserver.oauth.rfc7523",
        "authserver.oauth.rfc8628",
        "authserver.oauth.rfc8693",
        "authserver.web",
    ),
    "storage": ("authserver.oauth", "authserver.web", "authserver.keys", "flask.request"),
    "resource": ("authserver.",),
    "web": (),
    # Between the front ends and identity: no Flask, no web, no CLI.
    "admin": ("flask", "flask_wtf", "werkzeug", "authserver.web", "authserver.cli"),
}
#: package -> module prefixes it may import although ``FORBIDDEN`` names a prefix of them.
#: The resource library is a package: its modules may import one another.
ALLOWED = {"resource": ("authserver.resource",)}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    module = "authserver." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer: str) -> None:
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in imports_of(path):
            if any(name == a or name.startswith(a + ".") for a in ALLOWED.get(layer, ())):
                continue
            if any(
                name == f or name.startswith(f + ".") or (f.endswith(".") and name.startswith(f))
                for f in FORBIDDEN[layer]
            ):
                bad.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not bad, "\n".join(bad)


def test_only_web_reads_the_flask_request() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "web" not in path.relative_to(PACKAGE).parts and "flask.request" in imports_of(path)
    ]
    assert not offenders
