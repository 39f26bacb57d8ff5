"""A CPU quota for a server under test: a cgroup that gives its processes ``cores``
CPUs' worth of time, however many cores the machine has.

With it, a two-core machine can run "one worker on one core" against "two workers on
two cores" with cores of, say, half a CPU each, and keep the rest for the load
generator (``bench/workers.py --cpu-quota``). The kernel's CFS bandwidth control does
the limiting: in every ``period`` the group's processes together run for at most
``cores x period``, then wait for the next period. Children (the workers and the Redis
that ``xmppd run --workers N`` starts) stay in the group of the process that forks
them, unless :meth:`CpuQuota.split` gives each worker a group of its own inside.

Needs a writable cgroup file system (cgroup v2 with the ``cpu`` controller, or the
v1 ``cpu`` hierarchy), as root in a container or on a machine of one's own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

PERIOD_US = 10_000  # short periods: a throttled server waits at most a few ms


def _mounts() -> list[tuple[str, str, set[str]]]:
    out = []
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.append((parts[1], parts[2], set(parts[3].split(","))))
    return out


def find_root() -> tuple[Path, int]:
    """Where to make the group, and the cgroup version; raises if there is none."""
    for point, fstype, opts in _mounts():
        if fstype == "cgroup" and "cpu" in opts and os.access(point, os.W_OK):
            return Path(point), 1
    for point, fstype, _opts in _mounts():
        if fstype == "cgroup2":
            root = Path(point)
            ctrl = root / "cgroup.controllers"
            if ctrl.exists() and "cpu" in ctrl.read_text().split() and os.access(root, os.W_OK):
                return root, 2
    raise RuntimeError("no writable cgroup with the cpu controller: --cpu-quota needs one "
                       "(run as root, or mount cgroup2 with the cpu controller)")


class CpuQuota:
    """A cgroup ``name`` limited to ``cores`` CPUs (e.g. 0.5 or 1.2)."""

    def __init__(self, name: str, cores: float, root: Optional[Path] = None,
                 version: Optional[int] = None) -> None:
        if root is None or version is None:
            root, version = find_root()
        self.cores = cores
        self.version = version
        self.path = root / name
        self.path.mkdir(exist_ok=True)
        self.subgroups: list[Path] = []
        quota = max(1000, int(cores * PERIOD_US))
        if version == 1:
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            subtree = self.path.parent / "cgroup.subtree_control"
            if "cpu" not in subtree.read_text().split():
                subtree.write_text("+cpu")
            (self.path / "cpu.max").write_text("%d %d" % (quota, PERIOD_US))

    def split(self, pids: list[int], cores: float) -> None:
        """Give each of ``pids`` (with its threads) a group of ``cores`` CPUs of its own
        inside this one, which still limits all of them together: a core each, as on a
        machine with a core per worker, instead of a pool they share (where one worker can
        run on into the other's share while the other waits). The processes left here
        (the master, Redis) run within the whole group's limit."""
        if self.version == 2:
            # cgroup v2 has no processes in a group whose children the cpu controller
            # divides: the others move to a leaf of their own first
            rest = self.path / "rest"
            rest.mkdir(exist_ok=True)
            self.subgroups.append(rest)
            for other in (self.path / "cgroup.procs").read_text().split():
                (rest / "cgroup.procs").write_text(other)
        for i, pid in enumerate(pids):
            sub = CpuQuota("%s/w%d" % (self.path.name, i), cores, self.path.parent,
                           self.version)
            (sub.path / "cgroup.procs").write_text(str(pid))
            self.subgroups.append(sub.path)

    def unsplit(self) -> None:
        """Undo :meth:`split` once the processes have ended, so that the next server starts
        in this group again."""
        for path in self.subgroups[::-1]:
            _rmdir(path)
        self.subgroups = []
        if self.version == 2:
            subtree = self.path / "cgroup.subtree_control"
            if "cpu" in subtree.read_text().split():
                subtree.write_text("-cpu")

    def prefix(self) -> list[str]:
        """A command prefix: the command runs (and forks) inside the group."""
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.path)]

    def throttled_seconds(self) -> float:
        """How long the group has waited for its next period so far."""
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines()
                    if len(line.split()) == 2)
        if self.version == 1:
            return int(stat.get("throttled_time", 0)) / 1e9
        return int(stat.get("throttled_usec", 0)) / 1e6

    def remove(self) -> None:
        """Remove the group and those inside it (once their processes have ended)."""
        self.unsplit()
        _rmdir(self.path)


def _rmdir(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)  # processes still leaving
