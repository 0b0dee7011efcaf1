"""The README's snippets run as written: the Python one defines or imports every name it uses,
and reads the key from the variable the shell snippet exports."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_python_snippets_use_no_undefined_names() -> None:
    snippets = blocks("python")
    assert snippets
    for code in snippets:
        tree = ast.parse(code)
        defined = set(dir(builtins))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                defined.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        assert used <= defined, f"undefined in the README's Python: {sorted(used - defined)}"


def test_the_key_travels_from_the_shell_to_python() -> None:
    exported = set(re.findall(r"^export (\w+)=", "\n".join(blocks("sh")), re.M))
    read = set(re.findall(r"os\.environ\[\"(\w+)\"\]", "\n".join(blocks("python"))))
    assert read and read <= exported
