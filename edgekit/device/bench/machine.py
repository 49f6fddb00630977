"""The machine a benchmark ran on: CPU model and the flags that decide int8/float speed."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import __version__

# CPU features that decide how fast float and int8 kernels can be.
RELEVANT_CPU_FLAGS = (
    "sse4_1",
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_int8",
    "amx_bf16",
    "neon",
    "asimd",
    "asimdhp",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
    "fphp",
)
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
_X86_DOT_NAMES = (("amx_int8", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"))
_ARM_DOT_NAMES = (("i8mm", "asimddp + i8mm"), ("asimddp", "asimddp"))


def cpu_class(flags: list[str] | set[str], arch: str = "") -> str:
    """The CPU's class for speed figures, by the flags that decide int8 and float speed.

    >>> cpu_class(["avx2", "avx512f", "avx512_vnni"], "x86_64")
    'x86 AVX-512 VNNI'
    >>> cpu_class(["avx2", "fma"], "x86_64")
    'x86 AVX2 only (no VNNI)'
    >>> cpu_class(["neon", "asimd", "asimddp"], "aarch64")
    'ARM asimddp'
    """
    have = set(flags)
    arm = (
        arch.lower() in ("aarch64", "arm64")
        or arch.lower().startswith("arm")
        or (bool(have & {"neon", "asimd"}) and "avx" not in have)
    )
    if arm:
        dot = next((name for flag, name in _ARM_DOT_NAMES if flag in have), None)
        return f"ARM {dot}" if dot else "ARM without asimddp"
    dot = next((name for flag, name in _X86_DOT_NAMES if flag in have), None)
    if dot:
        return f"x86 {dot}"
    if "avx512f" in have:
        return "x86 AVX-512 (no VNNI)"
    if "avx2" in have:
        return "x86 AVX2 only (no VNNI)"
    return "x86 without AVX2"


def int8_kernel_note(flags: list[str] | set[str], arch: str = "") -> str | None:
    """When the CPU holds int8 back: which integer kernels int8 runs on instead, else None.

    >>> int8_kernel_note(["avx2", "fma"], "x86_64")
    'no VNNI: int8 uses AVX2 integer kernels, without dot-product instructions'
    >>> int8_kernel_note(["avx2", "avx512_vnni"], "x86_64") is None
    True
    """
    have = set(flags)
    if have & set(INT8_DOT_FLAGS):
        return None
    cls = cpu_class(have, arch)
    if cls.startswith("ARM"):
        return "no asimddp: int8 uses NEON integer kernels, without dot-product instructions"
    if "avx512bw" in have:
        return "no VNNI: int8 uses AVX-512 integer kernels, without dot-product instructions"
    if "avx2" in have:
        return "no VNNI: int8 uses AVX2 integer kernels, without dot-product instructions"
    return "no AVX2 or VNNI: int8 uses SSE integer kernels"


def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo, plus fields ARM puts after it."""
    out: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key and key not in out:
            out[key] = value.strip()
    return out


def cpu_model() -> str:
    """A human name of this CPU, e.g. 'Intel(R) Xeon(R) Processor' or 'ARMv8 Cortex-A72'."""
    info = _cpuinfo()
    for key in ("model name", "hardware", "cpu model"):
        if info.get(key):
            return info[key]
    if sys.platform == "darwin":
        import subprocess

        try:
            return (
                subprocess.run(
                    ["sysctl", "-n", "machdep.cpu.brand_string"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=False,
                ).stdout.strip()
                or platform.machine()
            )
        except OSError:
            pass
    try:
        model = Path("/sys/firmware/devicetree/base/model").read_text(errors="replace")
        return model.strip("\x00 \n")
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> list[str]:
    """The RELEVANT_CPU_FLAGS this CPU has (x86 'flags' or ARM 'Features')."""
    info = _cpuinfo()
    have = set((info.get("flags") or info.get("features") or "").split())
    if platform.machine().lower() in ("arm64", "aarch64") and sys.platform == "darwin":
        have |= {"neon", "asimd", "asimddp", "fphp", "asimdhp"}  # every Apple silicon has them
    return [f for f in RELEVANT_CPU_FLAGS if f in have]


def machine_info() -> dict[str, Any]:
    """CPU model and flags, cores, OS, Python and NumPy versions (the runtime is added later)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cpu_flags": cpu_flags(),
        "cpu_class": cpu_class(cpu_flags(), platform.machine()),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "edgekit": __version__,
    }
