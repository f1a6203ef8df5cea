"""Run a command and measure it: wall seconds, CPU seconds and peak RSS of its whole process tree."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

_SAMPLE_S = 0.05  # RSS sampling period; shorter peaks than this can be missed


@dataclass(frozen=True)
class Measurement:
    """``wall_s`` and ``cpu_s`` (user + system of the process and all its waited-for children) in seconds,
    ``peak_rss_bytes`` the highest sum of resident memory over the process tree (sampled every 50 ms)."""

    wall_s: float
    cpu_s: float
    peak_rss_bytes: int


def measure(command: list[str], env: dict[str, str], log: Path) -> Measurement:
    """Run ``command`` to completion with ``env``, its output in ``log``.

    Raises:
        RuntimeError: the command failed (the message ends with the log's last lines).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = 0
    with open(log, "w") as out:
        started = time.perf_counter()
        process = psutil.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                try:
                    tree = [process, *process.children(recursive=True)]
                    peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
                except psutil.Error:
                    pass
                time.sleep(_SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{' '.join(command)} exited with {code}; see {log}:\n{tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measurement(wall, cpu, peak)


def median(measurements: list[Measurement]) -> Measurement:
    """Each field's median over repeated runs."""
    return Measurement(statistics.median(m.wall_s for m in measurements),
                       statistics.median(m.cpu_s for m in measurements),
                       int(statistics.median(m.peak_rss_bytes for m in measurements)))


def environment(**overrides: str) -> dict[str, str]:
    """This process's environment with ``overrides``."""
    return {**os.environ, **overrides}
