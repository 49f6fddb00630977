"""Bench results in plain words: one verdict per row and the run's overall verdict."""

from __future__ import annotations

import math
from typing import Any

from edgekit.device.bench.machine import INT8_DOT_FLAGS, int8_kernel_note
from edgekit.device.bench.records import TIE_TOLERANCE, BenchResult, BenchRow


def _fmt_us(us: float) -> str:
    return f"{us:,.0f} us" if us >= 100 else f"{us:.1f} us"


def _speed_words(ratio: float, what: str) -> str:
    if abs(ratio - 1) <= TIE_TOLERANCE:
        return f"as fast as {what} (within {TIE_TOLERANCE:.0%})"
    if ratio > 1:
        return f"{ratio:.1f}x faster than {what}"
    return f"{1 / ratio:.1f}x slower than {what}"


def row_verdict(
    row: BenchRow, machine: dict[str, Any] | None = None, data: dict[str, Any] | None = None
) -> str:
    """The row in plain words: speed against float32 and Keras, accuracy, manifest check."""
    if not row.ok:
        return f"FAILED: {row.error}"
    parts: list[str] = []
    if row.kind == "keras":
        parts.append("Keras baseline (tf.function, batch 1)")
    elif row.reference == row.file:
        parts.append("float32 reference")
    elif row.speedup_vs_float32 is not None:
        parts.append(_speed_words(row.speedup_vs_float32, "float32"))
    if row.speedup_vs_keras is not None and row.kind != "keras":
        parts.append(_speed_words(row.speedup_vs_keras, "Keras"))
    if row.sparse is not None:
        parts.append(_sparse_words(row))
    if row.accuracy is not None:
        acc = f"accuracy {row.accuracy:.2%}"
        if row.accuracy_delta_pp is not None:
            acc += f" ({row.accuracy_delta_pp:+.2f} pp vs float32"
            if row.top1_agreement is not None:
                acc += f", {row.top1_agreement:.1%} same top-1"
            acc += ")"
        parts.append(acc)
    why = manifest_difference(row, machine or {}, data or {})
    if why is not None and row.manifest_accuracy is not None:
        parts.append(f"differs from the manifest's {row.manifest_accuracy:.2%}: {why}")
    if row.accuracy_note:
        parts.append(row.accuracy_note)
    return "; ".join(parts)


def _sparse_words(row: BenchRow) -> str:
    """What the file's sparse encoding ran as here, and the speed-up export measured."""
    assert row.sparse is not None
    words = str(row.sparse.get("summary", "sparse-encoded"))
    exported = (row.manifest or {}).get("sparse") or {}
    if exported.get("speedup_vs_dense") is not None:
        words += (
            f" (export measured {exported['speedup_vs_dense']:.2f}x its dense twin at "
            f"{exported.get('threads', 1)} thread(s))"
        )
    return words


def overall_verdict(result: BenchResult) -> list[str]:
    """The run in plain words: fastest file, int8 warnings, accuracy costs, manifest, noise."""
    ok = [r for r in result.rows if r.ok and r.latency]
    lines: list[str] = []
    for threads in result.config.threads:
        lines += _speed_lines(result, [r for r in ok if r.threads == threads], threads)
    lines += _recommended_lines(ok)
    lines += _uncertainty_lines(ok)
    lines += _accuracy_cost_lines(ok)
    lines += _manifest_lines(ok, result)
    lines += _noise_lines(result.rounds)
    notes = {r.file: r.accuracy_note for r in result.rows if r.ok and r.accuracy_note}
    lines += [f"{file}: {note}." for file, note in notes.items()]
    if result.failed:
        names = sorted({r.file for r in result.failed})
        lines.append(f"FAILED: {len(names)} file(s) could not be measured: {', '.join(names)}.")
    return lines


def _speed_lines(result: BenchResult, at: list[BenchRow], threads: int) -> list[str]:
    """The fastest file at one thread count, and the int8/int16x8 files that are not fast."""
    tfl = [r for r in at if r.kind == "tflite"]
    if not tfl:
        return []
    best = min(tfl, key=lambda r: r.latency.p50_us if r.latency else math.inf)
    assert best.latency is not None
    text = (
        f"Fastest at {threads} thread{'s' if threads > 1 else ''}: {best.file} "
        f"(p50 {_fmt_us(best.latency.p50_us)}"
    )
    if best.speedup_vs_float32 is not None and best.reference != best.file:
        text += f", {_speed_words(best.speedup_vs_float32, 'float32')}"
    if best.speedup_vs_keras is not None:
        text += f", {_speed_words(best.speedup_vs_keras, 'Keras')}"
    lines = [text + ")."]
    flags = set(result.machine.get("cpu_flags", []))
    note = int8_kernel_note(flags, str(result.machine.get("arch", "")))
    int8_rows = [r for r in tfl if r.precision in ("int8", "uint8") and r.speedup_vs_float32]
    faster = [r for r in int8_rows if (r.speedup_vs_float32 or 0) >= 1 + TIE_TOLERANCE]
    if note and faster:  # int8 gains, but less than a CPU with dot-product instructions gives
        best8 = max(faster, key=lambda r: r.speedup_vs_float32 or 0.0)
        lines.append(
            f"int8 gain held back by this CPU ({result.machine.get('cpu')}, {note}): "
            f"{best8.file} is {_speed_words(best8.speedup_vs_float32 or 1.0, 'float32')}; "
            "CPUs with AVX-512 VNNI / AVX-VNNI (x86) or asimddp (ARM) gain more."
        )
    for row in tfl:
        if row.precision == "int16x8" and row.speedup_vs_float32 is not None:
            lines.append(
                f"{row.file} (int16x8) runs on reference kernels (XNNPACK has none for "
                f"int16 activations): {_speed_words(row.speedup_vs_float32, 'float32')}."
            )
        if row.precision not in ("int8", "uint8") or row.speedup_vs_float32 is None:
            continue
        if row.speedup_vs_float32 < 1 + TIE_TOLERANCE:
            ref = next((r for r in tfl if r.file == row.reference), None)
            ref_p50 = _fmt_us(ref.latency.p50_us) if ref and ref.latency else "?"
            assert row.latency is not None
            why = ""
            if not flags & set(INT8_DOT_FLAGS):
                why = (
                    " This CPU has no int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI,"
                    f" ARM dotprod), which int8 kernels need to be fast ({note})."
                )
            lines.append(
                f"WARNING: {row.file} (int8) is not faster than float32 on this CPU "
                f"({result.machine.get('cpu')}): p50 {_fmt_us(row.latency.p50_us)} against "
                f"{ref_p50} at {threads} thread(s).{why}"
            )
    return lines


def _recommended_lines(ok: list[BenchRow]) -> list[str]:
    """The file export recommended, once per manifest folder."""
    lines = []
    for row in {r.path: r for r in ok if r.manifest and r.manifest.get("recommended")}.values():
        budget = row.manifest.get("max_accuracy_drop_points") if row.manifest else None
        within = f" within {budget:g} points of the float model" if budget is not None else ""
        lines.append(
            f"Recommended by export: {row.file}, the smallest file{within} (accuracy "
            f"{row.accuracy:.2%} here)."
            if row.accuracy is not None
            else f"Recommended by export: {row.file}, the smallest file{within}."
        )
    return lines


def _accuracy_cost_lines(ok: list[BenchRow]) -> list[str]:
    """What each quantized file costs (or gains) in accuracy against its float32 reference."""
    lines = []
    seen: set[str] = set()
    for row in ok:
        if row.path in seen or row.kind != "tflite" or row.reference in (None, row.file):
            continue
        seen.add(row.path)
        if row.accuracy is None or row.accuracy_delta_pp is None:
            continue
        cost = -row.accuracy_delta_pp
        what = (
            f"costs {cost:.2f} pp of accuracy"
            if cost > 0
            else ("costs no accuracy" if cost == 0 else f"gains {-cost:.2f} pp of accuracy")
        )
        size = ""
        ref = next((r for r in ok if r.file == row.reference), None)
        if ref and ref.bytes and row.bytes:
            size = f"; it is {ref.bytes / row.bytes:.1f}x smaller"
        agree = (
            f" and agrees on {row.top1_agreement:.1%} of top-1 predictions"
            if row.top1_agreement is not None
            else ""
        )
        ref_acc = row.accuracy - row.accuracy_delta_pp / 100
        lines.append(
            f"{row.precision} ({row.file}) {what} against float32 "
            f"({row.accuracy:.2%} vs {ref_acc:.2%}){agree}{size}."
        )
    return lines


def _manifest_lines(ok: list[BenchRow], result: BenchResult) -> list[str]:
    """Whether the accuracy measured here equals the manifest's, and why not."""
    checked = [r for r in ok if _comparable(r)]
    reasons: dict[str, list[str]] = {}
    for r in checked:
        reason = manifest_difference(r, result.machine, result.data)
        if reason is not None:
            reasons.setdefault(reason, []).append(r.id)
    lines = [
        f"WARNING: accuracy differs from the manifest's for {', '.join(labels)}: {reason}."
        for reason, labels in reasons.items()
    ]
    if checked and not reasons:
        lines.append(
            f"Accuracy equals the manifest's for {len({r.file for r in checked})} file(s)."
        )
    return lines


def _noise_lines(rounds: dict[str, Any]) -> list[str]:
    """How much the round medians varied: a noisy machine is named."""
    if rounds.get("max_round_spread") is None:
        return []
    spread = rounds["max_round_spread"]
    noisy = rounds["noisy"]
    return [
        f"Measured in {rounds['count']} interleaved rounds; round medians varied by up to "
        f"{spread:.1%}"
        + (
            " (noisy: something else used the CPU; compare figures with care or rerun "
            "on an idle machine)."
            if noisy
            else " (quiet machine)."
        )
    ]


def _comparable(row: BenchRow) -> bool:
    m = row.manifest
    return bool(m and row.accuracy is not None and m.get("samples") == row.accuracy_samples)


def _setting(runtime: object, threads: object, xnnpack: object, cpu: object, arch: object) -> str:
    xnn = "" if xnnpack is None else f", XNNPACK {'on' if xnnpack else 'off'}"
    thr = "" if threads is None else f", {threads} thread{'s' if threads != 1 else ''}"
    where = f" on {cpu or 'an unknown CPU'}" + (f" ({arch})" if arch else "")
    return f"{runtime or 'an unknown runtime'}{xnn}{thr}{where}"


def manifest_difference(row: BenchRow, machine: dict[str, Any], data: dict[str, Any]) -> str | None:
    """Why the row's accuracy differs from the one export recorded (None when it does not).

    "file changed" is said only when the file's sha256 differs from the manifest's, "data
    changed" only when the test data's fingerprint differs; otherwise the file and data are
    those of export, and the runtime, its options or the CPU made the difference: named.
    """
    m = row.manifest
    if not _comparable(row) or m is None or row.accuracy is None:
        return None
    if abs(m["accuracy"] - row.accuracy) <= 1e-9:
        return None
    if row.sha256 and m.get("sha256") and row.sha256 != m["sha256"]:
        return "the file changed since export (its sha256 differs from the manifest's)"
    here_data, export_data = data.get("sha256"), m.get("data_sha256")
    if here_data and export_data and here_data != export_data:
        return (
            f"the test data differs from export's ({row.accuracy_samples} samples, "
            "but not the same ones)"
        )
    here = _setting(
        row.runtime, row.threads, machine.get("xnnpack"), machine.get("cpu"), machine.get("arch")
    )
    there = _setting(
        m.get("runtime"), m.get("threads"), m.get("xnnpack"), m.get("cpu"), m.get("arch")
    )
    if not (here_data and export_data):
        return (
            "the file is unchanged, but the manifest has no fingerprint of export's test data "
            f"(written before format 2), so the data may differ; here {here}; at export {there}"
        )
    if here == there:
        return (
            "the file, the data, the runtime and the CPU are those of export: rerun, and "
            "report it if the difference stays"
        )
    return (
        "the file and the data are those of export, so the runtime or the CPU made the "
        f"difference: here {here}; at export {there}"
    )


def _uncertainty_lines(rows: list[BenchRow]) -> list[str]:
    """MC-dropout files against their deterministic file: accuracy, ECE, NLL, risk-coverage."""
    lines = []
    for row in {r.path: r for r in rows if r.uncertainty}.values():
        u = row.uncertainty or {}
        mc, det = u["mc"], u["deterministic"]

        def lower(key: str, mc: dict[str, Any] = mc, det: dict[str, Any] = det) -> str:
            a, b = mc[key], det[key]
            return "lower" if a < b else ("equal" if a == b else "HIGHER")

        cov = ", ".join(
            f"{c['coverage']:.0%}: {c['accuracy']:.2%} vs {d['accuracy']:.2%}"
            for c, d in zip(mc["risk_coverage"], det["risk_coverage"], strict=False)
        )
        lines.append(
            f"MC dropout, {u['mc_samples']} passes ({row.file}) against {u['deterministic_file']}:"
            f" accuracy of the mean {mc['accuracy']:.2%} vs {det['accuracy']:.2%}; ECE "
            f"{mc['ece']:.4f} vs {det['ece']:.4f} ({lower('ece')}); NLL {mc['nll']:.4f} vs "
            f"{det['nll']:.4f} ({lower('nll')}); accuracy on the most certain {cov}."
        )
    return lines
