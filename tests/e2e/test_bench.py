"""The benchmark keeps working: `scripts/bench.sh --quick` runs every variant
and probe in real Envoy once, each cell first checking through the proxy that
its filter did its work, and writes every section of the report. (The figures
of a quick run mean nothing; docs/benchmark.md comes from the full run.)"""
from __future__ import annotations

import subprocess

import harness


def test_the_benchmark_runs_every_variant_and_writes_its_report(tmp_path):
    done = subprocess.run(
        [str(harness.ROOT / "scripts" / "bench.sh"), "--quick", "--growth-requests", "3000",
         "--envoy", harness.FULL_SUITE_VERSIONS[0], "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=harness.ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (tmp_path / "benchmark.md").read_text()
    rows = [f"| {s} | {v} |" for s in ("noop", "header", "body", "httpcall") for v in ("native", "minimal", "plugin")]
    rows += ["| noop | floor |", "| header | lua-floor |", "| noop+exception |", "| noop+header read |"]
    for row in rows + ["## Memory after warm-up", "| lua-floor |", "## Growth"]:
        assert row in report, f"{row!r} missing from the report:\n{report}"
