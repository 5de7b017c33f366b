"""Score runs made by training scripts nobody here wrote (HF's run_clm.py, nanoGPT's train.py,
the transformer demo inside `lightning`), from the logs those runs wrote, with the same failure
rule and replay as the detection benchmark. How to make the runs: docs/detection.md.

    python benchmarks/detection/real_scripts.py --unigram 4.9 healthy=PATH lr-too-high=PATH ...

A run whose name starts with "healthy" is a healthy run: any alert on it is a false positive.
PATH is what `trainvitals analyze` reads (a TensorBoard run directory, a metrics.jsonl).
`--unigram` (nats) is the unigram entropy of the training tokens, for the failure rule's stall
check and the collapse detector; leave it out if unknown (then no stall can be seen).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import first_flag  # noqa: E402
from scoring import detection_step, loss_failure  # noqa: E402

from trainvitals.analyze.readers import read_run  # noqa: E402
from trainvitals.analyze.replay import AnalyzeConfig, replay  # noqa: E402
from trainvitals.analyze.roles import apply_roles  # noqa: E402


def score_log(name: str, path: Path, unigram: float | None) -> str:
    """One table row: failure step by the loss rule, first warning or alert, first alert, lead."""
    log = apply_roles(read_run(path))
    losses = list(log.series.get("train/step_loss", []))
    failed, why = loss_failure(losses, unigram if unigram else math.inf)
    events = replay(log, AnalyzeConfig(baseline_loss=unigram or 0.0)).events
    healthy = name.startswith("healthy")
    at, kind = first_flag(events)
    alert = detection_step(events, "healthy" if healthy else "failing")
    flags = sorted({(e.step, e.kind, e.severity) for e in events if e.severity != "info" and e.step is not None})
    if healthy:
        verdict = "alert false positive" if alert is not None else ("warned" if at is not None else "quiet")
    elif failed is None:
        verdict = "no failure by the rule"
    else:
        verdict = "caught" if alert is not None and alert <= failed else "missed (alert)"
    lead = f"{failed - at}" if failed is not None and at is not None and at <= failed else "-"
    shown = ", ".join(f"{k} {sev} {s}" for s, k, sev in flags[:4]) + (", ..." if len(flags) > 4 else "")
    return (f"| {name} | {len(losses)} | {f'{failed} ({why})' if failed is not None else '-'} | "
            f"{'-' if at is None else f'{at} `{kind}`'} | {'-' if alert is None else alert} | {lead} | {verdict} | "
            f"{shown or '-'} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="NAME=PATH")
    p.add_argument("--unigram", type=float, default=None, help="unigram entropy of the training tokens, nats")
    args = p.parse_args(argv)
    print("| run | logged losses | failure step (rule) | first warning or alert | first alert | lead | verdict "
          "| events (first four) |")
    print("|---|---|---|---|---|---|---|---|")
    for item in args.runs:
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"{item!r}: expected NAME=PATH")
        print(score_log(name, Path(path), args.unigram))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
