"""Turning benchmark rows into the study's tables, verdicts, rank correlations and plots. No torch."""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path

import numpy as np

from ..bench.rows import chance_of_call, paired
from ..errors import MissingDependencyError
from .paper import BLOCKS, CLAIMS, GUIDELINES, SPATIAL, TABLE8, MicroNet

# Which row of each guideline table the paper expects fastest, and which slowest.
EXPECTED = {"G1": ("1:1", "1:12"), "G2": ("g=1", "g=8"), "G3": ("1-fragment", "4-fragment-series"),
            "G4": ("no ReLU, no shortcut", "ReLU + shortcut")}


def micronet_name(net: MicroNet, width: int, align: int = 1) -> str:
    label = net.label.replace(":", "to").replace("=", "").replace(", ", "_").replace(" + ", "_").replace(" ", "_")
    return f"{net.guideline.lower()}_{label.replace('-', '_').lower()}_x{width}" + (f"_a{align}" if align > 1 else "")


def series_width(c: int, fragments: int) -> int:
    """Inner width m of a k-fragment series block c -> m -> ... -> m -> c with the FLOPs of one c -> c
    convolution: 2cm + (k - 2)m^2 = c^2."""
    if fragments == 1:
        return c
    if fragments == 2:
        return round(c / 2)
    k = fragments - 2
    return round((-2 * c + math.sqrt(4 * c * c + 4 * k * c * c)) / (2 * k))


def block_macs(block: str, s: dict) -> int:
    """Multiply-accumulates of one block on the 56x56 map."""
    hw = SPATIAL * SPATIAL
    if block == "conv1x1_pair":
        return 2 * hw * s["c1"] * s["c2"]
    if block == "group_conv1x1":
        return hw * s["c"] * s["c"] // s["groups"]
    if block == "fragments":
        c, k = s["c"], s["fragments"]
        if s["parallel"]:
            return hw * c * (c // k) * k
        m = series_width(c, k)
        return hw * c * c if k == 1 else hw * (2 * c * m + (k - 2) * m * m)
    if block == "bottleneck":
        return 11 * hw * s["c"] * s["c"]  # 1x1 + 3x3 + 1x1 at c channels
    raise ValueError(f"unknown block {block}")


def micronet_macs(net: MicroNet, width: int, align: int = 1) -> int:
    """Multiply-accumulates of the whole micro-network (the paper's FLOPs)."""
    return BLOCKS * block_macs(net.block, net.at_width(width, align))


def micronet_memory_access(net: MicroNet, width: int) -> float:
    """Memory access cost of the network by Eq. 1 / Eq. 2 (G1, G2), in elements."""
    from ..profile.costs import conv1x1_mac, group_conv1x1_mac

    s, hw = net.at_width(width), SPATIAL
    if net.block == "conv1x1_pair":
        return BLOCKS * (conv1x1_mac(hw, hw, s["c1"], s["c2"]) + conv1x1_mac(hw, hw, s["c2"], s["c1"]))
    if net.block == "group_conv1x1":
        return BLOCKS * group_conv1x1_mac(hw, hw, s["c"], s["c"], s["groups"])
    raise ValueError(f"Eq. 1/2 cover 1x1 convolutions, not {net.block}")


def guideline_table(guideline: str, width: int, rows: list[dict], runtime: str, align: int = 1) -> dict:
    """Our latencies for one guideline, width and runtime beside the paper's, as ratios to the first row;
    ``align`` > 1: the same settings with channels rounded to multiples of it."""
    nets = GUIDELINES[guideline]
    found = {r["model"]: r for r in rows if r["runtime"] == runtime}
    lines = []
    for net in nets:
        row = found.get(micronet_name(net, width, align))
        lines.append({"config": net.label, "macs": micronet_macs(net, width, align), "row": row,
                      "channels": {k: v for k, v in net.at_width(width, align).items() if k in ("c1", "c2", "c")}})
    first = lines[0]["row"]
    out = []
    for net, line in zip(nets, lines):
        row = line["row"]
        out.append({
            "config": line["config"], "macs": line["macs"], "channels": line["channels"],
            "median_ms": row["median_ms"] if row else None,
            "spread": row["spread"] if row else None,
            "round_medians_ms": row["round_medians_ms"] if row else None,
            # throughput relative to the first row, as the paper's tables read
            "ratio": first["median_ms"] / row["median_ms"] if row and first else None,
            "paper_gpu_ratio": net.paper_gpu / nets[0].paper_gpu if width == 1 else None,
            "paper_arm_ratio": net.paper_arm / nets[0].paper_arm if width == 1 else None,
        })
    return {"guideline": guideline, "width": width, "align": align, "runtime": runtime, "rows": out,
            "verdict": verdict(guideline, out)}


def verdict_index(tables: list[dict]) -> dict:
    """The tables' verdicts by runtime, guideline and width (``x2``; ``x1@16`` for channels aligned to 16)."""
    out: dict = {}
    for t in tables:
        key = f"x{t['width']}" + (f"@{t['align']}" if t.get("align", 1) > 1 else "")
        out.setdefault(t["runtime"], {}).setdefault(t["guideline"], {})[key] = t["verdict"]
    return out


MIN_EFFECT = 0.05  # a guideline's slowdown under 5% leaves nothing for alignment to explain


def alignment_effect(tables: list[dict]) -> list[dict]:
    """How much of each guideline's effect remains once channels are aligned: the slowdown of the
    expected-slowest configuration over the expected-fastest, per MAC (rounding moves MACs a little),
    aligned against unaligned; ``remaining`` = (aligned - 1) / (unaligned - 1), left empty when the
    unaligned effect is under ``MIN_EFFECT`` (no effect to explain)."""
    def per_mac_slowdown(table: dict) -> float | None:
        best_label, worst_label = EXPECTED[table["guideline"]]
        by = {r["config"]: r for r in table["rows"]}
        best, worst = by.get(best_label), by.get(worst_label)
        if not best or not worst or best["median_ms"] is None or worst["median_ms"] is None:
            return None
        return (worst["median_ms"] / worst["macs"]) / (best["median_ms"] / best["macs"])
    base = {(t["guideline"], t["width"], t["runtime"]): t for t in tables if t.get("align", 1) == 1}
    out = []
    for t in tables:
        ref = base.get((t["guideline"], t["width"], t["runtime"]))
        if t.get("align", 1) == 1 or ref is None:
            continue
        before, after = per_mac_slowdown(ref), per_mac_slowdown(t)
        out.append({"guideline": t["guideline"], "width": t["width"], "runtime": t["runtime"], "align": t["align"],
                    "slowdown_unaligned": before, "slowdown_aligned": after,
                    "remaining": (after - 1) / (before - 1) if before and after and abs(before - 1) >= MIN_EFFECT
                    else None,
                    "verdict_unaligned": ref["verdict"]["verdict"], "verdict_aligned": t["verdict"]["verdict"]})
    return out


def verdict(guideline: str, table_rows: list[dict]) -> dict:
    """holds / does not hold / inconclusive: the paper's expected-fastest configuration against its
    expected-slowest, round by round, called by the paired test every other comparison uses
    (:func:`~cnnexport.bench.rows.call_for`: every round of 3 to 5, all but one of 6 to 8, ...). "holds"
    also needs the expected-fastest to be the fastest configuration measured; 1 or 2 rounds call nothing."""
    best_label, worst_label = EXPECTED[guideline]
    by = {r["config"]: r for r in table_rows}
    best, worst = by.get(best_label), by.get(worst_label)
    measured = [r for r in table_rows if r["median_ms"] is not None]
    if not best or not worst or best["median_ms"] is None or worst["median_ms"] is None:
        return {"verdict": "not measured", "claim": CLAIMS[guideline]}
    fastest = min(measured, key=lambda r: r["median_ms"])["config"]
    spread = max(r["spread"] for r in measured)
    ratio = worst["median_ms"] / best["median_ms"]
    test = paired(worst["round_medians_ms"], best["round_medians_ms"])  # "slower": the worst is, as expected
    if chance_of_call(test["rounds"]) == 0:
        word, why = "inconclusive", f"{test['rounds']} round{'s' * (test['rounds'] != 1)} cannot call a difference"
    elif test["call"] == "slower" and fastest == best_label:
        word, why = "holds", None
    elif test["call"] == "faster":
        word, why = "does not hold", None
    elif test["call"] == "slower":
        word, why = "inconclusive", "but the expected-fastest is not the fastest measured"
    else:
        word, why = "inconclusive", "a tie by the paired test"
    split = (f"slower in {test['slower_rounds']} of {test['rounds']} paired rounds, p {test['p_value']:.2g}"
             if test["rounds"] else "no paired rounds")
    return {"verdict": word, "claim": CLAIMS[guideline], "fastest": fastest,
            "expected_slowdown": ratio, "max_spread": spread, "paired": test,
            "detail": f"{worst_label} takes {ratio:.2f}x the time of {best_label} ({split}"
                      f"{'; ' + why if why else ''}); fastest: {fastest}; round spread up to {spread:.0%}"}


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(v):
        v = np.asarray(v, dtype=float)
        order = v.argsort(kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for value in np.unique(v):
            tie = v == value
            r[tie] = r[tie].mean()
        return r
    if len(x) < 2:
        return float("nan")
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


# What the study's plots colour each network by: its cheapest convolution.
KINDS = ("dense", "group", "depthwise")
MATCHED_MACS = 1.25  # two networks are "of similar FLOPs" within 25% of each other's MACs


def kind_of(model: str) -> str:
    """dense, group (ResNeXt, ShuffleNet v1's group 1x1 convolutions) or depthwise (MobileNet,
    ShuffleNet v2), from the registry name."""
    if model.startswith(("mobilenet", "shufflenet_v2")):
        return "depthwise"
    if model.startswith(("shufflenet_v1", "resnext")):
        return "group"
    return "dense"


def depthwise_heavy(model: str) -> bool:
    """The lightweight families the paper's claim is about: MobileNet and ShuffleNet (v1 and v2)."""
    return model.startswith(("mobilenet", "shufflenet"))


def _latency(row: dict) -> float:
    """A row's latency as every protocol recorded it: the median of its round medians."""
    return float(np.median(row["round_medians_ms"])) if row.get("round_medians_ms") else row["median_ms"]


def predictor_spearman(rows: list[dict]) -> dict:
    """Spearman of latency against MACs, memory access (bytes) and the roofline bound, over the rows
    that have all three (so the three compare on the same networks); None where fewer than 3."""
    sel = [r for r in rows if r.get("macs") and r.get("memory_access_bytes") and r.get("roofline_ms")]
    lat = [_latency(r) for r in sel]
    if len(sel) < 3:
        return {"models": len(sel), "macs": None, "memory_access": None, "roofline": None, "roofline_dram": None}
    dram = [r.get("roofline_dram_ms") for r in sel]
    return {"models": len(sel), "macs": spearman([r["macs"] for r in sel], lat),
            "memory_access": spearman([r["memory_access_bytes"] for r in sel], lat),
            "roofline": spearman([r["roofline_ms"] for r in sel], lat),
            "roofline_dram": spearman(dram, lat) if all(dram) else None}


def bound_check(rows: list[dict]) -> dict:
    """Is the roofline a bound on these rows? How many have one, how many ran faster than it beyond
    their own round spread (``beats_bound``) and how many would beat the DRAM-only bound, the median
    and highest bound / latency, and the rows that beat it (model, of_roofline, spread)."""
    def of(r: dict, key: str = "roofline_ms") -> float:
        return r[key] / r["median_ms"]
    sel = [r for r in rows if r.get("roofline_ms")]
    beaten = [r for r in sel if r.get("beats_bound")]
    top = max(sel, key=of, default=None)
    return {"rows": len(sel), "beating": len(beaten),
            "beating_dram": sum(of(r, "roofline_dram_ms") > 1 + (r.get("spread") or 0)
                                for r in sel if r.get("roofline_dram_ms")),
            "median_of_roofline": statistics.median(of(r) for r in sel) if sel else None,
            "max_of_roofline": top and {"model": top["model"], "of_roofline": of(top), "spread": top.get("spread")},
            "beaten": [{"model": r["model"], "of_roofline": of(r), "spread": r.get("spread")}
                       for r in sorted(beaten, key=lambda r: -of(r))],
            "limits_noisy": sum(bool(r.get("limits_noisy")) for r in sel)}


def micronet_predictors(rows: list[dict], widths: list[int]) -> dict:
    """The three predictors over the micro-networks (unaligned) of one runtime: all widths together,
    then each width alone (inside a guideline the paper holds FLOPs fixed, so MACs cannot rank them)."""
    def width_of(model: str) -> int | None:
        tail = model.rsplit("_x", 1)[-1]
        return int(tail) if tail.isdigit() else None
    plain = [r for r in rows if width_of(r["model"]) is not None]
    return {"all": predictor_spearman(plain),
            **{f"x{w}": predictor_spearman([r for r in plain if width_of(r["model"]) == w]) for w in widths}}


def inversions(rows: list[dict], within: float = MATCHED_MACS) -> dict:
    """Pairs of networks within ``within`` of each other's MACs: how often the one with fewer MACs is
    the slower by the paired test (``rows.call_for``: every round of 3 to 5, all but one of 6 to 8), how often it
    is the faster, and the rest (ties within the rounds' noise); of the pairs the test calls, how
    many the roofline bound orders as latency does (where both rows have one). Counts are None
    where the rows have too few rounds for the test to call anything (2 or fewer)."""
    sel = sorted((r for r in rows if r.get("macs") and r.get("round_medians_ms")), key=lambda r: r["macs"])
    callable_ = bool(sel) and chance_of_call(min(len(r["round_medians_ms"]) for r in sel)) > 0
    pairs, inverted, ordered, examples = 0, 0, 0, []
    roofline_called, roofline_right = 0, 0
    for i, low in enumerate(sel):
        for high in sel[i + 1:]:
            if high["macs"] > low["macs"] * within:
                break
            if high["macs"] == low["macs"]:
                continue  # same MACs: no "fewer" side to test
            pairs += 1
            call = paired(low["round_medians_ms"], high["round_medians_ms"])["call"]
            if call == "slower":
                inverted += 1
                examples.append(f"{low['model']} ({low['macs'] / 1e6:.0f} MMACs) slower than {high['model']} "
                                f"({high['macs'] / 1e6:.0f} MMACs)")
            elif call == "faster":
                ordered += 1
            if call and low.get("roofline_ms") and high.get("roofline_ms"):
                roofline_called += 1
                roofline_right += (low["roofline_ms"] > high["roofline_ms"]) == (call == "slower")
    if not callable_:  # "0 inverted" would read as a finding; with 2 rounds it is only the rule
        return {"pairs": pairs, "inverted": None, "in_order": None, "ties": None, "inversion_rate": None,
                "examples": [], "roofline_called": None, "roofline_right": None, "roofline_rate": None}
    return {"pairs": pairs, "inverted": inverted, "in_order": ordered, "ties": pairs - inverted - ordered,
            "inversion_rate": inverted / pairs if pairs else None, "examples": examples[:8],
            "roofline_called": roofline_called, "roofline_right": roofline_right,
            "roofline_rate": roofline_right / roofline_called if roofline_called else None}


def budget_agreement(rows: list[dict]) -> dict:
    """Inside each Table-8 budget: Spearman of latency against MACs and against the roofline bound,
    and how many pairs MACs orders as latency does."""
    out = {}
    for budget, entries in TABLE8.items():
        names = {e.model for e in entries}
        sel = [r for r in rows if r["model"] in names and r.get("macs")]
        lat = [_latency(r) for r in sel]
        pairs = [(a, b) for i, a in enumerate(sel) for b in sel[i + 1:] if a["macs"] != b["macs"]]
        agree = sum((a["macs"] < b["macs"]) == (_latency(a) < _latency(b)) for a, b in pairs)
        roof = [r.get("roofline_ms") for r in sel]
        out[str(budget)] = {
            "models": len(sel), "spearman_macs": spearman([r["macs"] for r in sel], lat) if len(sel) > 2 else None,
            "spearman_roofline": spearman(roof, lat) if len(sel) > 2 and all(roof) else None,
            "pairs": len(pairs), "pairs_in_macs_order": agree,
            "fastest": min(sel, key=_latency)["model"] if sel else None}
    return out


def zoo_summary(rows: list[dict], batch: int = 1, precision: str = "fp32") -> dict:
    """Per runtime at ``batch`` (its ``precision`` rows): Spearman(MACs, latency) over every model with MACs; MACs against memory
    access and the roofline bound on the whole zoo and on the depthwise-heavy subset; the pairwise
    inversion rate at matched MACs; the rank agreement inside each Table-8 budget; GMAC/s per model."""
    out = {}
    for runtime in sorted({r["runtime"] for r in rows}):
        sel = [r for r in rows if r["runtime"] == runtime and r["batch"] == batch and r["precision"] == precision
               and r.get("macs")]
        out[runtime] = {
            "models": len(sel),
            "spearman_macs_latency": spearman([r["macs"] for r in sel], [r["median_ms"] for r in sel]),
            "predictors": {"zoo": predictor_spearman(sel),
                           "depthwise_heavy": predictor_spearman([r for r in sel if depthwise_heavy(r["model"])])},
            "matched_macs": inversions(sel),
            "bound": bound_check(sel),
            "table8_budgets": budget_agreement(sel),
            "gmacs_per_s": {r["model"]: r.get("gmacs_per_s") for r in sorted(sel, key=lambda r: r["macs"])},
        }
    return out


def table8(rows: list[dict], batch: int = 1, precision: str = "fp32") -> list[dict]:
    """Table-8-style comparison: the four families at about 40, 150, 300 and 600 MMACs, per runtime,
    our latency beside the paper's MFLOPs and top-1 error."""
    out = []
    for budget, entries in TABLE8.items():
        for e in entries:
            ours = {r["runtime"]: r["median_ms"] for r in rows
                    if r["model"] == e.model and r["batch"] == batch and r["precision"] == precision}
            macs = next((r["macs"] for r in rows if r["model"] == e.model and r.get("macs")), None)
            out.append({"budget_mflops": budget, "model": e.model, "paper_name": e.paper_name,
                        "paper_mflops": e.mflops, "paper_top1_err": e.top1_err,
                        "macs": macs, "latency_ms": ours})
    return out


def plot_latency_vs_macs(rows: list[dict], path: str | os.PathLike, batch: int = 1, precision: str = "fp32") -> Path:
    """Log-log scatter of latency against MACs, one panel per runtime, each network coloured by kind
    (dense, group, depthwise); only the Table-8 networks are labelled (PNG)."""
    plt = _pyplot()
    runtimes = sorted({r["runtime"] for r in rows if r["batch"] == batch and r["precision"] == precision})
    cols = min(2, len(runtimes)) or 1
    n_rows = math.ceil(len(runtimes) / cols) or 1
    fig, axes = plt.subplots(n_rows, cols, figsize=(8 * cols, 6.5 * n_rows), squeeze=False)
    summary = zoo_summary(rows, batch, precision)
    labelled = {e.model for entries in TABLE8.values() for e in entries}
    for ax, runtime in zip(axes.flat, runtimes):
        sel = [r for r in rows if r["runtime"] == runtime and r["batch"] == batch and r.get("macs")
               and r["precision"] == precision]
        for kind, colour in zip(KINDS, KIND_COLOURS):
            part = [r for r in sel if kind_of(r["model"]) == kind]
            ax.scatter([r["macs"] / 1e6 for r in part], [r["median_ms"] for r in part], s=16, color=colour,
                       label=f"{kind} ({len(part)})")
        for r in sel:
            if r["model"] in labelled:
                ax.annotate(r["model"], (r["macs"] / 1e6, r["median_ms"]), fontsize=6, xytext=(2, 2),
                            textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("MMACs (multiply-adds)")
        ax.set_ylabel(f"median latency, ms (batch {batch})")
        ax.set_title(f"{runtime}: Spearman {summary[runtime]['spearman_macs_latency']:.2f}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(runtimes):]:
        ax.axis("off")
    return save_figure(fig, path)


KIND_COLOURS = ("tab:blue", "tab:orange", "tab:green")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("the plots need matplotlib: pip install 'cnnexport[study]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG atomically and close it."""
    import matplotlib.pyplot as plt

    from .._atomic import atomic_path

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
