"""CPU seconds (user + system) of a running service process and every live process of its
group (gunicorn's workers, a Celery pool's children), read from ``/proc/<pid>/stat``."""

from __future__ import annotations

import os
from pathlib import Path

from tests.harness import ServiceProcess

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def pid_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid``; 0 for a process already gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # "pid (comm) state ..." : comm may hold spaces; utime and stime are fields 14 and 15.
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def cpu_seconds(process: ServiceProcess) -> float:
    """CPU seconds so far of ``process`` and its group's live members. Take it before and after
    a measurement: the difference is what the measurement cost (a child that exits in between
    takes its share with it, which none of the measured pools do)."""
    pids = {process.popen.pid, *process.pool_pids()}
    return sum(pid_cpu_seconds(pid) for pid in pids)
