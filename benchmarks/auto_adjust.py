"""Does `auto_adjust` heal runs that fail during training, and leave healthy runs alone?

Each failing run is a healthy tiny byte-LM run (the advice benchmark's `lm` size and
LR, `advice_scenarios._lm`, run for 5 epochs of 60 steps) with one fault injected part-way, after it has learned:

| fault | what happens from step FAULT_AT (150 of 300) | the cause |
|---|---|---|
| `spike` | one batch whose targets are all byte 0 | the data (one batch) |
| `bad_stretch` | 12 such batches in a row | the data |
| `lr_raised` | the LR x30 from there on (raised too far on a resume) | the learning rate |
| `lr_high_after_warmup` | no fault injected: peak LR 0.1 (33x the healthy run's), reached at step 120 | the learning rate |

`--holdout` runs what the policy was not designed on: seeds 3 and 4 of those faults, and
variants of them fixed before any was run (`HOLDOUT`: a spike at step 80, 24 bad batches
from step 200, the LR x10 from step 100, a peak LR of 0.03 reached at step 60).
`--holdout2`, committed before it was run once: seeds 5 and 6, and `HOLDOUT2` (40 bad
batches from step 120, a peak LR of 0.05 reached at step 90, the LR x20 from step 200).

Each runs three ways on the same seed: as is (`off`), with `auto_adjust` (`auto`), and
with OLMo-core's skip-step rule (`olmo`: skip the optimizer step when the loss or the
gradient norm is more than 6 standard deviations above the mean of its last 128 steps,
skipped or not, once 64 are known, as olmo_core's `SkipStepOptimizer` does). The healthy twins (no fault) run the same three ways.

Declared before any run: a failing run is **rescued** when it ends with no alert
outstanding (every alert cleared or answered by a later rollback), its stop reason
`completed`, and its final val loss within MARGIN (max(3%, twice the seed-to-seed
spread of the healthy twins' final val loss, measured in this invocation)) of its
healthy twin (same seed, no fault). Healthy runs must see 0 actions. Cost: the steps
whose updates a rollback threw away (its skipped steps), against restarting by hand
(from scratch at the first alert, with the change `advise` recommends: the steps run
up to that alert are lost). Memory and time of the ring: the same healthy run with
`auto_adjust` on and off, timed in this invocation.

    OMP_NUM_THREADS=1 python benchmarks/auto_adjust.py           # ~10 min on one thread
    OMP_NUM_THREADS=1 python benchmarks/auto_adjust.py --quick   # the mechanics, ~1 min
    OMP_NUM_THREADS=1 python benchmarks/auto_adjust.py --holdout # seeds 3-4, and the variants
    OMP_NUM_THREADS=1 python benchmarks/auto_adjust.py --holdout2 # seeds 5-6, and HOLDOUT2
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "advice"))
from advice_scenarios import _lm  # noqa: E402  (the advice benchmark's healthy lm settings)

from trainvitals.config import TrainerConfig  # noqa: E402
from trainvitals.events import ALERT, INFO  # noqa: E402
from trainvitals.sinks.base import SinkHub  # noqa: E402
from trainvitals.tasks.lm.data import ByteCorpus, load_text  # noqa: E402
from trainvitals.tasks.lm.model import GPT, GPTConfig  # noqa: E402
from trainvitals.training.callbacks import TrainerCallback  # noqa: E402
from trainvitals.training.rng import seed_everything  # noqa: E402
from trainvitals.training.trainer import LanguageModelTrainer  # noqa: E402

FAULT_AT = 150


@dataclass(frozen=True)
class Fault:
    kind: str  # spike / bad_stretch: `size` bad batches; lr_raised: the LR x `size`; lr_high_after_warmup: peak `size`
    size: float
    at: int = FAULT_AT  # the first faulty step (lr_high_after_warmup: the end of its warmup)


FAULTS = {"spike": Fault("spike", 1), "bad_stretch": Fault("bad_stretch", 12), "lr_raised": Fault("lr_raised", 30),
          "lr_high_after_warmup": Fault("lr_high_after_warmup", 0.1, 120)}
# fixed before any of them was run: the policy was not designed on these
HOLDOUT = {"spike@80": Fault("spike", 1, 80), "bad_stretch_24@200": Fault("bad_stretch", 24, 200),
           "lr_raised_x10@100": Fault("lr_raised", 10, 100), "lr_high_0.03@60": Fault("lr_high_after_warmup", 0.03, 60)}
# a second holdout, committed before any of it was run (the first was looked at while
# the skip-ahead was designed): seeds 5-6, a longer bad stretch elsewhere, another peak LR
HOLDOUT2 = {"bad_stretch_40@120": Fault("bad_stretch", 40, 120),
            "lr_high_0.05@90": Fault("lr_high_after_warmup", 0.05, 90),
            "lr_raised_x20@200": Fault("lr_raised", 20, 200)}
MODES = ("off", "auto", "olmo")
MARGIN_FLOOR = 0.03
OLMO_WINDOW, OLMO_SIGMA = 128, 6.0
OLMO_MIN = OLMO_WINDOW // 2  # olmo_core skips nothing until half its window is filled
_MODEL_KEYS = ("d_model", "n_layers", "n_heads", "block_size")


def settings(fault: Fault | None, seed: int, steps_per_epoch: int = 60, epochs: int = 5) -> dict[str, Any]:
    s = {**_lm("tune", seed=seed, steps_per_epoch=steps_per_epoch, epochs=epochs), "dropout": 0.0}
    if fault is not None and fault.kind == "lr_high_after_warmup":
        s.update(lr=fault.size, warmup_steps=fault.at)
    return s


class _Faulty:
    """The corpus, with a stretch of batches whose targets are one byte."""

    def __init__(self, corpus: ByteCorpus, bad: range, per_epoch: int) -> None:
        self.corpus, self.bad, self.per_epoch = corpus, bad, per_epoch

    def num_batches(self) -> int:
        return self.corpus.num_batches()

    def validation(self):
        return self.corpus.validation()

    def epoch(self, e: int):
        for i, (x, y) in enumerate(self.corpus.epoch(e)):
            yield (x, torch.full_like(y, 0)) if e * self.per_epoch + i + 1 in self.bad else (x, y)


class _LRFault(TrainerCallback):
    """Multiplies the scheduled LR on the steps of `steps` (set after the schedule, before the update)."""

    def __init__(self, steps: range, factor: float) -> None:
        self.steps, self.factor = steps, factor

    def on_backward_end(self, ctx) -> None:
        if ctx.global_step + 1 in self.steps:
            for g in ctx.optimizer.param_groups:
                g["lr"] *= self.factor


class _OLMoSkip(TrainerCallback):
    """OLMo-core's rule (olmo_core's SkipStepOptimizer): skip the step when its loss or grad
    norm is > 6 sigma above the mean of the last 128 steps, every step's value in the window,
    skipped or not (non-finite ones left out of the statistics), once 64 steps are in it.
    The optimizer's step is wrapped to do nothing then."""

    def __init__(self, trainer: LanguageModelTrainer) -> None:
        self.losses: list[float] = []
        self.norms: list[float] = []
        self.skipped = 0
        self._skip = False
        self.trainer = trainer
        step = trainer.optimizer.step

        def guarded(*a, **k):
            return None if self._skip else step(*a, **k)
        trainer.optimizer.step = guarded

    def on_backward_end(self, ctx) -> None:
        loss = float(self.trainer.last_loss)
        grads = [p.grad for p in ctx.model.parameters() if p.grad is not None]
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        self._skip = any(_outlier(v, hist) for v, hist in ((loss, self.losses), (norm, self.norms)))
        self.skipped += self._skip
        for v, hist in ((loss, self.losses), (norm, self.norms)):
            hist.append(v)
            del hist[:-OLMO_WINDOW]


def _outlier(v: float, hist: list[float]) -> bool:
    if len(hist) + 1 < OLMO_MIN:
        return False
    finite = [h for h in hist if math.isfinite(h)]
    return not math.isfinite(v) or len(finite) < 2 or v > mean(finite) + OLMO_SIGMA * stdev(finite)


class _Trainer(LanguageModelTrainer):
    def compute_loss(self, batch):
        loss = super().compute_loss(batch)
        self.last_loss = loss.detach()
        return loss


def run(name: str | None, mode: str, seed: int, workdir: Path, steps_per_epoch: int = 60,
        epochs: int = 5, fault_at: int | None = None) -> dict[str, Any]:
    """One run of fault `name` (FAULTS, HOLDOUT; None: healthy); what it ended as."""
    fault = {**FAULTS, **HOLDOUT, **HOLDOUT2}[name] if name else None
    if fault is not None and fault_at is not None:
        fault = Fault(fault.kind, fault.size, fault_at)
    s = settings(fault, seed, steps_per_epoch, epochs)
    model_cfg = GPTConfig(**{k: s[k] for k in _MODEL_KEYS})
    fields = {k: v for k, v in s.items() if k not in _MODEL_KEYS and k != "dropout"}
    logdir = workdir / f"{name or 'healthy'}-{mode}-s{seed}"
    cfg = TrainerConfig(**fields, logdir=str(logdir), progress_bar=False, auto_adjust=mode == "auto",
                        device="cpu")
    seed_everything(seed)
    corpus = ByteCorpus(load_text(), model_cfg.block_size, cfg.batch_size, 0.1, seed)
    data: Any = corpus
    if fault is not None and fault.kind in ("spike", "bad_stretch"):
        data = _Faulty(corpus, range(fault.at, fault.at + int(fault.size)), steps_per_epoch)
    callbacks = []
    if fault is not None and fault.kind == "lr_raised":
        callbacks.append(_LRFault(range(fault.at, 10 ** 9), fault.size))
    trainer = _Trainer(GPT(model_cfg), cfg, sinks=SinkHub(), callbacks=callbacks,
                       run_info={"uniform_loss": math.log(256), "unigram_entropy": corpus.unigram_entropy})
    olmo = _OLMoSkip(trainer) if mode == "olmo" else None
    if olmo is not None:
        trainer.callbacks.insert(0, olmo)
    t = time.perf_counter()
    reason = trainer.fit(data, corpus)
    seconds = time.perf_counter() - t
    trainer.close()
    events = trainer.monitor.events
    ring = trainer.monitor.rollback.ring if trainer.monitor.rollback is not None else []
    held = sum(_bytes(st.model) + _bytes(st.optimizer) for st in ring)
    live = _bytes(trainer.module.state_dict()) + _bytes(trainer.optimizer.state_dict())
    rollbacks = trainer.monitor.rollback.done if trainer.monitor.rollback is not None else []
    alerts = [e for e in events if e.severity == ALERT]
    return {"fault": name or "healthy", "mode": mode, "seed": seed, "reason": reason.value,
            "val": trainer.last_val_loss if trainer.last_val_loss is not None else math.inf,
            "alerts": len(alerts), "first_alert": alerts[0].step if alerts else None,
            "outstanding": _outstanding(events), "actions": [e.message for e in events if e.kind == "action"],
            "rollback_actions": [e.message for e in events if e.kind == "action" and e.source == "auto_adjust"],
            "rollbacks": rollbacks, "skipped": len({s for r in rollbacks
                                                    for s in range(r["skipped_steps"][0], r["skipped_steps"][1] + 1)}),
            "olmo_skipped": olmo.skipped if olmo is not None else 0, "steps": trainer.global_step,
            "ring_states": len(ring), "ring_bytes": held, "live_bytes": live,
            "seconds": seconds}


def _bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_bytes(v) for v in obj)
    return 0


def _outstanding(events) -> list[str]:
    """Alert kinds still raised at the end: not cleared since, nor answered by a later rollback."""
    open_: dict[str, int] = {}
    for e in events:
        if e.kind == "action" and e.source == "auto_adjust" and e.values.get("restored_step") is not None:
            open_.clear()
        elif e.severity == ALERT:
            open_[e.kind] = e.step or 0
        elif e.severity == INFO and e.kind in open_:
            del open_[e.kind]
    return sorted(open_)


def rescued(r: dict[str, Any], twin: dict[str, Any], margin: float) -> bool:
    return (r["reason"] == "completed" and not r["outstanding"] and math.isfinite(r["val"])
            and r["val"] <= twin["val"] * (1 + margin))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one seed, one fault, 90-step runs: the mechanics")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--holdout", action="store_true", help="seeds 3-4 of every fault and the HOLDOUT variants")
    p.add_argument("--holdout2", action="store_true", help="seeds 5-6 of every fault and the HOLDOUT2 variants")
    p.add_argument("--workdir", default="")
    p.add_argument("--out", help="also write every run's outcome as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    seeds = range(1 if args.quick else args.seeds)
    faults = ("bad_stretch",) if args.quick else tuple(FAULTS)
    if args.holdout:
        seeds, faults = range(3, 5), tuple(FAULTS) + tuple(HOLDOUT)
    if args.holdout2:
        seeds, faults = range(5, 7), tuple(FAULTS) + tuple(HOLDOUT2)
    size = {"steps_per_epoch": 30, "epochs": 3, "fault_at": 70} if args.quick else {}
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="auto_adjust-"))
    t0 = time.time()
    healthy = {(m, s): run(None, m, s, workdir, **size) for s in seeds for m in MODES}
    vals = [healthy["off", s]["val"] for s in seeds]
    margin = max(MARGIN_FLOOR, 2 * (max(vals) - min(vals)) / min(vals)) if len(vals) > 1 else MARGIN_FLOOR
    rows = [run(f, m, s, workdir, **size) for f in faults for s in seeds for m in MODES]
    print(f"margin {100 * margin:.1f}% (healthy twins' final val loss: {', '.join(f'{v:.4f}' for v in vals)})")
    print(f"{'fault':22} {'seed':>4} {'mode':5} {'val':>7} {'twin':>7} {'rescued':>7} {'reason':12} "
          f"{'rollbacks':>9} {'skipped':>7} {'olmo':>5} outstanding")
    for r in rows:
        twin = healthy["off", r["seed"]]
        print(f"{r['fault']:22} {r['seed']:>4} {r['mode']:5} {r['val']:7.4f} {twin['val']:7.4f} "
              f"{'yes' if rescued(r, twin, margin) else 'no':>7} {r['reason']:12} {len(r['rollbacks']):>9} "
              f"{r['skipped']:>7} {r['olmo_skipped']:>5} {','.join(r['outstanding'])}")
    print("\nrescued, by fault: " + "; ".join(
        f"{f} " + "/".join(str(sum(rescued(r, healthy["off", r["seed"]], margin) for r in rows
                                   if r["fault"] == f and r["mode"] == m)) for m in MODES) for f in faults)
          + f" (of {len(seeds)}; {'/'.join(MODES)})")
    print("\nsummary (failing runs)")
    for m in MODES:
        mine = [r for r in rows if r["mode"] == m]
        ok = sum(rescued(r, healthy["off", r["seed"]], margin) for r in mine)
        print(f"  {m:5}: rescued {ok}/{len(mine)} ({100 * ok / len(mine):.0f}%)")
    auto = [r for r in rows if r["mode"] == "auto"]
    by_hand = sum(r["first_alert"] or 0 for r in rows if r["mode"] == "off" and r["first_alert"])
    print(f"  cost of auto's rescues: {sum(r['skipped'] for r in auto)} steps skipped in "
          f"{sum(len(r['rollbacks']) for r in auto)} rollbacks, against {by_hand} steps lost restarting by hand "
          f"at the first alert of each failing run")
    for m in MODES:
        acts = [a for s in seeds for a in healthy[m, s]["actions"]]
        rolls = [a for s in seeds for a in healthy[m, s]["rollback_actions"]]
        final = ", ".join(f"{healthy[m, s]['val']:.4f}" for s in seeds)
        print(f"  healthy runs, {m:5}: {len(rolls)} rollback(s), {len(acts)} action(s) in all, final val {final}; "
              f"OLMo skipped {sum(healthy[m, s]['olmo_skipped'] for s in seeds)} step(s)")
        for a in acts:
            print(f"    {a}")
    on = sum(healthy["auto", s]["seconds"] for s in seeds)
    off = sum(healthy["off", s]["seconds"] for s in seeds)
    print(f"  time with the ring (auto_adjust, healthy runs) / without: {on / off:.3f}")
    h = healthy["auto", seeds[0]]
    print(f"  host memory of the ring: {h['ring_states']} states, {h['ring_bytes'] / 1e6:.2f} MB = "
          f"{h['ring_bytes'] / h['live_bytes']:.2f}x the model and optimizer state ({h['live_bytes'] / 1e6:.2f} MB)")
    print(f"  {time.time() - t0:.0f} s; workdir {workdir}")
    if args.out:
        Path(args.out).write_text(json.dumps({"margin": margin, "failing": rows, "healthy": list(healthy.values()),
                                              "rescued": {m: [rescued(r, healthy["off", r["seed"]], margin)
                                                              for r in rows if r["mode"] == m] for m in MODES}},
                                             default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
