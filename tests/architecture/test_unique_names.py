"""No two public classes of the packages share a name (one name, one meaning: ``Parity`` was two)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.conftest import REPO

ROOTS = (REPO / "pipeline", REPO / "calibration", REPO / "plugins", REPO / "trtforge" / "common")


def public_classes(roots: tuple[Path, ...] = ROOTS) -> dict[str, list[str]]:
    """Public class name -> where it is defined (``file:line``), at any depth (nested ones too)."""
    found: dict[str, list[str]] = defaultdict(list)
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                    found[node.name].append(f"{where}:{node.lineno}")
    return found


def test_no_two_public_classes_share_a_name() -> None:
    shared = {name: places for name, places in public_classes().items() if len(places) > 1}
    assert shared == {}, f"rename one of each or make it private (_Name): {shared}"


def test_the_check_finds_a_shared_name(tmp_path: Path) -> None:
    for pkg in ("a", "b"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "m.py").write_text("class Parity:\n    pass\n\n\nclass _Private:\n    pass\n")
    found = public_classes((tmp_path / "a", tmp_path / "b"))
    assert len(found["Parity"]) == 2 and "_Private" not in found
