"""What a bench result depends on besides the code: the machine and the versions, printed with
the results so that docs/benchmarks.md can quote them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("gunicorn", "flask", "redis", "celery", "kombu", "boto3", "moto", "sqlalchemy")


def _first_line(cmd: list[str]) -> str:
    if not shutil.which(cmd[0]):
        return "n/a"
    done = subprocess.run(cmd, capture_output=True, text=True)  # wrk -v exits 1
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "n/a"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "n/a"


def ram_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def describe(mariadb_version: str) -> str:
    """One line for the machine, one for the versions."""
    packages = []
    for name in PACKAGES:
        try:
            packages.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            packages.append(f"{name} n/a")
    redis_server = _first_line(["redis-server", "--version"])
    redis_server = (re.search(r"v=(\S+)", redis_server) or [None, redis_server])[1]
    wrk = _first_line(["wrk", "-v"]).split(" [")[0]
    python = ".".join(map(str, sys.version_info[:3]))
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, {ram_gib():.0f} GiB RAM\n"
        f"versions: Python {python}, {', '.join(packages)}, redis-server {redis_server}, "
        f"MariaDB {mariadb_version}, {wrk}"
    )
