"""The crash benchmark, short: 3 SIGKILLs (one during a snapshot write), each followed by
--resume; the result equals an uninterrupted run, every step logged once, no temp file left."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from crash_resume import run_benchmark  # noqa: E402


def test_three_kills_then_resume_equal_an_uninterrupted_run(tmp_path):
    res = run_benchmark(kills=3, seed=1, workdir=str(tmp_path))
    assert res.ok, res.line()
    assert res.kills == 3 and res.resumes + res.before_first_snapshot >= 3, res.line()
