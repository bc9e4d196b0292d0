"""What a command costs, whole process tree included: wall time, CPU time and peak memory.

A run may fork workers (Beam's multi-process mode, a `multiprocessing.Pool`, a fork server
and its workers), so the process alone says too little. CPU time comes from `os.wait4`'s
rusage, which counts the process and every descendant it (or a descendant) reaped; on Linux
this process is made a subreaper, so a descendant the command leaves behind (a fork server
that outlives it by a moment) is reaped here and counted too. `python
tests/benchmarks/process_tree.py` shows that with a child that forks a busy worker. Memory
is sampled from /proc every 0.1 s over the tree, summed (shared pages count once per
process, so the sum is an upper bound), beside the largest single process's peak from
rusage. The same samples give a lower bound of the tree's CPU time: a measure that exceeds
rusage's means some process was never reaped, and says so.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20
_INTERVAL = 0.1


@dataclass
class Usage:
    """One run of a command: wall seconds, CPU-seconds (user + sys) of the process tree,
    the largest process's peak RSS and the peak of the tree's summed RSS (MB), its stderr."""

    seconds: float
    cpu: float
    rss_mb: float
    tree_rss_mb: float
    stderr: str

    @property
    def cores(self) -> float:
        """Cores busy on average: CPU-seconds per wall second."""
        return self.cpu / self.seconds


def pinned(command: list[str], cores: int | None) -> list[str]:
    """`command` under `taskset -c 0-(cores-1)`, so it runs on that many cores; as is if
    `cores` is None. taskset execs the command, so the process is still the one measured."""
    if cores is None:
        return command
    if not 1 <= cores <= (os.cpu_count() or 1):
        sys.exit(f"--cores {cores}: this machine has {os.cpu_count()} cores")
    return ["taskset", "-c", f"0-{cores - 1}", *command]


def _processes() -> dict[int, tuple[int, float, float, float]]:
    """Every process now: pid -> (parent pid, start time, CPU seconds, RSS in MB), from
    /proc/PID/stat (its RSS field is the pages status's VmRSS counts)."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:  # It ended meanwhile.
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()  # The name in brackets may hold spaces.
        cpu = (int(fields[11]) + int(fields[12])) / _TICK
        table[int(name)] = (int(fields[1]), float(fields[19]), cpu, int(fields[21]) * _PAGE_MB)
    return table


class _Sampler(threading.Thread):
    """Samples the tree under `root` until stopped: the peak of its summed RSS, and the last
    CPU time seen of each process (keyed by pid and start time, as pids are reused)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_mb = 0.0
        self.cpu: dict[tuple[int, float], float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            table = _processes()
            children: dict[int, list[int]] = {}
            for pid, (parent, *_) in table.items():
                children.setdefault(parent, []).append(pid)
            tree, total = [self.root] if self.root in table else [], 0.0
            while tree:
                pid = tree.pop()
                _, started, cpu, rss = table[pid]
                self.cpu[pid, started] = cpu
                total += rss
                tree += children.get(pid, [])
            self.peak_mb = max(self.peak_mb, total)
            self.stop.wait(_INTERVAL)


def _become_subreaper() -> None:
    """Orphaned descendants of the commands run here become children of this process."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _reap_orphans() -> float:
    """Waits for the descendants the last command left behind; their CPU-seconds."""
    cpu = 0.0
    while True:
        try:
            _, _, usage = os.wait4(-1, 0)
        except ChildProcessError:
            return cpu
        cpu += usage.ru_utime + usage.ru_stime


def measure(command: list[str], cores: int | None = None) -> Usage:
    """Runs `command` (on `cores` cores if given) and measures it; exits if it fails."""
    _become_subreaper()
    command = pinned(command, cores)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = _Sampler(process.pid)
    sampler.start()
    with process.stderr:
        stderr = process.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    orphans = _reap_orphans()
    sampler.stop.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again.
    if process.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{stderr[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime + orphans
    seen = sum(sampler.cpu.values())
    if seen > cpu + max(0.5, 0.05 * cpu):
        print(
            f"warning: the process tree used at least {seen:.1f} CPU-s, wait4 counts "
            f"{cpu:.1f}: some process was not reaped; its CPU time is missing",
            file=sys.stderr,
        )
    rss = usage.ru_maxrss / 1024
    return Usage(seconds, cpu, rss, max(sampler.peak_mb, rss), stderr)


def _check() -> None:
    """Shows that a grandchild's CPU time is counted, reaped by the child or left behind."""
    child = (
        "import os, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    start = time.process_time()\n"
        "    while time.process_time() - start < 1.0:\n"
        "        pass\n"
        "    os._exit(0)\n"
    )
    for how, end in (("reaps it", "os.waitpid(pid, 0)\n"), ("leaves it", "time.sleep(1.2)\n")):
        run = measure([sys.executable, "-c", child + end])
        print(
            f"a child that forks a worker busy for 1 CPU-s and {how}: "
            f"{run.cpu:.2f} CPU-s counted, {run.seconds:.2f} s wall, "
            f"peak RSS summed {run.tree_rss_mb:.0f} MB, largest process {run.rss_mb:.0f} MB"
        )


if __name__ == "__main__":
    _check()
