"""The export summary and what export, verify, quantize and fold print about a file."""

from __future__ import annotations

from pathlib import Path


from .console import out_console


def tolerance_text(e: dict) -> str:
    """'tol 1e-04 x max |output| 11.2' rather than a bare number that means nothing on tiny outputs."""
    rule = e.get("tolerance_rule", "").split(";")[0]  # an fp16 file's rule goes on: fp16_text
    if rule.endswith("max |output|"):
        return f"tol {rule} {e['output_scale']:.3g}"
    return f"tol {e['tolerance']:.1e}"


def fp16_text(e: dict) -> str:
    """'fp16 rule on photos: cosine 0.9999995, top-1 90% (1 tie)': the rest of an fp16 (or bf16) file's check."""
    precision = "fp16" if "fp16_check" in e else "bf16"
    c = e[f"{precision}_check"]
    ties = f" ({c['tie_flips']} tie{'s' if c['tie_flips'] != 1 else ''})" if c.get("tie_flips") else ""
    return f"{precision} rule on {c['on']}: cosine {c['cosine']:.7f}, top-1 {c['top1_agreement']:.0%}{ties}"


def reduced_check(e: dict) -> bool:
    """Whether ``e`` was checked by a reduced float precision's rule (fp16, bf16)."""
    return "fp16_check" in e or "bf16_check" in e


def delegation_text(d: dict) -> str:
    """'XNNPACK 122/122 ops, 1 partition' or '... 143/157 ops, 15 partitions, 14 breaks (split x13)'."""
    total = d["delegated_ops"] + d["portable_ops"]
    text = (f"{d['delegate']} {d['delegated_ops']}/{total} ops, {d['delegated_partitions']} "
            f"partition{'s' if d['delegated_partitions'] != 1 else ''}")
    if d["portable_ops"]:
        text += (f", {d['graph_breaks']} break{'s' if d['graph_breaks'] != 1 else ''} ("
                 + ", ".join(f"{op.removeprefix('aten_')} x{n}" for op, n in d["portable_by_op"].items()) + ")")
    return text


FILES_AS_COLUMNS = 4  # the export summary's files as columns up to this many, as rows beyond


def print_export_summary(report: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = out_console()
    g = report["graph"]
    eq = {e["artifact"]: e for e in report["equivalence"]}
    # a heading line, not the table's title: rich wraps a title to the table's width, mid-phrase
    heading = (f"{report['model']}: {report['params']:,} params, input {'x'.join(map(str, report['input_shape']))} "
               f"({'dynamic' if report['dynamic_batch'] else 'static'} batch)")
    rows = {"file": [], "format": [], "size": [], "batch": [], "delegation": [], "max abs error": [],
            "max rel error": [], "cosine": [], "top-1 agreement": [], "accuracy (labels)": [], "check": []}
    for a in report["artifacts"]:
        e = eq.get(Path(a["path"]).name, {})
        rows["file"].append(Path(a["path"]).name)
        rows["format"].append(f"{a['format']} {a['precision']} {a['layout']}")
        rows["size"].append(f"{a['size_bytes'] / 1e6:.1f} MB")
        rows["batch"].append(f"static {a['static_batch']}" if "static_batch" in a else "")
        rows["delegation"].append(delegation_text(a["delegation"]) if "delegation" in a else "")
        tol = e.get("tolerance", 0)
        rows["max abs error"].append(f"{e.get('max_abs', float('nan')):.2e}" + (f" ({tolerance_text(e)})"
                                                                                if isinstance(tol, float) else ""))
        rows["max rel error"].append(f"{e.get('max_rel', float('nan')):.2e}")
        if "cosine_mean" in e:  # int8: the gate is on the mean, so the mean comes first
            rows["cosine"].append(f"mean {e['cosine_mean']:.4f} (min {e['cosine_min']:.4f})")
        else:
            rows["cosine"].append(f"min {e.get('cosine', float('nan')):.7f}")
        rows["accuracy (labels)"].append(f"{_int8_source(e)} {e['accuracy_fp32']:.2%} -> int8 {e['accuracy_int8']:.2%}"
                                         if "accuracy_int8" in e else "")
        rows["top-1 agreement"].append(f"{e.get('top1_agreement', 0):.0%} of {e.get('samples', 0)}")
        rows["check"].append(verdict_text(e)
                             + (f" ({tol})" if isinstance(tol, str) else "")
                             + (f" ({fp16_text(e)})" if reduced_check(e) else ""))
    rows = {label: cells for label, cells in rows.items() if any(cells)}
    if len(report["artifacts"]) <= FILES_AS_COLUMNS:  # a column per file, its figures down the rows
        table = Table()
        table.add_column("")
        for a in report["artifacts"]:
            table.add_column(a["format"], justify="right")
        for label, cells in rows.items():
            table.add_row(label, *cells)
    else:  # many files (every format, --keep-going): a row per file, as Ultralytics' export lists them
        table = _file_rows(report["artifacts"], eq)
    console.print(heading, style="bold", markup=False, highlight=False, soft_wrap=True)
    console.print(table)
    if len(report["artifacts"]) > FILES_AS_COLUMNS:
        for a in (a for a in report["artifacts"] if "delegation" in a):
            console.print(f"{Path(a['path']).name}: {delegation_text(a['delegation'])}", markup=False,
                          highlight=False)
    for how in dict.fromkeys(a["load_as_verified"] for a in report["artifacts"] if a.get("load_as_verified")):
        formats = ", ".join(sorted({Path(a["path"]).name for a in report["artifacts"]
                                    if a.get("load_as_verified") == how}))
        note = "" if '"bf16"' in how else " (the runtime's own CPU default may compute in bf16)"
        console.print(f"load {formats} as verified: {how}{note}", markup=False, highlight=False)
    p = report["prepare"]
    inside = sum(1 for f in p["folded"] if f.get("level") == "graph")
    from ...exporter.report_fields import ONNX_GRAPH_FOLD

    onnx_folds = [f for f in g.get("folded", []) if f.get("level") == ONNX_GRAPH_FOLD]
    in_onnx = sum(f["count"] for f in onnx_folds if f["kind"] != "scale_shift")
    scale_shift = len(p["scale_shift"]) + sum(f["count"] for f in onnx_folds if f["kind"] == "scale_shift")
    console.print(f"graph: {g['nodes_before_simplify']} -> {g['nodes_after_simplify']} nodes ({g['simplifier']}), "
                  f"{g['batchnorm_nodes']} BatchNormalization, {g['dropout_nodes']} Dropout; "
                  f"folded {len(p['folded'])} BN into convs"
                  + (f" ({inside} inside another module's forward)" if inside else "")
                  + (f", {in_onnx} more in the ONNX file" if in_onnx else "")
                  + (f", {g['precomputed_constant_nodes']} nodes computed from weights only precomputed"
                     if g.get("precomputed_constant_nodes") else "")
                  + f", {scale_shift} as scale+shift, "
                  + (f"reparameterised {len(p['reparameterized'])} blocks, " if p.get("reparameterized") else "")
                  + f"removed {p['dropout_removed']} train-only random ops"
                  + (" (" + ", ".join(f"{t} x{n}" for t, n in p["train_only_removed"].items()) + ")"
                     if p.get("train_only_removed") else ""))
    console.print(f"{report['exporter']} exporter, opset {report['opset']}; "
                  + ", ".join(f"{k} {v:.1f}s" for k, v in report["timings_s"].items()))
    if report.get("quantization"):
        kept = describe_keep_float(report["quantization"][0])
        if kept:
            console.print(f"int8 ONNX Runtime {kept}")
    for a in report["artifacts"]:
        if a.get("graph_changes"):  # rewrites for one runtime's converter or kernels, beyond the ONNX graph's
            more = len(a["graph_changes"]) - 1
            console.print(f"{Path(a['path']).name} changed for its runtime: {a['graph_changes'][0]}"
                          + (f" (+{more} more in report.json)" if more else ""), markup=False, highlight=False)
    for w in report["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    for f in report.get("failed", []):  # export --keep-going
        console.print(f"[red]left out:[/] {escape(f['file'])} ({f['precision']}, {f['stage']} failed): "
                      f"{escape(f['error'])}")
    files = [f for a in report["artifacts"] for f in a["files"]]
    console.print(f"written: {Path(report['artifacts'][0]['path']).parent}/ ({', '.join(files)}, reference.npz, "
                  "report.json)")
    if report.get("removed_earlier_files"):
        console.print(f"removed the earlier export's files this one did not write again: "
                      f"{', '.join(report['removed_earlier_files'])}")


def _file_rows(artifacts: list[dict], eq: dict):
    """The export summary with a row per file, its figures shortened to fit 120 columns (report.json has all)."""
    from rich.table import Table

    table = Table()
    names = [Path(a["path"]).name for a in artifacts]
    table.add_column("file", no_wrap=True, min_width=max(map(len, names)))  # a file name cut short is no use
    for label in ("precision", "MB", "max abs error", "cosine", "top-1 agreement"):
        table.add_column(label, justify="right")
    labelled = any("accuracy_int8" in eq.get(n, {}) for n in names)
    if labelled:
        table.add_column("accuracy (labels)", justify="right")
    table.add_column("check")
    for a, name in zip(artifacts, names):
        e = eq.get(name, {})
        tol = e.get("tolerance")
        error = f"{e.get('max_abs', float('nan')):.1e}" + (f" (tol {tol:.1e})" if isinstance(tol, float) else "")
        cosine = (f"mean {e['cosine_mean']:.4f}" if "cosine_mean" in e else f"min {e.get('cosine', float('nan')):.7f}")
        accuracy = ([f"{e['accuracy_fp32']:.1%} -> {e['accuracy_int8']:.1%}" if "accuracy_int8" in e else ""]
                    if labelled else [])
        table.add_row(name, a["precision"], f"{a['size_bytes'] / 1e6:.1f}", error, cosine,
                      f"{e.get('top1_agreement', 0):.0%} of {e.get('samples', 0)}", *accuracy, verdict_text(e))
    return table


def _int8_source(e: dict) -> str:
    """What an int8 file's accuracy is compared with: the fp32 model, or the QAT model whose scales it keeps."""
    from ...exporter.report_fields import QAT_SCALES

    return "QAT model" if e.get("scales") == QAT_SCALES else "fp32"


def verdict_text(e: dict) -> str:
    """passed, FAILED, or passed but inconclusive (the tolerance follows a rounding floor too wide to tell)."""
    if not e.get("passed"):
        return "[red]FAILED[/]"
    return "[green]passed[/]" if e.get("conclusive", True) else "[yellow]passed, inconclusive[/]"


def print_verify(eq: dict) -> None:
    """One line per file, and one for the runtime's own default where it differs (not broken off a terminal)."""
    status = verdict_text(eq)
    if eq.get("precision") == "int8":  # int8's rule: the mean cosine (and top-1 drop) on held-out samples
        accuracy = (f", accuracy {_int8_source(eq)} {eq['accuracy_fp32']:.2%} -> int8 {eq['accuracy_int8']:.2%}"
                    if "accuracy_int8" in eq else "")
        out_console().print(f"{eq['artifact']} on {eq['runtime']['runtime']} {eq['runtime']['version']}: int8 mean "
                            f"cosine {eq['cosine_mean']:.4f} (min {eq['cosine_min']:.4f}; {eq['tolerance']}), top-1 "
                            f"agreement {eq['top1_agreement']:.0%} of {eq['samples']}{accuracy} {status}")
    else:
        out_console().print(f"{eq['artifact']} on {eq['runtime']['runtime']} {eq['runtime']['version']}: "
                            f"max abs error {eq['max_abs']:.2e} ({tolerance_text(eq)}), max rel "
                            f"{eq['max_rel']:.2e}, cosine {eq['cosine']:.7f}, top-1 agreement "
                            f"{eq['top1_agreement']:.0%} of {eq['samples']}"
                            + (f"; {fp16_text(eq)}" if reduced_check(eq) else "") + f" {status}")
    if eq.get("runtime_default"):
        out_console().print(runtime_default_text(eq["runtime"]["runtime"], eq["runtime_default"]), markup=False,
                            highlight=False)


def print_locate(found: dict, artifact: str) -> None:
    """``verify --locate``: what was compared, and the first departure (or that none departs at once)."""
    lines = [f"  locate: {found['compared']} of {found['onnx']}'s {found['tensors']} tensors compared (those {artifact} "
             f"holds), on the reference input it gets most wrong ({found['input']})"]
    first, grows = found["first_departure"], found["error_grows_from"]
    if first:
        inputs = ", ".join(f"'{i['tensor']}' {i['error']:.1e}" for i in first["inputs"]) or "none it holds"
        fused = f" (with the {', '.join(first['fused'])} before it, which the file fused into it)" if first["fused"] else ""
        alone = (f"; run alone on the file's own inputs, ONNX Runtime's differs from it by {first['on_its_inputs']:.1e}"
                 if first["on_its_inputs"] is not None else "")
        lines.append(f"  first departure: {first['op']}{fused} '{first['tensor']}' {'x'.join(map(str, first['shape']))}, "
                     f"error {first['error']:.1e} of its scale; its inputs: {inputs}{alone}")
    elif grows:
        worst = found["worst"]
        lines.append(f"  no operator computes wrongly on the file's own inputs: rounding, amplified. The error first "
                     f"passes {found['threshold']:.0e} of a tensor's scale at {grows['op']} '{grows['tensor']}' "
                     f"({grows['error']:.1e}); the largest is {worst['error']:.1e}, at {worst['op']} '{worst['tensor']}'")
    else:
        lines.append(f"  every tensor compared is within {found['threshold']:.0e} of its scale")
    for line in lines:
        out_console().print(line, markup=False, highlight=False)


def runtime_default_text(runtime: str, d: dict) -> str:
    """One line on what the runtime's own defaults compute on this CPU, where that is not what was verified."""
    if "cosine_mean" in d:  # an int8 file: its rule's figures
        figures = f"mean cosine {d['cosine_mean']:.4f}, top-1 agreement {d['top1_agreement']:.0%}"
    elif "max_rel" in d:
        figures = (f"max rel error {d['max_rel']:.1e}, cosine {d['cosine']:.6f}, "
                   f"top-1 agreement {d['top1_agreement']:.0%}")
    else:  # verify --no-runtime-default: named, not run
        figures = None
    outcome = "not checked" if figures is None else \
        f"{figures} ({'it would pass this check too' if d.get('passed') else 'it would NOT pass this check'})"
    return (f"note: {runtime}'s own default on this CPU computes in {d['precision']}, not the {d['verified_at']} "
            f"verified here: {outcome}; to run what was verified: {d['how']}")


def print_quantize(result: dict, how: str) -> None:
    info, figures = result["quantization"], result["evaluation"]
    console = out_console()
    if "per_layer_sqnr" in result:
        from rich.table import Table

        table = Table(title="per-layer SQNR, float vs int8 activations (worst first)",
                      caption="SQNR: error accumulated up to the tensor (where it ends up); own quantization: "
                              "the tensor's own rounding (where it starts). --keep-float auto measures which "
                              "modules to keep in float.")
        for col in ("tensor", "op", "SQNR dB", "own quantization SQNR dB"):
            table.add_column(col, justify="left" if col in ("tensor", "op") else "right")
        for row in result["per_layer_sqnr"][:15]:
            table.add_row(row["tensor"], row["op"], f"{row['sqnr_db']:.1f}", f"{row['qdq_sqnr_db']:.1f}")
        console.print(table)
    console.print(f"{Path(result['output']).name}: {how}, {info['calibration_samples']} calibration samples, "
                  f"{result['sizes_bytes']['fp32'] / 1e6:.1f} MB -> {result['sizes_bytes']['int8'] / 1e6:.1f} MB")
    line = (f"on {figures['samples']} held-out samples: top-1 agreement {figures['top1_agreement']:.1%}, cosine "
            f"{figures['cosine_mean']:.4f} (min {figures['cosine_min']:.4f}), SQNR {figures['sqnr_db']:.1f} dB")
    if "accuracy_fp32" in figures:
        line += (f"; accuracy fp32 {figures['accuracy_fp32']:.2%} -> int8 {figures['accuracy_int8']:.2%} "
                 f"({figures['accuracy_drop_points']:+.2f} points drop)")
    console.print(line)
    if kept := describe_keep_float(info):
        console.print(kept)
    if result.get("replaced"):
        console.print(f"replaced the earlier {', '.join(result['replaced'])} (--force)")
    for w in result["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")


def describe_keep_float(info: dict) -> str | None:
    """One line on what ``--keep-float`` left in float (None when nothing was)."""
    search = info.get("keep_float_search")
    drop = bool(search) and search.get("metric") == "top1_drop_points"

    def fig(key: str) -> str:
        return f"{search[key]:.2f} points" if drop else f"{search[key]:.4f}"

    measure = "top-1 drop" if drop else "cosine"
    if search and not search["groups"] and search["reached"]:
        return (f"--keep-float auto: fully int8 already reaches {measure} {fig('baseline')} on "
                f"{search['tune_samples']} calibration samples (aim {fig('aim')} for a target of "
                f"{search['target']}); nothing kept in float")
    if not info.get("excluded_nodes"):
        return None
    line = f"kept in float: {info['float_compute_nodes']} of {info['compute_nodes']} compute nodes"
    if search:
        line += (f" ({', '.join(search['groups']) or 'none'}; {measure} on {search['tune_samples']} calibration "
                 f"samples {fig('baseline')} -> {fig('drop_points' if drop else 'cosine')}, aiming at {fig('aim')} "
                 f"for a target of {search['target']})")
    return line


def print_fold(result: dict, src_name: str, dst_name: str) -> None:
    from rich.table import Table

    table = Table(title=f"{src_name} -> {dst_name}")
    for col in ("op", "before", "after"):
        table.add_column(col, justify="left" if col == "op" else "right")
    ops = sorted(set(result["op_counts_before"]) | set(result["op_counts_after"]))
    for op in ops:
        table.add_row(op, str(result["op_counts_before"].get(op, 0)), str(result["op_counts_after"].get(op, 0)))
    table.add_row("[bold]nodes[/]", str(result["nodes_before"]), str(result["nodes_after"]))
    console = out_console()
    console.print(table)
    eq = result["equivalence"]
    removed = {("nodes computed from constants only (precomputed)" if op == "constant" else op): n
               for op, n in result["removed"].items()}
    as_affine = sum(f.get("kind") == "scale_shift" for f in result["folded"])
    console.print(f"folded {len(result['folded']) - as_affine} BatchNormalization (or per-channel Mul/Add) into the "
                  f"node before" + (f", {as_affine} as one Mul and one Add (nothing before could absorb them)"
                                    if as_affine else "") + "; removed "
                  + (", ".join(f"{n} {op}" for op, n in removed.items()) or "nothing else")
                  + f"; verified on {eq['samples']} random inputs: max abs error {eq['max_abs']:.2e}, cosine "
                  f"{eq['cosine']:.7f} [green]passed[/]")
