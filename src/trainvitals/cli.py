"""`trainvitals`: the command line. Thin: parse, build, run, close."""
from __future__ import annotations

import argparse
import sys

from trainvitals.errors import ConfigError, SnapshotError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


# Commands that never touch torch: given one of these, only its parser is built, so
# torch (seconds to import, ~200 MB) is not loaded.
_OFFLINE = ("analyze", "calibrate")


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    p = _Parser(prog="trainvitals", description="Train transformers and watch their health.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    if command in _OFFLINE:
        from trainvitals.analyze.calibrate import add_calibrate_parser
        from trainvitals.analyze.command import add_analyze_parsers
        (add_analyze_parsers if command == "analyze" else add_calibrate_parser)(sub)
        return p
    from trainvitals.cli_config import add_config_flags
    from trainvitals.tasks.lm.run import CONFIGS as LM_CONFIGS
    from trainvitals.tasks.lm.run import LM_DEFAULTS

    lm = sub.add_parser("train-lm", help="train a byte-level GPT on the embedded corpus or --data",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _train_flags(lm)
    add_config_flags(lm, *LM_CONFIGS, overrides=LM_DEFAULTS)

    tr = sub.add_parser("train-translation", help="train an encoder-decoder on the embedded EN→FR corpus or --data")
    _train_flags(tr)
    from trainvitals.tasks.translation.run import CONFIGS as TR_CONFIGS
    from trainvitals.tasks.translation.run import TR_DEFAULTS
    add_config_flags(tr, *TR_CONFIGS, overrides=TR_DEFAULTS)

    s = sub.add_parser("sample", help="print a continuation from a train-lm snapshot")
    s.add_argument("--snapshot", required=True, help="a snapshot file, e.g. RUNDIR/snapshots/best.pt")
    s.add_argument("--prompt", default="The ", help="text to continue")
    s.add_argument("--max-new-tokens", type=int, default=200)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--seed", type=int, default=0)

    from trainvitals.advise.command import add_advise_parser
    from trainvitals.analyze.calibrate import add_calibrate_parser
    from trainvitals.analyze.command import add_analyze_parsers
    from trainvitals.report import add_report_parser
    add_analyze_parsers(sub)
    add_advise_parser(sub)
    add_report_parser(sub)
    add_calibrate_parser(sub)
    return p


def _train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.toml", help="read field = value settings from a TOML file")
    p.add_argument("--resume", nargs="?", const="latest", metavar="PATH",
                   help="continue the run in --logdir from its latest snapshot, or from PATH")


def _given(args: argparse.Namespace) -> dict:
    from trainvitals.cli_config import load_toml
    skip = {"command", "config", "resume", "func"}
    given = load_toml(args.config) if getattr(args, "config", None) else {}
    given.update({k: v for k, v in vars(args).items() if k not in skip})
    return given


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv[0] if argv else None).parse_args(argv)
    try:
        if args.command == "train-lm":
            from trainvitals.tasks.lm.run import train_lm
            return train_lm(_given(args), args.resume)
        if args.command == "train-translation":
            from trainvitals.tasks.translation.run import train_translation
            return train_translation(_given(args), args.resume)
        if args.command == "sample":
            from trainvitals.tasks.lm.run import sample
            print(sample(args.snapshot, args.prompt, args.max_new_tokens, args.temperature, args.seed))
            return 0
        return args.func(args)
    except (ConfigError, SnapshotError) as e:
        print(f"trainvitals {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside the training loop, which handles it itself
        print(f"trainvitals {args.command}: interrupted; what was written before stays as it was "
              f"(snapshots are written atomically)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
