"""What monitoring costs, measured paired in one process.

Two models: our default LM (4 blocks, d_model 128, batch 16x128) and a transformer that
is not ours (4 `nn.TransformerEncoderLayer` blocks, pre-LN, causal). For each, the same
nanoGPT-style loop (forward, backward, clip, AdamW step), on one model and optimizer,
runs in blocks of `--steps` steps under each configuration in turn, the order rotating
every round, with a bare block between any two (so each block is compared with the bare
blocks just before and after it: the machine's drift cancels but for one block's worth):

  bare          the loop alone: the baseline
  trainer       our `Trainer` with the gradient monitor off (loss, EMA and logging on)
  default       the loop with a `Monitor` at its defaults (gradients every 3rd step),
                clipping with `monitor.clip_grad_norm_` (it reuses a measured step's norms)
  interval 1    the same, measuring every step
  lightning     the loop with `lightning.pytorch.utilities.grad_norm` every step, logged
                as Lightning's `self.log_dict` would (the latest values every 10 steps)
  per-param     the loop with `p.grad.norm().item()` for every parameter every step,
                each written to TensorBoard (what HF users write in a callback)

Every configuration that logs writes TensorBoard (and ours JSONL too) to a temp dir.
Printed: tokens/s, and the ratio of each block's time to the mean of its two bare
neighbours: the median over rounds, and the mean with twice its standard error (the
error bar says whether a difference of 1% is resolved on this machine).

    python benchmarks/overhead.py [--steps 10] [--rounds 30] [--threads 2] [--models lm,user]
    python benchmarks/overhead.py --phases       # where a monitored step's time goes, by phase
    python benchmarks/overhead.py --phases --weight-mode rebuild   # the Adam rebuild instead of a copy
    python benchmarks/overhead.py --profile      # the same, by torch operator
    python benchmarks/overhead.py --sink-writes  # TensorBoard cost a scalar, one event a scalar or a step
"""
from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainvitals.config import TrainerConfig
from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.monitor import Monitor
from trainvitals.sinks.base import SinkHub
from trainvitals.sinks.jsonl import JSONLSink
from trainvitals.sinks.tensorboard import TensorBoardSink
from trainvitals.tasks.lm.data import ByteCorpus, load_text
from trainvitals.tasks.lm.model import GPT, GPTConfig
from trainvitals.training.trainer import LanguageModelTrainer

BATCH, BLOCK, LOG_EVERY = 16, 128, 10


class UserLM(nn.Module):
    """A user's own transformer LM, built from torch's layers (not ours)."""

    def __init__(self, d: int = 128, layers: int = 4, vocab: int = 256) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(BLOCK, d))
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(d, 4, 4 * d, 0.0, batch_first=True, norm_first=True)
                                    for _ in range(layers))
        self.out = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(BLOCK))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x) + self.pos[: x.shape[1]]
        for layer in self.layers:
            h = layer(h, src_mask=self.mask, is_causal=True)
        return self.out(h)


MODELS = {"lm": lambda: GPT(GPTConfig()), "user": UserLM}


class Loop:
    """One model and optimizer, the bare loop, and the extras each configuration adds,
    switched per block: every configuration runs on the very same tensors."""

    def __init__(self, model: nn.Module, data, logdir: Path) -> None:
        self.model, self.data = model, data
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
        self.step = 0
        self.monitors = {}
        for name, interval in (("default", MonitorConfig().gradient_monitor_interval), ("interval 1", 1)):
            cfg = MonitorConfig(gradient_monitor_interval=interval, enable_post_epoch_evaluation=False)
            d = logdir / name.replace(" ", "_")
            sinks = SinkHub([TensorBoardSink(d), JSONLSink(d / "metrics.jsonl")])
            self.monitors[name] = Monitor(model, self.opt, cfg, sinks=sinks, run_info={"gradient_clip": 1.0})
            self.monitors[name].detach()
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(str(logdir / "others"))
        self.latest: dict[str, torch.Tensor] = {}

    def run(self, steps: int, extra: str = "bare") -> None:
        self.running = extra
        monitor = self.monitors.get(extra)
        if monitor is not None:
            monitor.arm()
        for _ in range(steps):
            x, y = next(self.data)
            loss = F.cross_entropy(self.model(x).flatten(0, 1), y.flatten())
            loss.backward()
            self.step += 1
            if monitor is not None:
                monitor.after_backward()
            elif extra in self.alternatives:
                self.alternatives[extra]()
            self.clip(monitor)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            if monitor is not None:
                monitor.step_end(loss.detach())
        if monitor is not None:
            monitor.detach()  # what a block measured is reported inside it


    @property
    def alternatives(self) -> dict:
        return {"lightning": self.lightning, "per-param": self.per_param}

    def lightning(self) -> None:
        from lightning.pytorch.utilities import grad_norm
        self.latest = grad_norm(self.model, 2)  # its documented use, every step
        if self.step % LOG_EVERY == 0:  # self.log_dict: the latest values at each logging step
            for k, v in self.latest.items():
                self.writer.add_scalar(k, float(v), self.step)

    def per_param(self) -> None:
        for name, p in self.model.named_parameters():
            self.writer.add_scalar(f"grad_norm/{name}", p.grad.norm().item(), self.step)

    def clip(self, monitor: Monitor | None) -> None:
        """torch's clip, or the monitor's (the documented call: it reuses a measured step's norms)."""
        if monitor is not None:
            monitor.clip_grad_norm_(1.0)
        else:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)


class TrainerRun:
    """Our Trainer, monitors off, on the loop's own model and optimizer, continued block by
    block (fit() up to max_steps)."""

    def __init__(self, loop: Loop, corpus: ByteCorpus, logdir: Path) -> None:
        cfg = TrainerConfig(epochs=0, max_steps=1, batch_size=BATCH, lr=1e-3, warmup_steps=0,
                            lr_schedule="constant", progress_bar=False, enable_gradient_monitor=False,
                            enable_post_epoch_evaluation=False, device="cpu")
        self.trainer = LanguageModelTrainer(loop.model, cfg, optimizer=loop.opt, sinks=SinkHub(
            [TensorBoardSink(logdir), JSONLSink(logdir / "metrics.jsonl")]))
        self.corpus = corpus

    def run(self, steps: int) -> None:
        self.trainer.config.max_steps = self.trainer.global_step + steps
        self.trainer.fit(self.corpus)


def batches(corpus: ByteCorpus):
    epoch = 0
    while True:
        yield from corpus.epoch(epoch)
        epoch += 1


def measure(name: str, steps: int, rounds: int, configs: list[str]) -> dict[str, tuple[float, ...]]:
    """Per configuration: tokens/s, and the median and the mean over rounds of its block's
    time against the bare blocks run just before and just after it (the machine's drift
    over one block pair is what is left), with twice the mean's standard error."""
    corpus = ByteCorpus(load_text(), BLOCK, BATCH)
    tmp = Path(tempfile.mkdtemp(prefix="overhead-"))
    torch.manual_seed(0)
    loop = Loop(MODELS[name](), batches(corpus), tmp)
    runs = {c: (lambda n, c=c: loop.run(n, c)) for c in ["bare", *configs] if c != "trainer"}
    if "trainer" in configs and name == "lm":  # our Trainer computes an LM loss on our batches
        trainer = TrainerRun(loop, corpus, tmp / "trainer")
        runs["trainer"] = trainer.run
    for run in runs.values():
        run(3)  # warm up allocator, threads and each configuration's first-call costs

    def block(c: str) -> float:
        t = time.perf_counter()
        runs[c](steps)
        return time.perf_counter() - t
    others = [c for c in runs if c != "bare"]
    times: dict[str, list[float]] = {c: [] for c in runs}
    ratios: dict[str, list[float]] = {c: [] for c in runs}
    for r in range(rounds):
        before = block("bare")
        for c in others[r % len(others):] + others[:r % len(others)]:
            t = block(c)
            after = block("bare")
            times[c].append(t)
            times["bare"] += [before, after]
            ratios[c].append(t / ((before + after) / 2))
            before = after
    out = {"bare": (steps * BATCH * BLOCK / statistics.median(times["bare"]), 1.0, 1.0, 0.0)}
    for c in others:
        se = statistics.stdev(ratios[c]) / len(ratios[c]) ** 0.5 if len(ratios[c]) > 1 else math.nan
        out[c] = (steps * BATCH * BLOCK / statistics.median(times[c]), statistics.median(ratios[c]),
                  statistics.fmean(ratios[c]), 2 * se)
    return out


def profile(steps: int) -> None:
    """torch.profiler over monitored steps of the default LM at interval 1, by operator."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    corpus = ByteCorpus(load_text(), BLOCK, BATCH)
    loop = Loop(GPT(GPTConfig()), batches(corpus), Path(tempfile.mkdtemp()))
    loop.run(3, "interval 1")
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        loop.run(steps, "interval 1")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def sink_writes(n_steps: int = 125, tags: int = 80) -> None:
    """Microseconds a scalar: `SummaryWriter.add_scalar` (one event a scalar) against our
    `TensorBoardSink` (one event a step holding every scalar of that step)."""
    from torch.utils.tensorboard import SummaryWriter
    writer, sink = SummaryWriter(tempfile.mkdtemp()), TensorBoardSink(tempfile.mkdtemp())
    t = time.perf_counter()
    for step in range(n_steps):
        for j in range(tags):
            writer.add_scalar(f"gradient_monitor/gain/{j}", 1.0, step)
    per_scalar = (time.perf_counter() - t) / (n_steps * tags)
    t = time.perf_counter()
    for step in range(n_steps):
        for j in range(tags):
            sink.log(f"gradient_monitor/gain/{j}", 1.0, step)
    sink.flush()
    batched = (time.perf_counter() - t) / (n_steps * tags)
    writer.close(), sink.close()
    print(f"TensorBoard writes, {tags} scalars a step: add_scalar {per_scalar * 1e6:.1f} us a scalar, "
          f"TensorBoardSink {batched * 1e6:.1f} us a scalar")


HOOKS = "block hooks (forward hooks, activation-gradient norms)"
BACKWARD = "after_backward, the rest (every step)"
END = "step_end, the rest: the flush's transfer and unpacking"


def _timed_fn(fn, totals: dict, label: str):
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            totals[label] += time.perf_counter() - t
    return wrapper


def _in_backward(norm, spent: dict, loop: "Loop"):
    """`torch.linalg.vector_norm`, timed into the running configuration's hooks when called
    inside a backward (where only our tensor hooks call it)."""
    def wrapper(*a, **k):
        if torch._C._current_graph_task_id() == -1 or loop.running not in spent:
            return norm(*a, **k)
        t = time.perf_counter()
        try:
            return norm(*a, **k)
        finally:
            spent[loop.running][HOOKS] += time.perf_counter() - t
    return wrapper


def phases(name: str, rounds: int, weight_mode: str = "auto") -> None:
    """Wall time of each monitoring phase per step, at the default interval and at interval 1,
    timed inside the loop around our own calls, against the bare step; and the alternatives'
    own calls (Lightning's `grad_norm`, the per-parameter loop). `rounds` rounds of 30-step
    blocks, each configuration after a bare block, so the machine's drift reaches all alike.
    Whole-step ratios on a shared CPU vary by several percent between identical blocks;
    these timings do not."""
    import collections
    corpus = ByteCorpus(load_text(), BLOCK, BATCH)
    torch.manual_seed(0)
    loop = Loop(MODELS[name](), batches(corpus), Path(tempfile.mkdtemp()))
    configs = ("default", "interval 1")
    spent = {c: collections.defaultdict(float) for c in configs}
    clip = "clip (the monitor's, less torch's in the bare step)"

    def timed(obj, method: str, totals: dict, label: str) -> None:
        setattr(obj, method, _timed_fn(getattr(obj, method), totals, label))
    for c in configs:
        m = loop.monitors[c]
        if weight_mode != "auto":
            from trainvitals.probes.weight_updates import WeightUpdateProbe
            m.updates = WeightUpdateProbe(loop.model, loop.opt, mode=weight_mode)
        timed(m.flow, "collect", spent[c], "gradient norms (after backward)")
        timed(m.updates, "before_step", spent[c], "weight snapshot (before the step)")
        timed(m.updates, "after_step", spent[c], "weight update norms (after the step)")
        timed(m.gradients, "report", spent[c], "gain/update tags and detectors (at logging steps)")
        timed(m.loss, "report", spent[c], "loss tags and detectors (at logging steps)")
        timed(m.sinks, "flush", spent[c], "sink flush (at logging steps)")
        timed(m, "step_end", spent[c], "step_end (every step; holds the flushes above)")
        timed(m, "after_backward", spent[c], "after_backward")
        for factory in ("_pre_hook", "_post_hook"):  # the block hooks the forward runs
            make = getattr(m.flow, factory)
            setattr(m.flow, factory, lambda index, make=make, c=c: _timed_fn(make(index), spent[c], HOOKS))
    # the activation-gradient norms the tensor hooks take in backward: our only norms there
    vector_norm, torch.linalg.vector_norm = torch.linalg.vector_norm, _in_backward(torch.linalg.vector_norm, spent, loop)
    others = {"lightning": "Lightning's grad_norm every step, logged every 10th",
              "per-param": "per-parameter p.grad.norm().item() to TensorBoard"}
    for c in others:
        setattr(loop, c.replace("-", "_"), _timed_fn(getattr(loop, c.replace("-", "_")), spent.setdefault(
            c, collections.defaultdict(float)), others[c]))
    clip_time = collections.defaultdict(float)
    fn = loop.clip

    def timed_clip(monitor):
        t = time.perf_counter()
        fn(monitor)
        clip_time[loop.running] += time.perf_counter() - t
    loop.clip = timed_clip
    for c in ("bare", *configs, *others):
        loop.run(LOG_EVERY * 3, c)
    for totals in spent.values():
        totals.clear()
    clip_time.clear()
    times = {c: [] for c in ("bare", *configs, *others)}
    for _ in range(rounds):
        for c in (*configs, *others):
            for mode in ("bare", c):
                t = time.perf_counter()
                loop.run(LOG_EVERY * 3, mode)
                times[mode].append((time.perf_counter() - t) / (LOG_EVERY * 3))
    steps = rounds * LOG_EVERY * 3
    bare_step = statistics.median(times["bare"])
    print(f"{name} (weight updates: mode={weight_mode!r}): bare step {bare_step * 1e3:.1f} ms "
          f"(median of {len(times['bare'])} 30-step blocks); ms per step, % of the bare step")
    print(f"  {'phase':<52} {'default':>15} {'interval 1':>15}")
    nested = "step_end (every step; holds the flushes above)"
    order = [HOOKS, "gradient norms (after backward)", "weight snapshot (before the step)",
             "weight update norms (after the step)", "loss tags and detectors (at logging steps)",
             "gain/update tags and detectors (at logging steps)", "sink flush (at logging steps)"]
    totals = {}
    for c in configs:
        own = spent[c]
        inside = sum(own[k] for k in order[4:])  # step_end calls the reports and the flush
        own[END] = own.pop(nested, 0.0) - inside - own["weight update norms (after the step)"]
        own[BACKWARD] = own.pop("after_backward", 0.0) - own[order[1]] - own[order[2]]
        own[clip] = clip_time[c] - clip_time["bare"] * steps / (len(times["bare"]) * LOG_EVERY * 3)
        totals[c] = sum(own.values()) / steps
    for label in [*order, BACKWARD, END, clip]:
        cells = [f"{spent[c][label] / steps * 1e3:6.2f} ({spent[c][label] / steps / bare_step * 100:4.1f}%)"
                 for c in configs]
        print(f"  {label:<52} {cells[0]:>15} {cells[1]:>15}")
    cells = [f"{totals[c] * 1e3:6.2f} ({totals[c] / bare_step * 100:4.1f}%)" for c in configs]
    print(f"  {'total of our calls':<52} {cells[0]:>15} {cells[1]:>15}")
    for c, label in others.items():
        secs = spent[c][label] / steps
        print(f"  instead, {label:<43} {'':>15} {secs * 1e3:6.2f} ({secs / bare_step * 100:4.1f}%)")
    whole = [statistics.median(times[c]) / bare_step for c in configs]
    print(f"  {'whole step / bare (median of blocks; noisy)':<52} {whole[0]:>15.3f} {whole[1]:>15.3f}")
    torch.linalg.vector_norm = vector_norm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="steps a block (a multiple of log_every counts flushes fairly)")
    ap.add_argument("--rounds", type=int, default=30, help="rounds (with --phases: rounds / 5 rounds of 30-step blocks)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="lm,user")
    ap.add_argument("--configs", default="trainer,default,interval 1,lightning,per-param",
                    help="compared with the bare loop, which runs between any two of them")
    ap.add_argument("--profile", action="store_true", help="torch.profiler table of measured steps")
    ap.add_argument("--phases", action="store_true", help="time of each monitoring phase per measured step")
    ap.add_argument("--weight-mode", default="auto", choices=("auto", "rebuild", "copy"),
                    help="with --phases: how the weight-update probe measures")
    ap.add_argument("--sink-writes", action="store_true", help="TensorBoard write cost a scalar")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.profile:
        profile(args.steps)
        return
    if args.sink_writes:
        sink_writes()
        return
    if args.phases:
        for name in args.models.split(","):
            phases(name, max(1, args.rounds // 5), args.weight_mode)
        return
    configs = args.configs.split(",")
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, batch {BATCH}x{BLOCK}, "
          f"{args.rounds} rounds of {args.steps}-step blocks, log_every {LOG_EVERY}")
    print(f"{'model':<6} {'configuration':<12} {'tokens/s':>10} {'time vs bare: median':>21} "
          f"{'mean +- 2 SE (rounds)':>22}")
    for name in args.models.split(","):
        for c, (tps, median, mean, err) in measure(name, args.steps, args.rounds, configs).items():
            print(f"{name:<6} {c:<12} {tps:>10.0f} {median:>21.4f} {mean:>14.4f} +- {err:.4f}")
    print("targets: default <= 1.01, interval 1 <= 1.03, trainer >= 0.98x bare in tokens/s (ratio <= 1.02), "
          "interval 1 below lightning and per-param")


if __name__ == "__main__":
    main()
