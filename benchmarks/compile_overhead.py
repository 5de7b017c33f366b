"""What monitoring costs a torch.compile'd model, measured paired in one process.

Two compiled copies of our default LM (4 blocks, d_model 128): one bare, one with a
`Monitor` at its defaults (gradients every 3rd step). Under compile the block hooks stay
in the graph on every step (docs: "torch.compile and mixed precision"), so what is
measured is the whole loop (forward, backward, AdamW step, the monitor's calls), in
blocks of `--steps` steps: bare, monitored, bare, ... Printed: the graphs each copy
compiled and its graph breaks, then the ratio of each monitored block's time to the mean
of its two bare neighbours: the median over rounds, and the mean with twice its
standard error.

    python benchmarks/compile_overhead.py [--steps 6] [--rounds 10] [--threads 2] [--backend inductor]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch._dynamo
import torch.nn.functional as F
from torch._dynamo.utils import counters

from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.monitor import Monitor
from trainvitals.sinks.base import SinkHub
from trainvitals.tasks.lm.model import GPT, GPTConfig


class Loop:
    def __init__(self, monitored: bool, backend: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        torch.manual_seed(0)
        raw = GPT(GPTConfig())
        self.optimizer = torch.optim.AdamW(raw.parameters(), lr=3e-4)
        self.graphs = 0

        def counting(gm, example_inputs):
            self.graphs += 1
            return torch._dynamo.lookup_backend(backend)(gm, example_inputs)
        self.model = torch.compile(raw, backend=counting)
        self.monitor = Monitor(self.model, self.optimizer, MonitorConfig(), sinks=SinkHub()) if monitored else None
        self.batch = batch

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        x, y = self.batch
        for _ in range(steps):
            loss = F.cross_entropy(self.model(x).flatten(0, 1), y.flatten())
            loss.backward()
            if self.monitor is not None:
                self.monitor.after_backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.monitor is not None:
                self.monitor.step_end(loss.detach())
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="inductor")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (16, GPTConfig().block_size + 1), generator=g)
    batch = (data[:, :-1], data[:, 1:])
    counters.clear()
    bare = Loop(False, args.backend, batch)
    bare.run(3)
    bare_breaks = sum(counters["graph_break"].values())
    monitored = Loop(True, args.backend, batch)
    monitored.run(3)
    print(f"graphs compiled: bare {bare.graphs}, monitored {monitored.graphs}; graph breaks: "
          f"bare {bare_breaks}, monitored {sum(counters['graph_break'].values()) - bare_breaks}")
    ratios = []
    before = bare.run(args.steps)
    for _ in range(args.rounds):
        during = monitored.run(args.steps)
        after = bare.run(args.steps)
        ratios.append(during / ((before + after) / 2))
        before = after
    mean = statistics.fmean(ratios)
    err = 2 * statistics.stdev(ratios) / math.sqrt(len(ratios))
    print(f"monitored / bare step time: median {statistics.median(ratios):.3f}, mean {mean:.3f} ± {err:.3f} "
          f"({args.rounds} rounds of {args.steps} steps, {args.backend}, {args.threads} threads)")


if __name__ == "__main__":
    main()
