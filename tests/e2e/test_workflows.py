"""The GitHub workflows are valid (actionlint) and run the project's own scripts,
so what CI and releases do is what the tests here exercise."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

import harness

WORKFLOWS = sorted((harness.ROOT / ".github" / "workflows").glob("*.yml"))


def test_actionlint_passes():
    actionlint = shutil.which("actionlint")
    if not actionlint:
        pytest.fail("actionlint is missing: run scripts/setup.sh (tests/e2e/requirements.txt)")
    done = subprocess.run([actionlint, "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=harness.ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name,script", [("ci.yml", "scripts/test.sh"), ("release.yml", "scripts/release.sh")])
def test_workflows_call_the_project_scripts(name, script):
    doc = yaml.safe_load((harness.ROOT / ".github" / "workflows" / name).read_text())
    runs = " ".join(step.get("run", "") for job in doc["jobs"].values() for step in job["steps"])
    assert script in runs
    assert "scripts/test.sh" in runs, "every workflow runs the full tests"
