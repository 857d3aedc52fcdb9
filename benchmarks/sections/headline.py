"""REPORT.md: the headline export's time and the zoo's format coverage (`headline_export.py`, `coverage.py`)."""

from __future__ import annotations


from .common import measured_on


def headline_section(h: dict | None, cov: dict | None) -> list[str]:
    out = []
    if h:
        out += ["## Export time", "", f"`{h['command']}` as a cold process: {h['median_s']['cnnexport']:.2f} s; a plain "
                f"`torch.onnx.export` in a cold process: {h['median_s']['plain_torch_onnx_export']:.2f} s "
                f"({h['ratio_cnnexport_to_plain']:.2f}x; {h['note']}){measured_on(h)}.", ""]
        if h.get("phases_median_s"):
            phases = ", ".join(f"{k} {v:.2f} s" for k, v in h["phases_median_s"].items())
            out += [f"Inside the export (its report's `timings_s`, medians): {phases}; the rest is the interpreter, "
                    "imports (torch, onnx, onnxsim, ONNX Runtime), building the model and writing.", ""]
        if h.get("versions", {}).get("ml_dtypes"):
            out += [f"Both commands ran in one environment, ml_dtypes {h['versions']['ml_dtypes']} (constraints.txt keeps "
                    "it below 0.7: importing 0.7.0, which onnx and torch.onnx do, took 0.46 s here, 0.6.0 3 ms; the pin "
                    "took about 0.4 s off both commands, which raised the ratio: 1.77x before it). cnnexport's own work "
                    "(folding, onnxsim, the equivalence check) is most of the difference: a helper process that overlapped "
                    "onnxsim with PyTorch's reference outputs made the export slower on 2 cores (4.6-5.5 s) and was "
                    "dropped.", ""]
    if cov:
        out += ["Coverage: see the README's table (`benchmarks/results/coverage.json`).", ""]
    return out
