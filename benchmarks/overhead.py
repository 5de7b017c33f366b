"""What monitoring costs, measured paired in one process.

Two models: our default LM (4 blocks, d_model 128, batch 16x128) and a transformer that
is not ours (4 `nn.TransformerEncoderLayer` blocks, pre-LN, causal). For each, the same
nanoGPT-style loop (forward, backward, clip, AdamW step), on one model and optimizer,
runs in blocks of `--steps` steps under each configuration in turn, the order rotating
every round:

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
Printed: tokens/s, and per round the ratio of each block's time to the bare block of
that round, median over rounds. Pairing cancels the drift of a shared machine.

    python benchmarks/overhead.py [--steps 30] [--rounds 5] [--threads 2] [--models lm,user]
    python benchmarks/overhead.py --phases       # where a monitored step's time goes, by phase
    python benchmarks/overhead.py --phases --weight-mode rebuild   # the Adam rebuild instead of a copy
    python benchmarks/overhead.py --profile      # the same, by torch operator
    python benchmarks/overhead.py --sink-writes  # TensorBoard cost a scalar, one event a scalar or a step
"""
from __future__ import annotations

import argparse
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
            elif extra == "lightning":
                from lightning.pytorch.utilities import grad_norm
                self.latest = grad_norm(self.model, 2)  # its documented use, every step
                if self.step % LOG_EVERY == 0:  # self.log_dict: the latest values at each logging step
                    for k, v in self.latest.items():
                        self.writer.add_scalar(k, float(v), self.step)
            elif extra == "per-param":
                for name, p in self.model.named_parameters():
                    self.writer.add_scalar(f"grad_norm/{name}", p.grad.norm().item(), self.step)
            self.clip(monitor)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            if monitor is not None:
                monitor.step_end(loss.detach())
        if monitor is not None:
            monitor.detach()  # what a block measured is reported inside it


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


def measure(name: str, steps: int, rounds: int, configs: list[str]) -> dict[str, tuple[float, float]]:
    corpus = ByteCorpus(load_text(), BLOCK, BATCH)
    tmp = Path(tempfile.mkdtemp(prefix="overhead-"))
    torch.manual_seed(0)
    loop = Loop(MODELS[name](), batches(corpus), tmp)
    runs = {c: (lambda n, c=c: loop.run(n, c)) for c in configs if c != "trainer"}
    if "trainer" in configs and name == "lm":  # our Trainer computes an LM loss on our batches
        trainer = TrainerRun(loop, corpus, tmp / "trainer")
        runs["trainer"] = trainer.run
    for run in runs.values():
        run(3)  # warm up allocator, threads and each configuration's first-call costs
    times: dict[str, list[float]] = {c: [] for c in runs}
    for r in range(rounds):
        order = list(runs)[r % len(runs):] + list(runs)[:r % len(runs)]
        for c in order:
            t = time.perf_counter()
            runs[c](steps)
            times[c].append(time.perf_counter() - t)
    out = {}
    for c, ts in times.items():
        ratio = statistics.median(t / b for t, b in zip(ts, times["bare"]))
        out[c] = (steps * BATCH * BLOCK / statistics.median(ts), ratio)
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


def phases(name: str, rounds: int, weight_mode: str = "auto") -> None:
    """Wall time of each monitoring phase per measured step (interval 1), timed inside the
    loop, against the bare step: `rounds` pairs of 10-step blocks, bare then measured, so
    the machine's drift reaches both alike. A breakdown that noise barely moves."""
    import collections
    corpus = ByteCorpus(load_text(), BLOCK, BATCH)
    torch.manual_seed(0)
    loop = Loop(MODELS[name](), batches(corpus), Path(tempfile.mkdtemp()))
    m = loop.monitors["interval 1"]
    if weight_mode != "auto":
        from trainvitals.probes.weight_updates import WeightUpdateProbe
        m.updates = WeightUpdateProbe(loop.model, loop.opt, mode=weight_mode)
    spent: dict[str, float] = collections.defaultdict(float)
    clip = "clip (the monitor's, less torch's in the bare step)"

    def timed_method(obj, method: str, label: str, sign=lambda *a: 1) -> None:
        fn = getattr(obj, method)

        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[label] += sign(*a) * (time.perf_counter() - t)
        setattr(obj, method, wrapper)
    timed_method(loop, "clip", clip, sign=lambda monitor: 1 if monitor is not None else -1)
    timed_method(m.flow, "collect", "gradient norms (after backward)")
    timed_method(m.updates, "before_step", "weight snapshot (before the step)")
    timed_method(m.updates, "after_step", "weight update norms (after the step)")
    timed_method(m.gradients, "report", "gain/update tags and detectors (at logging steps)")
    timed_method(m.loss, "report", "loss tags and detectors (at logging steps)")
    timed_method(m.sinks, "flush", "sink flush (at logging steps)")
    loop.run(LOG_EVERY, "interval 1"), loop.run(LOG_EVERY)
    spent.clear()
    bare, monitored = [], []
    for _ in range(rounds):
        for times, extra in ((bare, "bare"), (monitored, "interval 1")):
            t = time.perf_counter()
            loop.run(LOG_EVERY, extra)
            times.append((time.perf_counter() - t) / LOG_EVERY)
    steps = rounds * LOG_EVERY
    bare_step = statistics.median(bare)
    extra = statistics.median(b - a for a, b in zip(bare, monitored))
    print(f"{name} (weight updates: mode={weight_mode!r}): bare step {bare_step * 1e3:.1f} ms, "
          f"measured step {bare_step * 1e3 + extra * 1e3:.1f} ms (median over {rounds} pairs of blocks)")
    for label, secs in spent.items():
        print(f"  {label:<52} {secs / steps * 1e3:6.2f} ms  {secs / steps / bare_step * 100:5.1f}%")
    total = sum(spent.values()) / steps
    print(f"  {'total of the phases':<52} {total * 1e3:6.2f} ms  {total / bare_step * 100:5.1f}%")
    rest = extra - total
    print(f"  {'the rest: block hooks in forward/backward, and noise':<52} {rest * 1e3:6.2f} ms  "
          f"{rest / bare_step * 100:5.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="steps a block (a multiple of log_every counts flushes fairly)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="lm,user")
    ap.add_argument("--configs", default="bare,trainer,default,interval 1,lightning,per-param")
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
            phases(name, args.rounds * 2, args.weight_mode)
        return
    configs = args.configs.split(",")
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, batch {BATCH}x{BLOCK}, "
          f"{args.rounds} rounds of {args.steps}-step blocks, log_every {LOG_EVERY}")
    print(f"{'model':<6} {'configuration':<12} {'tokens/s':>10} {'time vs bare (median of rounds)':>32}")
    for name in args.models.split(","):
        for c, (tps, ratio) in measure(name, args.steps, args.rounds, configs).items():
            print(f"{name:<6} {c:<12} {tps:>10.0f} {ratio:>32.4f}")
    print("targets: default <= 1.01, interval 1 <= 1.03, trainer >= 0.98x bare in tokens/s (ratio <= 1.02), "
          "interval 1 below lightning and per-param")


if __name__ == "__main__":
    main()
