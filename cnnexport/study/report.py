"""``cnnexport report``: rows from several machines (each row records its CPU model, ISA flags and GPU)
merged into one Markdown page with PNG plots: the machines and their limits, the G1-G4 verdicts per
machine and runtime beside the paper's GPU and ARM columns, the Spearman table (latency against
MACs, memory access and the roofline bound; inversions at matched MACs) per machine, and latency
against MACs and against the bound, one colour per machine. Rows of another protocol version and
incomplete rows are counted, named and skipped, never mixed in. No torch."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..bench.rows import PROTOCOL, spread
from ..errors import InvalidModelFileError, UsageError
from .analysis import (EXPECTED, KINDS, _pyplot, guideline_table, kind_of, micronet_name, predictor_spearman,
                       save_figure, zoo_summary)
from .paper import ALIGNMENTS, GUIDELINES, TABLE8, WIDTHS

#: What a row needs to enter the report.
REQUIRED = ("model", "runtime", "precision", "batch", "threads", "median_ms", "round_medians_ms", "machine")
MICRONETS = {micronet_name(net, w, a) for nets in GUIDELINES.values() for net in nets for w in WIDTHS
             for a in (1, *ALIGNMENTS)}


@dataclass
class Machine:
    key: tuple
    label: str
    cpu: str
    isa: list[str]
    cores: int | None
    gpu: str | None
    files: set[str] = field(default_factory=set)
    rows: list[dict] = field(default_factory=list)
    #: every ISA flag some row recorded, and how many rows did not record it (a flag rows gained later)
    flags: dict[str, bool] = field(default_factory=dict)
    unrecorded: dict[str, int] = field(default_factory=dict)


def _identity(row: dict) -> tuple:
    return (row["model"], row.get("artifact"), row["runtime"], row["precision"], row["batch"], row["threads"],
            row.get("device", "cpu"), tuple(row["round_medians_ms"]))


@dataclass
class Merged:
    machines: list[Machine]
    skipped: list[str]  # one line per skipped row group: file, reason, count


def machine_key(row: dict) -> tuple:
    m = row["machine"]
    isa = tuple(sorted(k for k, v in (m.get("isa") or {}).items() if v))
    gpu = row.get("gpu") if row.get("device") == "cuda" else None
    return (m.get("cpu"), isa, m.get("logical_cores"), gpu)


def _machine_of(row: dict, machines: list[Machine]) -> Machine:
    """The machine ``row`` ran on: the same CPU model, cores and GPU, and no ISA flag that both recorded
    differs. A flag missing from a row is unknown, not absent: rows from before a flag was recorded
    (``avx512_bf16`` from 2026-12-07) join the machine that later rows describe in full."""
    cpu, _, cores, gpu = machine_key(row)
    flags = {k: bool(v) for k, v in (row["machine"].get("isa") or {}).items()}
    for m in machines:
        if (m.cpu, m.cores, m.gpu) == (cpu, cores, gpu) and all(m.flags.get(k, v) == v for k, v in flags.items()):
            break
    else:
        m = Machine(machine_key(row), "", cpu, [], cores, gpu)
        machines.append(m)
    for k in m.flags.keys() - flags.keys():  # this row lacks it
        m.unrecorded[k] = m.unrecorded.get(k, 0) + 1
    for k in flags.keys() - m.flags.keys():  # every row read before this one lacked it
        if m.rows:
            m.unrecorded[k] = len(m.rows)
    m.flags.update(flags)
    m.isa = sorted(k for k, v in m.flags.items() if v)
    return m


def _rows_of(data) -> list[dict]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        return data["rows"]
    return []


def _problem(row) -> str | None:
    if not isinstance(row, dict):
        return "not a row object"
    missing = [f for f in REQUIRED if row.get(f) in (None, [], "")]
    if missing:
        return f"incomplete (no {', '.join(missing)})"
    if not isinstance(row["machine"], dict) or not row["machine"].get("cpu"):
        return "incomplete (no CPU model in its machine facts)"
    if row.get("protocol", 1) != PROTOCOL:
        return f"protocol version {row.get('protocol')} (this report reads version {PROTOCOL})"
    return None


def merge_rows(paths: list[str | os.PathLike]) -> Merged:
    """Read every file's rows and group them by machine; incomplete rows and rows of another protocol
    version are skipped, with the reason and the count per file."""
    if not paths:
        raise UsageError("give one or more JSON files of rows (bench --save, study --save)")
    machines: list[Machine] = []
    skipped: list[str] = []
    seen: set[tuple] = set()
    for p in paths:
        path = Path(p)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InvalidModelFileError(f"rows file '{path}' does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidModelFileError(f"'{path}' is not a JSON file of rows ({exc}); give the files that "
                                        "bench --save or study --save wrote") from None
        rows = _rows_of(data)
        if not rows:
            skipped.append(f"{path.name}: no rows")
            continue
        reasons: dict[str, int] = {}
        duplicates = 0
        for row in rows:
            why = _problem(row)
            if why:
                reasons[why] = reasons.get(why, 0) + 1
                continue
            if (row["machine"].get("cpu"), _identity(row)) in seen:
                duplicates += 1  # the same measurement saved in two files
                continue
            seen.add((row["machine"].get("cpu"), _identity(row)))
            m = _machine_of(row, machines)
            m.files.add(path.name)
            m.rows.append({**row, "spread": spread(row["round_medians_ms"]), "source": path.name})
        skipped += [f"{path.name}: {n} row(s) skipped: {why}" for why, n in reasons.items()]
        if duplicates:
            skipped.append(f"{path.name}: {duplicates} row(s) already read from another file")
    ordered = sorted(machines, key=lambda m: (m.gpu is not None, m.cpu or "", m.isa))
    for m in ordered:
        m.label = _label(m, ordered)
    return Merged(ordered, skipped)


def _label(m: Machine, all_machines: list[Machine]) -> str:
    """A short name: the GPU, else the CPU with its widest vector ISA (and a number if still ambiguous)."""
    if m.gpu:
        return m.gpu.replace("NVIDIA ", "")
    cpu = (m.cpu or "cpu").replace("(R)", "").replace(" Processor", "").strip()
    isa = "avx512+vnni" if "avx512_vnni" in m.isa else "avx512" if "avx512f" in m.isa else \
        "avx2" if "avx2" in m.isa else "neon" if "neon" in m.isa or "asimd" in m.isa else "baseline"
    label = f"{cpu} {isa}"
    same = [o for o in all_machines if not o.gpu and _label_base(o) == _label_base(m)]
    return label if len(same) < 2 else f"{label} #{same.index(m) + 1}"


def _label_base(m: Machine) -> tuple:
    return (m.cpu, "avx512_vnni" in m.isa, "avx512f" in m.isa, "avx2" in m.isa)


def _isa_cell(m: Machine) -> str:
    """The machine's ISA flags; a flag some of its rows did not record says how many."""
    return ", ".join(f"{k} (unrecorded in {m.unrecorded[k]} of {len(m.rows)} rows)" if m.unrecorded.get(k) else k
                     for k in m.isa) or "-"


def _limits_cell(m: Machine, field_: str, f: str) -> str:
    """Each rows file's own measured limit (``field_``) on this machine: two runs measured two ceilings,
    and each row's fractions are of its own run's."""
    by_file: dict[str, set] = {}
    for r in m.rows:
        if r.get(field_):
            by_file.setdefault(r["source"], set()).add(r[field_])
    if not by_file:
        return "-"
    if len(by_file) == 1:
        return ", ".join(f.format(v) for v in sorted(next(iter(by_file.values()))))
    return "; ".join(f"{', '.join(f.format(v) for v in sorted(vs))} ({name})" for name, vs in sorted(by_file.items()))


def latency_rows(m: Machine) -> list[list[str]]:
    """The latency table of one machine's rows (micro-networks aside: their verdicts summarise them): per
    model, runtime, precision, batch and threads, the median, the spread of the rounds, the fraction of its
    run's ceiling and of the roofline bound."""
    rows = sorted((r for r in m.rows if r["model"] not in MICRONETS),
                  key=lambda r: (r["model"], r["runtime"], r["precision"], r["batch"], r["threads"], r["source"]))
    noisy = lambda r: "?" if r.get("limits_noisy") else ""  # noqa: E731  (against a limit that varied)
    return [[r["model"], r.get("artifact") or "-", r["runtime"], r["precision"],
             str(r["batch"]) + (f" ({r['calls_per_batch']} calls)" if (r.get("calls_per_batch") or 1) > 1 else ""),
             str(r["threads"]), _fmt(r["median_ms"]), _fmt(r["spread"], "{:.0%}"),
             _fmt(r.get("ceiling_fraction"), "{:.0%}") + (noisy(r) if r.get("ceiling_fraction") else ""),
             _fmt(r.get("of_roofline"), "{:.0%}") + (noisy(r) if r.get("of_roofline") else ""), r["source"]]
            for r in rows]


def _settings(rows: list[dict]) -> list[tuple]:
    """(device, runtime, batch) combinations present in ``rows``."""
    return sorted({(r.get("device", "cpu"), r["runtime"], r["batch"]) for r in rows})


def guideline_verdicts(merged: Merged) -> list[dict]:
    """One line per machine, device, runtime, batch, guideline, width and alignment with micro-network
    rows: the verdict and the expected slowdown, computed from the rows as the study computes them."""
    out = []
    for m in merged.machines:
        micro = [r for r in m.rows if r["model"] in MICRONETS and r["precision"] == "fp32"]
        for device, runtime, batch in _settings(micro):
            sel = [r for r in micro if r.get("device", "cpu") == device and r["runtime"] == runtime
                   and r["batch"] == batch]
            names = {r["model"] for r in sel}
            for g, nets in GUIDELINES.items():
                for w in WIDTHS:
                    for a in (1, *ALIGNMENTS):
                        if not any(micronet_name(n, w, a) in names for n in nets):
                            continue
                        t = guideline_table(g, w, sel, runtime, a)
                        v = t["verdict"]
                        out.append({"machine": m.label, "device": device, "runtime": runtime, "batch": batch,
                                    "guideline": g, "width": w, "align": a, "verdict": v["verdict"],
                                    "slowdown": v.get("expected_slowdown")})
    return out


def paper_verdicts() -> dict[str, dict[str, str]]:
    """The paper's own x1 tables read the same way: the expected-slowest configuration's time over the
    expected-fastest's (throughputs inverted), on its GPU and its ARM phone."""
    out: dict[str, dict[str, str]] = {"GPU": {}, "ARM": {}}
    for g, nets in GUIDELINES.items():
        best_label, worst_label = EXPECTED[g]
        by = {n.label: n for n in nets}
        best, worst = by[best_label], by[worst_label]
        for column, attr in (("GPU", "paper_gpu"), ("ARM", "paper_arm")):
            ratio = getattr(best, attr) / getattr(worst, attr)
            out[column][g] = f"{'holds' if ratio > 1 else 'does not hold'} ({ratio:.2f}x)"
    return out


def one_per_model(rows: list[dict]) -> list[dict]:
    """One row per (model, runtime, batch, device): a model measured in several runs of one machine (a
    study and a bench file) keeps the row from the file that holds the most rows (the study's)."""
    size: dict[str, int] = {}
    for r in rows:
        size[r["source"]] = size.get(r["source"], 0) + 1
    best: dict[tuple, dict] = {}
    for r in rows:
        k = (r["model"], r["runtime"], r["batch"], r.get("device", "cpu"))
        if k not in best or size[r["source"]] > size[best[k]["source"]]:
            best[k] = r
    return list(best.values())


def spearman_rows(merged: Merged) -> list[dict]:
    """Per machine, device, runtime and batch over the zoo rows (one per model): the study's zoo summary."""
    out = []
    for m in merged.machines:
        zoo = one_per_model([r for r in m.rows if r["model"] not in MICRONETS and r["precision"] == "fp32"
                             and r.get("macs") and r.get("artifact", "") != "plain.onnx" and r["model"] != "plain"])
        for device, runtime, batch in _settings(zoo):
            sel = [r for r in zoo if r.get("device", "cpu") == device and r["runtime"] == runtime
                   and r["batch"] == batch]
            if len(sel) < 5:
                continue  # a bench file of one or three models says nothing about rank correlation
            s = zoo_summary(sel, batch)[runtime]
            out.append({"machine": m.label, "set": "zoo", "device": device, "runtime": runtime, "batch": batch,
                        "models": s["models"], "macs": s["predictors"]["zoo"]["macs"] if s["predictors"]["zoo"]["macs"]
                        is not None else s["spearman_macs_latency"],
                        "memory_access": s["predictors"]["zoo"]["memory_access"],
                        "roofline": s["predictors"]["zoo"]["roofline"],
                        "dw_macs": s["predictors"]["depthwise_heavy"]["macs"],
                        "dw_memory_access": s["predictors"]["depthwise_heavy"]["memory_access"],
                        "dw_roofline": s["predictors"]["depthwise_heavy"]["roofline"],
                        "matched_pairs": s["matched_macs"]["pairs"], "inverted": s["matched_macs"]["inverted"],
                        "inversion_rate": s["matched_macs"]["inversion_rate"],
                        "roofline_rate": s["matched_macs"]["roofline_rate"],
                        "budgets": s["table8_budgets"]})
        micro = [r for r in m.rows if r["model"] in MICRONETS and r["precision"] == "fp32" and "_a" not in r["model"]]
        for device, runtime, batch in _settings(micro):
            sel = [r for r in micro if r.get("device", "cpu") == device and r["runtime"] == runtime
                   and r["batch"] == batch]
            p = predictor_spearman(sel)
            if p["models"] >= 5:
                out.append({"machine": m.label, "set": "G1-G4 micro-networks", "device": device, "runtime": runtime,
                            "batch": batch, "models": p["models"], "macs": p["macs"],
                            "memory_access": p["memory_access"], "roofline": p["roofline"], "dw_macs": None,
                            "dw_memory_access": None, "dw_roofline": None, "matched_pairs": None, "inverted": None,
                            "inversion_rate": None, "roofline_rate": None, "budgets": None})
    return out


def _fmt(v, f: str = "{:.2f}") -> str:
    return f.format(v) if v is not None and v == v else "-"


def _budget_cell(b: dict) -> str:
    return f"{_fmt(b['spearman_macs'])} / {_fmt(b['spearman_roofline'])}, {b['fastest'] or '-'}"


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def plot_machines(merged: Merged, path: str | os.PathLike, x_field: str, x_label: str) -> Path | None:
    """Log-log latency (fp32, batch 1 on CPU, the largest batch on GPU) against ``x_field``, one panel
    per runtime, one colour per machine, marker by network kind; None when no row has the field."""
    zoo = [(m, r) for m in merged.machines for r in m.rows if r["model"] not in MICRONETS
           and r["precision"] == "fp32" and r.get(x_field)]
    if not zoo:
        return None
    plt = _pyplot()
    runtimes = sorted({r["runtime"] for _, r in zoo})
    cols = min(2, len(runtimes))
    n_rows = -(-len(runtimes) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(7.5 * cols, 5.5 * n_rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = dict(zip(KINDS, ("o", "s", "^")))
    for ax, runtime in zip(axes.flat, runtimes):
        for i, m in enumerate(merged.machines):
            sel = [r for mm, r in zoo if mm is m and r["runtime"] == runtime and r["batch"] == 1]
            for kind in KINDS:
                part = [r for r in sel if kind_of(r["model"]) == kind]
                if part:
                    ax.scatter([r[x_field] for r in part], [r["median_ms"] for r in part], s=14,
                               color=colours[i % len(colours)], marker=markers[kind], alpha=0.8,
                               label=f"{m.label}, {kind}")
        if x_field == "roofline_ms":  # on the line the model runs at its bound; above it, slower
            lo, hi = ax.get_xlim()
            ax.plot([lo, hi], [lo, hi], "--", color="gray", linewidth=0.8, label="latency = bound")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel("median latency, ms (batch 1)")
        ax.set_title(runtime)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(runtimes):]:
        ax.axis("off")
    return save_figure(fig, path)


def write_report(merged: Merged, out_dir: str | os.PathLike, *, plots: bool = True) -> dict:
    """REPORT.md (and PNG plots beside it) in ``out_dir``; returns what it wrote and the tables."""
    from .._atomic import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    verdicts, spearman = guideline_verdicts(merged), spearman_rows(merged)
    lines = ["# Across machines", "",
             f"Made by `cnnexport report` from {sum(len(m.rows) for m in merged.machines)} rows of "
             f"{len(merged.machines)} machine(s). Latencies are medians; every figure compares rows of one machine "
             "(its own limits, its own rounds); machines meet only in the tables below.", "",
             "## Machines", ""]
    lines += _md_table(["machine", "CPU", "ISA", "cores", "GPU", "rows", "fp32 ceiling GFLOP/s", "bandwidth GB/s",
                        "files"],
                       [[m.label, m.cpu or "-", _isa_cell(m), str(m.cores or "-"), m.gpu or "-",
                         str(len(m.rows)), _limits_cell(m, "ceiling_gflops", "{:.0f}"),
                         _limits_cell(m, "bandwidth_gbs", "{:.1f}"), ", ".join(sorted(m.files))]
                        for m in merged.machines])
    if merged.skipped:
        lines += ["", "Skipped (never mixed in):", ""] + [f"- {s}" for s in merged.skipped]
    latency = {m.label: latency_rows(m) for m in merged.machines}
    if any(latency.values()):
        lines += ["", "## Latency", "",
                  "Per machine, one row per measured configuration (micro-networks are summarised by the verdicts "
                  "below): the median of every round's runs, the spread of the round medians, the fraction of the "
                  "compute ceiling of its precision its own run measured and of the roofline bound (bound / measured). "
                  "? marks a figure against a limit that varied beyond 25% while it was measured.", ""]
        for label, table in latency.items():
            if table:
                lines += [f"### {label}", ""] + _md_table(
                    ["model", "file", "runtime", "precision", "batch", "threads", "median ms", "spread", "of ceiling",
                     "of roofline", "from"], table) + [""]
    if verdicts:
        paper = paper_verdicts()
        lines += ["", "## G1-G4 verdicts per machine and runtime", "",
                  "Each cell: the verdict (the paper's expected-fastest configuration against its expected-slowest, "
                  "called by the paired test, round against round: 3 rounds must agree, 2 never suffice) and the "
                  "slowdown of the expected-slowest. The paper's columns read its x1 tables the same way (GTX 1080Ti "
                  "at batch 8; Snapdragon 810 at batch 1).", ""]
        for w in WIDTHS:
            for a in (1, *ALIGNMENTS):
                sel = [v for v in verdicts if v["width"] == w and v["align"] == a]
                if not sel:
                    continue
                gs = [g for g in GUIDELINES if any(v["guideline"] == g for v in sel)]
                keys = sorted({(v["machine"], v["device"], v["runtime"], v["batch"]) for v in sel})
                table = []
                if w == 1 and a == 1:
                    table += [[f"paper {col}", "", "", *[paper[col][g] for g in gs]] for col in ("GPU", "ARM")]
                for k in keys:
                    cells = {v["guideline"]: v for v in sel
                             if (v["machine"], v["device"], v["runtime"], v["batch"]) == k}
                    table.append([k[0], k[2], str(k[3]), *[f"{cells[g]['verdict']} ({_fmt(cells[g]['slowdown'])}x)"
                                                         if g in cells else "-" for g in gs]])
                title = f"### Width x{w}" + (f", channels rounded to multiples of {a}" if a > 1 else "")
                lines += [title, ""] + _md_table(["machine", "runtime", "batch", *gs], table) + [""]
    if spearman:
        lines += ["## Latency against MACs, memory access and the roofline bound", "",
                  "Spearman rank correlation over the zoo (fp32) and over its depthwise-heavy part (MobileNet, "
                  "ShuffleNet); inversions: pairs within 25% of each other's MACs where the one with fewer MACs is "
                  "slower by the paired test (every round of 3 to 5, all but one of 6 to 8); roofline right: of the "
                  "pairs the paired test calls, "
                  "the share the roofline bound orders as latency does. Empty: the rows carry no roofline (older "
                  "rows, or no bandwidth measured), or, for inversions, too few rounds for the test to call a pair "
                  "(2 rounds split 2 to 0 one time in two by chance).", ""]
        lines += _md_table(["machine", "networks", "device", "runtime", "batch", "models", "MACs", "memory", "roofline",
                            "dw MACs", "dw memory", "dw roofline", "matched pairs", "inverted", "roofline right"],
                           [[s["machine"], s["set"], s["device"], s["runtime"], str(s["batch"]), str(s["models"]),
                             _fmt(s["macs"]), _fmt(s["memory_access"]), _fmt(s["roofline"]), _fmt(s["dw_macs"]),
                             _fmt(s["dw_memory_access"]), _fmt(s["dw_roofline"]), _fmt(s["matched_pairs"], "{}"),
                             f"{s['inverted']} ({_fmt(s['inversion_rate'], '{:.0%}')})" if s["inverted"] is not None
                             else "-", _fmt(s["roofline_rate"], "{:.0%}")] for s in spearman])
        lines += ["", "Inside each Table-8 budget (about 40, 150, 300 and 600 MMACs): Spearman of latency against "
                  "MACs / against the roofline bound, and the fastest network.", ""]
        lines += _md_table(["machine", "device", "runtime", *[f"~{b}M" for b in TABLE8]],
                           [[s["machine"], s["device"], s["runtime"],
                             *[_budget_cell(s["budgets"][str(b)]) for b in TABLE8]]
                            for s in spearman if s["batch"] == 1 and s["budgets"]])
    written = []
    if plots:
        for name, field_, label in (("latency_vs_macs.png", "macs", "MACs per image"),
                                    ("latency_vs_roofline.png", "roofline_ms", "roofline bound, ms")):
            png = plot_machines(merged, out / name, field_, label)
            if png:
                written.append(png.name)
                lines += ["", f"![latency against {label}]({png.name})"]
    with atomic_path(out / "REPORT.md") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return {"report": str(out / "REPORT.md"), "plots": written, "machines": [m.label for m in merged.machines],
            "skipped": merged.skipped, "verdicts": verdicts, "spearman": spearman}

