"""The GPU check: run on one CUDA device, under 5 minutes. Without CUDA it says so and exits 0.

1. Zero host-device syncs on steps that neither monitor nor log: those steps run under
   `torch.cuda.set_sync_debug_mode("error")`, which raises on any sync.
2. Overhead, paired in one process: the default LM's loop bare, with a `Monitor` at its
   defaults, and at interval 1 (tokens/s and the median ratio to bare over rounds).
3. Peak memory (`torch.cuda.max_memory_allocated`) of a step without and with monitoring.

    python benchmarks/gpu_check.py [--rounds 5] [--steps 30]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.monitor import Monitor
from trainvitals.sinks.base import SinkHub
from trainvitals.tasks.lm.model import GPT, GPTConfig

BATCH, BLOCK = 32, 256


class Run:
    def __init__(self, interval: int | None, device: torch.device, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = GPT(GPTConfig(block_size=BLOCK)).to(device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.monitor = None if interval is None else Monitor(
            self.model, self.opt, MonitorConfig(gradient_monitor_interval=interval), sinks=SinkHub())
        g = torch.Generator(device=device).manual_seed(seed)
        self.data = torch.randint(0, 256, (8, BATCH, BLOCK + 1), device=device, generator=g)
        self.i = 0

    def step(self) -> None:
        b = self.data[self.i % len(self.data)]
        self.i += 1
        loss = F.cross_entropy(self.model(b[:, :-1]).flatten(0, 1), b[:, 1:].flatten())
        loss.backward()
        if self.monitor is not None:
            self.monitor.after_backward()
            self.monitor.clip_grad_norm_(1.0)
        else:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.monitor is not None:
            self.monitor.step_end(loss.detach())

    def quiet(self) -> bool:
        """The next step neither measures nor logs."""
        m = self.monitor
        nxt = m.step + 1
        return not m.monitors(nxt) and nxt % m.config.log_every != 0


def check_no_sync(device: torch.device, steps: int) -> int:
    run = Run(3, device)
    for _ in range(3):  # warm up (first steps allocate, cuBLAS initialises)
        run.step()
    checked = 0
    for _ in range(steps):
        if run.quiet():
            torch.cuda.set_sync_debug_mode("error")
            try:
                run.step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
            checked += 1
        else:
            run.step()
    return checked


def overhead(device: torch.device, rounds: int, steps: int) -> dict[str, tuple[float, float]]:
    runs = {"bare": Run(None, device), "default (every 3rd)": Run(3, device), "interval 1": Run(1, device)}
    for r in runs.values():
        for _ in range(3):
            r.step()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(rounds):
        names = list(runs)[i % 3:] + list(runs)[:i % 3]
        for name in names:
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(steps):
                runs[name].step()
            torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    return {k: (steps * BATCH * BLOCK / statistics.median(v),
                statistics.median(a / b for a, b in zip(v, times["bare"]))) for k, v in times.items()}


def peak_memory(device: torch.device, interval: int | None) -> float:
    run = Run(interval, device)
    run.step()  # optimizer state exists from here on
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(3):  # steps 2-4: step 4 is measured at interval 3, every one at interval 1
        run.step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(device) / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: skipped: no CUDA device here (torch.cuda.is_available() is False)")
        return 0
    device = torch.device("cuda", 0)
    print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, batch {BATCH}x{BLOCK}")
    t0 = time.perf_counter()
    checked = check_no_sync(device, 40)
    print(f"no host-device sync: {checked} steps that neither measure nor log ran under "
          f"set_sync_debug_mode('error') without one")
    print(f"{'configuration':<20} {'tokens/s':>10} {'time vs bare':>13}")
    for name, (tps, ratio) in overhead(device, args.rounds, args.steps).items():
        print(f"{name:<20} {tps:>10.0f} {ratio:>13.4f}")
    base = peak_memory(device, None)
    for interval in (3, 1):
        mem = peak_memory(device, interval)
        print(f"peak memory, interval {interval}: {mem:.0f} MiB vs {base:.0f} MiB unmonitored ({mem / base:.3f}x)")
    print(f"gpu_check: done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
