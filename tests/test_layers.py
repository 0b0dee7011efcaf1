"""The layering holds: no module imports from a layer above its own, or from a sibling package of
its own layer, per the list in docs/architecture.md. And ``import sluice.app`` loads no aiohttp."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "sluice"


def layers() -> dict[str, int]:
    """Package (or top-level module) -> its layer's rank, 0 the highest."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```layers\n(.*?)```", doc, re.S)
    assert block, "docs/architecture.md has no ```layers block"
    rank: dict[str, int] = {}
    for i, line in enumerate(block.group(1).strip().splitlines()):
        for name in line.split(","):
            rank[name.strip()] = i
    return rank


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported sluice module, inside a function?) of every import, TYPE_CHECKING included."""
    tree = ast.parse(path.read_text())
    out: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                out.append((child.lineno, child.module, in_function))
            elif isinstance(child, ast.Import):
                out.extend((child.lineno, a.name, in_function) for a in child.names)
            visit(child, nested)

    visit(tree, False)
    return [(n, m, f) for n, m, f in out if m == "sluice" or m.startswith("sluice.")]


def unit(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def test_every_package_is_in_the_layer_list() -> None:
    rank = layers()
    units = {unit(p) for p in SRC.rglob("*.py")} - {"__init__", "testing"}
    assert units <= set(rank), f"add {sorted(units - set(rank))} to the layers block of docs/architecture.md"


def test_imports_only_run_downward() -> None:
    rank = layers()
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        here = unit(path)
        if here in ("__init__", "testing"):
            continue
        for line, module, in_function in imports(path):
            parts = module.split(".")
            if len(parts) < 2 or parts[1] == here:
                continue
            there = parts[1]
            if there == "testing":
                # The one exception: boot starts the demo upstream, imported when a policy asks for it.
                if not (here == "boot" and in_function and module == "sluice.testing.fake_openai"):
                    wrong.append(
                        f"{path.relative_to(SRC)}:{line} imports {module} (production code never imports testing/)"
                    )
                continue
            if there not in rank or rank[there] <= rank[here]:
                wrong.append(f"{path.relative_to(SRC)}:{line} ({here}) imports {module} ({there})")
    assert not wrong, "imports against the layers of docs/architecture.md:\n" + "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The scanner itself: an import of app from server, hidden in a function, is found."""
    module = tmp_path / "m.py"
    module.write_text("from __future__ import annotations\n\ndef f():\n    from sluice.app import running\n")
    assert imports(module) == [(4, "sluice.app", True)]


def test_import_app_loads_no_aiohttp() -> None:
    code = "import sys, sluice.app, sluice.cli, sluice.runner; print([m for m in sys.modules if m.startswith('aiohttp')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
