"""`import trtforge`, every module, and `trtforge --help` work without torch and tensorrt."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {"torch", "tensorrt", "tensorrt_bindings", "onnxscript", "matplotlib"}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked for the test: {name}")
            return None
    sys.meta_path.insert(0, Block())
    """
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_module_imports_without_torch_or_tensorrt() -> None:
    proc = _run(
        """
        import importlib, pkgutil, sys
        names = []
        for pkg in ("trtforge",):  # walk_packages recurses into every sub-package
            mod = importlib.import_module(pkg)
            for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
                if info.name.endswith("__main__"):
                    continue
                importlib.import_module(info.name)
                names.append(info.name)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorrt"))
        assert not heavy, heavy
        print(len(names))
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.strip().splitlines()[-1]) >= 100


def test_help_of_every_verb_without_torch_or_tensorrt() -> None:
    proc = _run(
        """
        from click.testing import CliRunner
        from trtforge.pipeline.cli import cli, COMMANDS
        r = CliRunner().invoke(cli, ["--help"])
        assert r.exit_code == 0, r.output
        verbs = cli.list_commands(None)
        for verb in verbs:
            r = CliRunner().invoke(cli, [verb, "--help"])
            assert r.exit_code == 0, (verb, r.output)
        print(" ".join(verbs))
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from trtforge.pipeline.cli import COMMANDS

    verbs = proc.stdout.split()
    assert set(verbs) == set(COMMANDS)


def test_python_dash_m_trtforge_help() -> None:
    for module in ("trtforge", "trtforge.pipeline"):
        proc = subprocess.run(
            [sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True
        )
        assert proc.returncode == 0 and "Exit codes" in proc.stdout, (module, proc.stderr[-2000:])
