"""The docs hold: every relative link points into the repository, and the documented admin key
fields are exactly the ones POST /admin/keys takes."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from sluice.store.keys import KeyCreate

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_relative_links_resolve_inside_the_repository() -> None:
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # http:, mailto:
            path = (page.parent / target).resolve()
            if not path.exists() or ROOT not in path.parents:
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_admin_key_fields_are_documented() -> None:
    api = (ROOT / "docs" / "api.md").read_text()
    section = api[api.index("`POST /admin/keys` takes these fields") :]
    table = section[: section.index("\n\n", section.index("| field |"))]
    documented = set(re.findall(r"`(\w+)`", table))
    fields = {f.encode_name for f in msgspec.structs.fields(KeyCreate)}
    assert fields <= documented, sorted(fields - documented)
