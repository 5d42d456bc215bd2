"""Facts about this machine that decide Bazel's defaults: platform, cores, memory."""

from __future__ import annotations

from dataclasses import dataclass

import psutil

# A C++ compile of TensorFlow's larger files peaks near 2 GB; fewer jobs than that would allow
# keeps an 8-16 GB Mac out of swap, where compilers are otherwise killed (see D01/D03 logs).
_GB_PER_JOB = 2.0
_RAM_SHARE = 0.5


@dataclass(frozen=True)
class Resources:
    """What tfwheels passes to Bazel so the host does not swap."""

    jobs: int
    local_ram_mb: int
    cores: int
    total_ram_mb: int

    def bazel_flags(self) -> list[str]:
        """``--jobs`` and ``--local_ram_resources`` for these resources."""
        return [f"--jobs={self.jobs}", f"--local_ram_resources={self.local_ram_mb}"]


def resources(cores: int | None = None, total_ram_mb: int | None = None) -> Resources:
    """Default Bazel resources for this host (or for the given cores and RAM).

    Jobs: one per core, but no more than one per 2 GB of RAM. RAM: half of the total, the share
    Bazel's own docs suggest for a machine that is also used for other work.
    """
    cores = cores or psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
    total = total_ram_mb or psutil.virtual_memory().total // (1024 * 1024)
    jobs = max(1, min(cores, int(total / 1024 / _GB_PER_JOB)))
    return Resources(jobs=jobs, local_ram_mb=int(total * _RAM_SHARE), cores=cores, total_ram_mb=total)
