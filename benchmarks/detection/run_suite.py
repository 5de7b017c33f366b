"""Detection benchmark: train real short runs that go right and wrong, replay the
detectors over their logs, print recall / lead / false positives per detector.

    python benchmarks/detection/run_suite.py                  # generate (cached) + score
    python benchmarks/detection/run_suite.py --only NAME ...   # some runs
    python benchmarks/detection/run_suite.py --score-only      # just re-score the logs
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenarios import by_name  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=str(HERE / "runs"), help="where the run logs go (default: %(default)s)")
    p.add_argument("--only", nargs="*", help="run names (default: all)")
    p.add_argument("--force", action="store_true", help="retrain runs whose logs exist")
    p.add_argument("--score-only", action="store_true", help="do not train; score the logs there")
    p.add_argument("--split", choices=("tune", "holdout", "all"), default="holdout",
                   help="which half the table reports (default: %(default)s)")
    p.add_argument("--markdown", help="also write the report to this file")
    args = p.parse_args(argv)
    specs = by_name(args.only)
    root = Path(args.runs)
    if not args.score_only:
        from generate import generate
        for i, spec in enumerate(specs, 1):
            print(f"[{i}/{len(specs)}] {spec.name}", flush=True)
            generate(spec, root, force=args.force)
    from report import build_report
    text = build_report(root, specs, args.split)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
