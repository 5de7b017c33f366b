"""What monitoring costs under DDP: 2 CPU processes (gloo), paired in one run.

Our default LM (4 blocks, d_model 128) in DDP, `--batch` rows a rank, a nanoGPT-style
loop (forward, backward, clip, AdamW step). Blocks of `--steps` steps alternate, the
order rotating every round, between

  ddp        the loop alone: the baseline
  default    the loop with a `Monitor` at its defaults (gradients every 3rd step, logging
             every 10th; JSONL and TensorBoard on rank 0)
  interval 1 the same, measuring every step

Printed by rank 0: each configuration's step time over the `ddp` block of its round,
median over rounds, and the collectives trainvitals called per step (DDP's own gradient
all-reduce is not ours and not counted).

    python benchmarks/distributed_overhead.py [--steps 30] [--rounds 5] [--nproc 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as tdist
import torch.nn as nn
import torch.nn.functional as F

from trainvitals import distributed as dist
from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.monitor import Monitor
from trainvitals.probes.sync_counter import count_collectives
from trainvitals.sinks.base import SinkHub
from trainvitals.sinks.jsonl import JSONLSink
from trainvitals.sinks.tensorboard import TensorBoardSink
from trainvitals.tasks.lm.model import GPT, GPTConfig

BLOCK = 128
CONFIGS = {"default": MonitorConfig(), "interval 1": MonitorConfig(gradient_monitor_interval=1)}


def run(steps: int, rounds: int, batch: int) -> None:
    dist.init_from_env("cpu")
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=BLOCK))
    net = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tmp = Path(tempfile.mkdtemp())
    monitors = {}
    for name, cfg in CONFIGS.items():
        sinks = SinkHub([TensorBoardSink(str(tmp / name)), JSONLSink(tmp / name / "m.jsonl")]) \
            if dist.is_main() else SinkHub()
        monitors[name] = Monitor(model, opt, cfg, sinks=sinks)
        monitors[name].detach()
    g = torch.Generator().manual_seed(dist.rank())
    data = torch.randint(0, 256, (8, batch, BLOCK + 1), generator=g)
    calls = count_collectives().__enter__()  # until the process ends

    def block(name: str) -> tuple[float, float]:
        m = monitors.get(name)
        if m is not None:
            m.arm()
        before = calls.count
        tdist.barrier()
        t0 = time.perf_counter()
        for i in range(steps):
            x = data[i % len(data)]
            loss = F.cross_entropy(net(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
            loss.backward()
            if m is not None:
                m.after_backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if m is not None:
                m.after_optimizer_step()
            opt.zero_grad(set_to_none=True)
            if m is not None:
                m.step_end(loss.detach())
        if m is not None:
            m.detach()  # reports what is pending (a collective), inside the timed block
        tdist.barrier()
        ours = calls.count - before - 2  # the two barriers above
        return time.perf_counter() - t0, ours / steps

    names = ["ddp", *CONFIGS]
    block("ddp")  # warm-up
    ratios: dict[str, list[float]] = {n: [] for n in CONFIGS}
    per_step: dict[str, float] = {}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        times = {}
        for name in order:
            times[name], per_step[name] = block(name)
        for name in CONFIGS:
            ratios[name].append(times[name] / times["ddp"])
    if dist.is_main():
        world = dist.world_size()
        print(f"DDP, {world} CPU processes (gloo), default LM, {batch}x{BLOCK} tokens a rank, "
              f"{steps} steps a block, {rounds} rounds")
        print(f"{'config':<12} {'time / ddp (median)':>20} {'range':>16} {'our collectives a step':>24}")
        for name in CONFIGS:
            rs = sorted(ratios[name])
            print(f"{name:<12} {statistics.median(rs):>20.3f} {rs[0]:>7.3f}-{rs[-1]:<7.3f} {per_step[name]:>24.2f}")
    for m in monitors.values():
        m.close()
        m.sinks.close()
    dist.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=8, help="rows a rank (default: %(default)s)")
    p.add_argument("--nproc", type=int, default=2)
    args = p.parse_args()
    if "LOCAL_RANK" not in os.environ:  # launch ourselves under torchrun
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
               __file__, *sys.argv[1:]]
        raise SystemExit(subprocess.call(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}))
    run(args.steps, args.rounds, args.batch)


if __name__ == "__main__":
    main()
