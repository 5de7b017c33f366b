"""Step-time overhead of gradient + weight-update monitoring, measured paired.

One model, one Trainer, its real `Monitor`. The monitor's schedule is
overridden so monitored and unmonitored stretches alternate on the same model in the
same process, and each stretch is timed from one step's start to the next step's
start (so the logging flush and the host transfer of the measurements are counted).

  interval 1   pairs of single steps: one monitored, one not (order alternates)
  interval N   pairs of N-step blocks: one with the default schedule (first step of
               the block monitored), one with monitoring off

Prints the median of the pair ratios for each. These machines drift a few percent
between repeats, which pairing cancels; the median ignores the odd preempted step.

    python benchmarks/overhead.py [--pairs 60] [--blocks 10] [--interval 10] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from trainvitals.config import TrainerConfig
from trainvitals.sinks.base import SinkHub
from trainvitals.tasks.lm.data import ByteCorpus, load_text
from trainvitals.tasks.lm.model import GPT, GPTConfig
from trainvitals.training.callbacks import TrainerCallback
from trainvitals.training.trainer import LanguageModelTrainer


class StepClock(TrainerCallback):
    state_key = "clock"

    def __init__(self):
        self.starts: list[float] = []

    def on_step_begin(self, ctx):
        self.starts.append(time.perf_counter())

    def durations(self) -> list[float]:  # step i: start(i) -> start(i+1)
        return [b - a for a, b in zip(self.starts, self.starts[1:])]


def run(schedule, steps: int, log_every: int, warmup: int = 4) -> list[float]:
    torch.manual_seed(0)
    model_cfg = GPTConfig()  # the default train-lm model
    cfg = TrainerConfig(epochs=0, max_steps=steps + warmup + 1, log_every=log_every, progress_bar=False,
                        enable_post_epoch_evaluation=False, on_nonfinite_loss="warn")
    clock = StepClock()
    trainer = LanguageModelTrainer(GPT(model_cfg), cfg, callbacks=[clock], sinks=SinkHub())
    monitor = trainer.monitor  # the real monitor, with `monitors(step)` decided by the benchmark
    monitor.monitors = lambda s: s > warmup and schedule(s - warmup)
    monitor.flow.detach()  # it armed step 1 by the default schedule
    trainer.fit(ByteCorpus(load_text(), model_cfg.block_size, cfg.batch_size))
    return clock.durations()[warmup:warmup + steps]


def paired(on: list[float], off: list[float]) -> tuple[float, float, float]:
    ratios = [a / b for a, b in zip(on, off)]
    return statistics.median(ratios), statistics.median(on), statistics.median(off)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=60, help="pairs of single steps (interval 1)")
    ap.add_argument("--blocks", type=int, default=10, help="pairs of N-step blocks (default interval)")
    ap.add_argument("--interval", type=int, default=TrainerConfig().gradient_monitor_interval)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    # interval 1: odd/even steps swap roles every pair so neither always goes first
    def every_other(s: int) -> bool:
        pair, second = divmod(s - 1, 2)
        return bool(second) == bool(pair % 2)
    d = run(every_other, 2 * args.pairs, log_every=1)
    on = [t for i, t in enumerate(d, 1) if every_other(i)]
    off = [t for i, t in enumerate(d, 1) if not every_other(i)]
    r1, on1, off1 = paired(on, off)

    n = args.interval

    def block_on(s: int) -> bool:  # monitored stretch: its first step is measured
        block, pos = divmod(s - 1, n)
        pair, second = divmod(block, 2)
        return pos == 0 and bool(second) == bool(pair % 2)
    d = run(block_on, 2 * n * args.blocks, log_every=n)
    blocks = [sum(d[i:i + n]) for i in range(0, len(d), n)]
    on_b = [b for j, b in enumerate(blocks) if block_on(j * n + 1)]
    off_b = [b for j, b in enumerate(blocks) if not block_on(j * n + 1)]
    rn, onn, offn = paired(on_b, off_b)

    print(f"gradient + weight-update monitoring, default LM ({GPTConfig().n_layers} blocks, d_model "
          f"{GPTConfig().d_model}, batch {TrainerConfig().batch_size}x{GPTConfig().block_size}), "
          f"{torch.get_num_threads()} threads, {torch.device('cpu')}")
    print(f"{'interval':>9} {'pairs':>6} {'monitored':>12} {'plain':>12} {'ratio (median of pairs)':>25}")
    print(f"{1:>9} {len(on):>6} {on1 * 1e3:>9.1f} ms {off1 * 1e3:>9.1f} ms {r1:>25.4f}")
    print(f"{n:>9} {len(on_b):>6} {onn / n * 1e3:>9.1f} ms {offn / n * 1e3:>9.1f} ms {rn:>25.4f}")
    print("targets: <= 1.03 at interval 1, <= 1.01 at the default interval")


if __name__ == "__main__":
    main()
