"""Every stage module in the static list imports and registers; every CLI verb module exists."""

from __future__ import annotations

import importlib
import importlib.util

from trtforge.pipeline import registry
from trtforge.pipeline.cli import COMMANDS
from trtforge.pipeline.stage import Stage


def test_every_stage_module_exists_and_registers() -> None:
    missing = [m for m in registry.STAGE_MODULES if importlib.util.find_spec(m) is None]
    assert not missing, f"stage modules listed but absent: {missing}"
    registry.load_all()
    names = {n for n in registry.stage_names() if not n.endswith("_for_test")}
    assert names == {m.rsplit(".", 1)[1] for m in registry.STAGE_MODULES}
    for name in names:
        cls = registry.get_stage(name)
        assert issubclass(cls, Stage) and cls.name == name
        cls(cls.config_cls())  # every stage config has defaults for all fields


def test_every_cli_verb_module_exists() -> None:
    missing = [v for v, m in COMMANDS.items() if importlib.util.find_spec(m) is None]
    assert not missing, f"CLI verbs listed but absent: {missing}"
    for module in COMMANDS.values():
        assert hasattr(importlib.import_module(module), "command")
