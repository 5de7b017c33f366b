"""A plain training loop on `trainvitals.Monitor`, run alone or under `torchrun`.

    python worker.py OUT.json --mode ddp|fsdp|none [--batch B] [--nan-rank R --nan-step S]

The model (a tiny byte GPT) and the global batches are the same whatever the number of
processes: rank r of N trains on rows r*B..(r+1)*B of each global batch of N*B rows, so
a 2-rank run with --batch B must log what one process with --batch 2B logs. Rank 0
writes every logged scalar, the events, and the count of collectives trainvitals called
per step, to OUT.json; every rank writes OUT.rank<r>.json with its events and stop.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch
import torch.distributed as tdist
import torch.nn as nn
import torch.nn.functional as F

from trainvitals import distributed as dist
from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.monitor import Monitor
from trainvitals.monitor.outbox import StopReason
from trainvitals.probes.sync_counter import count_collectives
from trainvitals.sinks.base import Sink, SinkHub
from trainvitals.tasks.lm.model import GPT, GPTConfig

MODEL = GPTConfig(n_layers=3, d_model=32, n_heads=2, block_size=16, dropout=0.0)


class Record(Sink):
    def __init__(self) -> None:
        self.scalars: dict[str, list[list[float]]] = {}

    def log(self, tag, value, step):
        self.scalars.setdefault(tag, []).append([step, value])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--mode", choices=("ddp", "fsdp", "none"), default="ddp")
    p.add_argument("--batch", type=int, default=4, help="rows per rank")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--interval", type=int, default=1)
    p.add_argument("--log-every", type=int, default=4)
    p.add_argument("--policy", default="skip_step")
    p.add_argument("--nan-rank", type=int, default=-1)
    p.add_argument("--nan-step", type=int, default=-1)
    p.add_argument("--stop-rank", type=int, default=-1, help="this rank asks to stop (as SIGTERM would)")
    p.add_argument("--stop-step", type=int, default=-1)
    p.add_argument("--auto-adjust", action="store_true", help="roll back on a trigger (a state every log_every steps)")
    args = p.parse_args()
    dist.init_from_env("cpu")
    world, rank = dist.world_size(), dist.rank()
    torch.manual_seed(0)
    model = GPT(MODEL)
    if world > 1 and args.mode == "fsdp":
        from torch.distributed.fsdp import fully_shard
        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)
        net = model
    elif world > 1 and args.mode == "ddp":
        net = nn.parallel.DistributedDataParallel(model)
    else:
        net = model
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    record = Record()
    config = MonitorConfig(log_every=args.log_every, gradient_monitor_interval=args.interval,
                           on_nonfinite_loss=args.policy, auto_adjust=args.auto_adjust, rollback_every=args.log_every)
    monitor = Monitor(model, opt, config, blocks=list(zip(map(str, range(MODEL.n_layers)), model.blocks)),
                      sinks=SinkHub([record]))
    g = torch.Generator().manual_seed(1)
    rows = args.batch * world
    data = torch.randint(0, 64, (args.steps, rows, MODEL.block_size + 1), generator=g)
    calls = count_collectives().__enter__()  # until the process ends
    per_step, stopped_at = [], None
    for step in range(1, args.steps + 1):
        before = calls.count
        batch = dist.shard_rows(data[step - 1])
        logits = net(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        if rank == args.nan_rank and step == args.nan_step:
            loss = loss * math.nan
        loss.backward()
        monitor.after_backward()
        skip = monitor.skip_step(loss.detach())
        if not skip:
            opt.step()
        monitor.after_optimizer_step()
        opt.zero_grad(set_to_none=True)
        if rank == args.stop_rank and step == args.stop_step:
            monitor.request_stop_from_rank(StopReason.INTERRUPTED, "asked on this rank")
        monitor.step_end(loss.detach())
        per_step.append(calls.count - before)
        if monitor.stop_reason is not None:
            stopped_at = step
            break
    monitor.close()
    events = [{"kind": e.kind, "step": e.step, "severity": e.severity} for e in monitor.events]
    mine = {"events": events, "stopped_at": stopped_at,
            "stop_reason": monitor.stop_reason.value if monitor.stop_reason else None,
            "rollbacks": monitor.rollback.done if monitor.rollback is not None else [],
            "param_sum": float(sum(p.detach().float().sum() for p in
                                   (dist.local_view(q) for q in model.parameters())))}
    with open(f"{args.out}.rank{rank}.json", "w") as f:
        json.dump(mine, f)
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump({"scalars": record.scalars, "collectives_per_step": per_step, **mine}, f)
    if tdist.is_initialized():
        tdist.destroy_process_group()


if __name__ == "__main__":
    main()
    # Everything is written and the process group destroyed. Leave without the interpreter's
    # teardown, where torch's gloo threads are destroyed still joinable on some exits
    # ("terminate called without an active exception", SIGABRT): it failed about 1 run in 3
    # on a quiet 2-core machine, after this worker's results were complete.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
