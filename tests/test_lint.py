"""ruff, configured in pyproject.toml, holds the package, tests and benchmarks clean (CI runs it here)."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "dpm_lab", "tests", "benchmarks"],
                         cwd=ROOT, capture_output=True, text=True)
    assert "No module named ruff" not in run.stderr, "ruff is missing: pip install -e '.[test]'"
    assert run.returncode == 0, run.stdout + run.stderr
