"""Which thread count a kernel's calls use: the estimate's candidate, confirmed by timing.

The estimate (``kernel.threads_for``) only proposes a count ``c > 1``; whether ``c`` threads beat
one on this machine, now, depends on what else runs on its cores. So a kernel's first calls are
a trial: ``TRIAL`` calls alternating 1 and ``c`` threads (in the order 1 c c 1 1 c, so a drift
in the machine's load hits both alike), timed with the monotonic clock around the native call;
the kernel then settles on ``c`` only if the median of its calls is below ``GAIN`` times the
one-thread median, and on 1 otherwise. The results are bit-identical either way (parallel.py), so
only the speed depends on the choice.

Re-checked: after ``RECHECK_CALLS`` settled calls, and when the number of idle cores changes
(``/proc/loadavg``'s count of running threads, read every ``LOAD_CHECK_CALLS`` calls; a change
seen on two reads in a row, so one process's blip does not restart the trial).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from statistics import median

TRIAL = (1, 0, 0, 1, 1, 0)  # 1: one thread; 0: the candidate count
GAIN = 0.9  # the candidate must be at least 10% faster than one thread
RECHECK_CALLS = 1000
LOAD_CHECK_CALLS = 50


def running_threads() -> int | None:
    """The threads running or ready to run on the machine now (``/proc/loadavg``), or None."""
    try:
        with open("/proc/loadavg") as loadavg:
            return int(loadavg.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def idle_cores(running: int | None, cpus: int) -> int | None:
    """Cores nothing else runs on (the caller counts as running), from ``running_threads()``.

    >>> idle_cores(1, 4), idle_cores(3, 4), idle_cores(12, 2)
    (3, 1, 0)
    """
    return None if running is None else max(0, min(cpus, cpus - running))


class ThreadChoice:
    """One kernel's thread count under one setting: ``next_count()``, then ``record(count, ns)``.

    >>> choice = ThreadChoice(2, load=lambda: None)
    >>> while not choice.settled:  # two threads take 100 ns, one takes 300
    ...     count = choice.next_count()
    ...     choice.record(count, 100 if count == 2 else 300)
    >>> choice.threads, choice.decisions
    (2, 1)
    """

    def __init__(self, candidate: int, load: Callable[[], int | None] = running_threads):
        self.candidate = candidate
        self.load = load
        self.cpus = cpu_count()
        self.decisions = 0  # how many times a trial settled (tests count them; no clock involved)
        self.threads = 1
        self.settled = candidate <= 1
        self.samples: dict[int, list[int]] = {}
        self.calls = 0
        self.idle_at_decision: int | None = None
        self.idle_changes = 0
        if not self.settled:
            self._start_trial()

    @classmethod
    def fixed(cls, count: int) -> ThreadChoice:
        """A choice that is ``count`` threads, with no trial (``kernel.set_exact_threads``)."""
        choice = cls(1)
        choice.threads = count
        return choice

    def _start_trial(self) -> None:
        self.settled = False
        self.samples = {1: [], self.candidate: []}
        self.trial_calls = 0

    def next_count(self) -> int:
        """The thread count of the next call (during a trial, the one the trial times next)."""
        if self.settled:
            return self.threads
        return TRIAL[self.trial_calls] or self.candidate

    def record(self, count: int, elapsed_ns: int) -> None:
        """One timed trial call of ``count`` threads; settles after the last."""
        self.samples[count].append(elapsed_ns)
        self.trial_calls += 1
        if self.trial_calls == len(TRIAL):
            faster = median(self.samples[self.candidate]) < GAIN * median(self.samples[1])
            self.threads = self.candidate if faster else 1
            self.settled = True
            self.decisions += 1
            self.calls = 0
            self.idle_changes = 0
            self.idle_at_decision = idle_cores(self.load(), self.cpus)

    def tick(self) -> None:
        """One settled call: restart the trial now and then, or when the idle cores changed."""
        if self.candidate <= 1:
            return
        self.calls += 1
        if self.calls >= RECHECK_CALLS:
            self._start_trial()
        elif self.calls % LOAD_CHECK_CALLS == 0:
            changed = idle_cores(self.load(), self.cpus) != self.idle_at_decision
            self.idle_changes = self.idle_changes + 1 if changed else 0
            if self.idle_changes >= 2:
                self._start_trial()
