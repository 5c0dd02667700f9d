"""The README and docs/ stay true: every setting is documented, every relative link leads to a file (and an anchor
to a heading) that exists."""

from __future__ import annotations

import re
from pathlib import Path

from signalements.settings import PROJECT_ROOT, Settings

DOCUMENTS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    found = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^#{1,6} (.+)$", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            found.add(slug)
    return found


def test_every_setting_is_documented_in_the_configuration_page() -> None:
    page = (PROJECT_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(KAFKA_BOOTSTRAP_SERVERS|SIGNALEMENTS_[A-Z_]+)`", page))
    # "`SIGNALEMENTS_INTAKE_HOST` / `_INTAKE_PORT`": the second name shortened to its suffix.
    documented |= {f"SIGNALEMENTS{suffix}" for suffix in re.findall(r"/ `(_[A-Z_]+)`", page)}
    expected = {"KAFKA_BOOTSTRAP_SERVERS"} | {
        f"SIGNALEMENTS_{name.upper()}" for name in Settings.model_fields if name != "kafka_bootstrap_servers"}
    assert sorted(expected - documented) == []
    assert sorted(documented - expected) == [], "documented settings that do not exist"


def test_every_relative_link_of_the_documentation_leads_somewhere() -> None:
    broken = []
    for document in DOCUMENTS:
        for target in LINK.findall(document.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path_part, _, anchor = target.partition("#")
            path = (document.parent / path_part).resolve() if path_part else document
            if not path.exists():
                broken.append(f"{document.name}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{document.name}: {target} (no such heading)")
    assert broken == []


def test_the_documentation_pages_are_listed_in_the_readme() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    listed = {Path(target).name for target in LINK.findall(readme) if target.startswith("docs/")}
    assert {page.name for page in (PROJECT_ROOT / "docs").glob("*.md")} <= listed
