"""Numerical equivalence between the PyTorch reference and an exported artifact.

The inputs: random normal batches (batch 1 and 3 when the batch axis is dynamic) and real
photographs. Figures: max absolute error, max relative error (relative to the reference's
max magnitude), the lowest per-sample cosine similarity, and top-1 agreement.
"""

from __future__ import annotations

import json
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..calib import Preprocess, sample_images

DEFAULT_RTOL = 1e-4  # default tolerance: max abs error <= DEFAULT_RTOL * max |reference|
# An fp16 file: every weight rounded to 11 significant bits (5e-4 relative); the errors add up with depth
# (resnet50 with trained BatchNorm statistics: 1.6e-2 of the output scale, cosine 0.9996).
FP16_RTOL = 5e-2
# ... and on the photographs (real images, not noise), the direction of the logits and the predicted
# class must survive: the lowest per-image cosine with PyTorch at least this, top-1 agreement 100%.
FP16_MIN_COSINE = 0.9999
# fp16's rounding alone moves logits by up to ~1e-3 of the output scale (max rel error 4e-4 to 8e-4 on
# the digits-trained networks through ONNX Runtime, OpenVINO and TFLite), so two classes whose PyTorch
# logits are closer than this are a tie that fp16 cannot be asked to keep: such a flip is counted
# (``tie_flips``), not refused.
TIE_MARGIN = 1e-3
# A bf16 computation (OpenVINO's CPU plugin with INFERENCE_PRECISION_HINT bf16, on AMX or AVX512-BF16):
# activations and weights rounded to 8 significant bits inside each layer (4e-3 relative, 8 x fp16's
# step), with fp32 accumulation. Measured here: 5e-3 of the output scale on resnet18 and mobilenet_v2, and
# 1.7e-2 with a lowest per-photo cosine of 0.9957 on resnet50 (random weights, BatchNorm statistics from
# the photographs; top-1 kept on every photo). The rule scales fp16's by that step (the tie margin) and
# sits between fp16's cosine and int8's mean cosine of 0.98, so that a wrong file cannot pass.
BF16_RTOL = 1e-1
BF16_MIN_COSINE = 0.99
BF16_TIE_MARGIN = 8e-3


@dataclass(frozen=True)
class ReducedRule:
    """How a file computed at a reduced float precision is checked against PyTorch fp32."""
    precision: str
    rtol: float          # max abs error <= rtol x max |output|
    min_cosine: float    # the lowest per-sample cosine on the photographs (every input where there are none)
    tie_margin: float    # a top-1 flip between classes closer than this x max |output| is a tie, not a failure


REDUCED_RULES = {"fp16": ReducedRule("fp16", FP16_RTOL, FP16_MIN_COSINE, TIE_MARGIN),
                 "bf16": ReducedRule("bf16", BF16_RTOL, BF16_MIN_COSINE, BF16_TIE_MARGIN)}


# An export's error against PyTorch fp32 may reach a few times the model's own fp32-vs-float64 error
# (its rounding floor, measured by ``prepare_check.rounding_floor``): both round, in different orders.
FLOOR_FACTOR = 4
# Past this many floors, or with a changed direction of the logits, an error is not rounding.
ROUNDING_LIMIT = 20
# fp32 rounding usually moves a deep network's outputs by 1e-7 to 1e-3 of their scale. A floor past this
# fraction of the scale (untrained weights, extreme BatchNorm statistics: fp32 cannot represent the model)
# sets a tolerance so wide that a wrong file would pass too: such a check is reported inconclusive.
INCONCLUSIVE_FLOOR = 1e-2


FLOOR_NAME = "the model's fp32 rounding floor"


def floor_for(floor: float | None, approximation_floors: dict[str, float] | None, runtime: str,
              ) -> tuple[float | None, str]:
    """The floor a file on ``runtime`` is held to: the model's rounding floor, or, where larger, what that
    runtime's approximate functions move the outputs by (``approximation_floors``); and its name."""
    from ..runtimes import RUNTIME_TABLE

    approx = (approximation_floors or {}).get(runtime)
    if approx is None or floor is None or floor >= approx:
        return floor, FLOOR_NAME
    ops = "/".join(name for name, _ in RUNTIME_TABLE[runtime].approximate_ops) if runtime in RUNTIME_TABLE else "?"
    return approx, f"the model's floor under {runtime}'s approximate {ops}"


def tolerance(rtol: float, scale: float, floor: float | None, floor_name: str = FLOOR_NAME) -> tuple[float, str]:
    """The default tolerance and its rule: the larger of ``rtol`` x max |output| and FLOOR_FACTOR x
    the model's rounding floor (None: not measured; ``floor_name`` says which floor it is)."""
    fixed = rtol * (scale or 1.0)
    if floor is not None and FLOOR_FACTOR * floor > fixed:
        return FLOOR_FACTOR * floor, (f"{FLOOR_FACTOR} x {floor_name} {floor:.3g} "
                                      f"({rtol:.0e} x max |output| would be {fixed:.3g})")
    return fixed, f"{rtol:.0e} x max |output|" if scale else f"{rtol:.0e} (outputs all 0)"


def diagnosis(max_abs: float, cosine: float, top1: float, floor: float | None) -> str:
    """Rounding or wrong, in words, for a failure line."""
    if floor and max_abs <= ROUNDING_LIMIT * floor and cosine >= 0.9999 and top1 == 1.0:
        return (f"within {max_abs / floor:.1f} x this model's own fp32 rounding floor ({floor:.3g}) with cosine "
                f"{cosine:.6f} and every top-1 kept: rounding, not a wrong export; --atol {max_abs * 1.5:.2g} "
                "accepts it")
    floor_text = f", {max_abs / floor:.0f} x the rounding floor {floor:.3g}" if floor else ""
    return (f"wrong, not rounding (cosine {cosine:.6f}, top-1 agreement {top1:.0%}{floor_text}): a larger --atol "
            "would hide a real difference")


@dataclass
class InputSet:
    name: str
    batches: list[np.ndarray]


@dataclass
class Equivalence:
    artifact: str
    max_abs: float
    max_rel: float
    cosine: float
    top1_agreement: float
    passed: bool
    tolerance: float
    samples: int
    per_input: list[dict] = field(default_factory=list)
    output_scale: float = 0.0  # max |reference output|: the default tolerance is rtol times it
    tolerance_rule: str = ""   # how ``tolerance`` was set, e.g. "1e-04 x max |output|" or "--atol"
    tie_flips: int = 0         # top-1 changes between two classes PyTorch scores within TIE_MARGIN
    conclusive: bool = True    # False: the tolerance follows a rounding floor past INCONCLUSIVE_FLOOR x the scale

    def as_dict(self) -> dict:
        return asdict(self)


def make_inputs(input_shape: tuple[int, ...], *, dynamic_batch: bool, seed: int = 0,
                photos: bool = True) -> list[InputSet]:
    """Random batches and real photographs shaped for the model (batch fixed when static)."""
    rng = np.random.default_rng(seed)
    batch, rest = input_shape[0], tuple(input_shape[1:])
    sizes = (1, 3) if dynamic_batch else (batch,)
    sets = [InputSet(f"random_b{b}", [rng.standard_normal((b, *rest)).astype(np.float32)]) for b in sizes]
    if photos and len(rest) == 3 and rest[0] in (1, 3):
        images = sample_images(Preprocess(size=(rest[1], rest[2]), channels=rest[0]))
        if len(images):
            if dynamic_batch:
                sets.append(InputSet("photos", [images]))
            else:
                reps = -(-batch // len(images)) * len(images)
                images = np.resize(images, (max(reps, batch), *rest))
                sets.append(InputSet("photos", [images[i:i + batch] for i in range(0, len(images) - batch + 1, batch)]))
    return sets


def cosines(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Cosine similarity per sample (1 where the two are identical, zeros included)."""
    r = ref.reshape(len(ref), -1).astype(np.float64)
    o = out.reshape(len(out), -1).astype(np.float64)
    denom = np.linalg.norm(r, axis=1) * np.linalg.norm(o, axis=1)
    same = np.all(r == o, axis=1)
    return np.where(same, 1.0, np.sum(r * o, axis=1) / np.maximum(denom, 1e-30))


def top1_agreement(ref: np.ndarray, out: np.ndarray) -> float:
    """The fraction of samples whose arg-max class is the same in both."""
    return float(np.mean(ref.reshape(len(ref), -1).argmax(1) == out.reshape(len(out), -1).argmax(1)))


def sqnr_db(reference: np.ndarray, quantized: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio: 10 log10(sum ref^2 / sum (ref - q)^2)."""
    ref = reference.astype(np.float64).ravel()
    noise = ref - quantized.astype(np.float64).ravel()
    power = float(np.sum(noise ** 2))
    return float("inf") if power == 0 else float(10 * np.log10(np.sum(ref ** 2) / power))


def int8_figures(fp32: np.ndarray, int8: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Top-1 agreement, cosine (mean and min per sample), SQNR; accuracies when labels are given."""
    a, b = fp32.reshape(len(fp32), -1).astype(np.float64), int8.reshape(len(int8), -1).astype(np.float64)
    cos = cosines(a, b)
    out = {"samples": int(len(a)), "top1_agreement": top1_agreement(a, b),
           "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()), "sqnr_db": sqnr_db(a, b)}
    if labels is not None:
        out["accuracy_fp32"] = float(np.mean(a.argmax(1) == labels))
        out["accuracy_int8"] = float(np.mean(b.argmax(1) == labels))
        out["accuracy_drop_points"] = 100 * (out["accuracy_fp32"] - out["accuracy_int8"])
    return out


def reference_outputs(reference_fn: Callable[[np.ndarray], np.ndarray], inputs: list[InputSet]) -> list[np.ndarray]:
    """The reference's outputs for every input set (each set's batches concatenated)."""
    return [np.concatenate([np.asarray(reference_fn(b), np.float32) for b in s.batches]) for s in inputs]


def compare(artifact: str, reference: Callable[[np.ndarray], np.ndarray] | list[np.ndarray],
            candidate_fn: Callable[[np.ndarray], np.ndarray], inputs: list[InputSet],
            *, atol: float | None = None, rtol: float = DEFAULT_RTOL, floor: float | None = None,
            tie_margin: float = TIE_MARGIN, floor_name: str = FLOOR_NAME) -> Equivalence:
    """Run every batch through the candidate and compare with the reference (a function, or its
    outputs from ``reference_outputs``). The tolerance is ``atol`` when given, else the larger of
    ``rtol * max |reference output|`` and FLOOR_FACTOR x ``floor`` (the model's rounding floor)."""
    refs = reference if isinstance(reference, list) else reference_outputs(reference, inputs)
    outs, per_input = [], []
    for s, r in zip(inputs, refs):
        o = np.concatenate([np.asarray(candidate_fn(b), np.float32).reshape(len(b), -1) for b in s.batches])
        if o.shape != r.reshape(len(r), -1).shape:
            raise ValueError(f"{artifact}: output shape {o.shape} differs from the reference's {r.shape} on {s.name}")
        outs.append(o)
        per_input.append(_figures(r.reshape(len(r), -1), o, tie_margin) | {"input": s.name, "samples": len(r)})
    ref = np.concatenate([r.reshape(len(r), -1) for r in refs])
    out = np.concatenate(outs)
    figures = _figures(ref, out, tie_margin)
    scale = float(np.abs(ref).max())
    tol, rule = (atol, "--atol") if atol is not None else tolerance(rtol, scale, floor, floor_name)
    conclusive = not (atol is None and floor is not None and FLOOR_FACTOR * floor > rtol * (scale or 1.0)
                      and floor > INCONCLUSIVE_FLOOR * (scale or 1.0))
    if not conclusive:
        rule += (f"; inconclusive: that floor is {floor / scale:.0%} of the output scale, so a wrong file could pass "
                 "too (trained weights give a conclusive check)")
    return Equivalence(artifact=artifact, passed=bool(figures["max_abs"] <= tol), tolerance=tol,
                       samples=len(ref), per_input=per_input, output_scale=scale, tolerance_rule=rule,
                       conclusive=conclusive, **figures)


def fp16_verdict(eq: Equivalence) -> dict:
    """An fp16 file's report entry (``reduced_verdict`` with fp16's rule)."""
    return reduced_verdict(eq, "fp16")


def reduced_verdict(eq: Equivalence, precision: str) -> dict:
    """An fp16 or bf16 file's report entry: the max-abs bound of ``eq`` (the rule's rtol x max |output|,
    or --atol; ``eq`` compared with the rule's tie margin) and, on the photographs (every input where
    there are none), the lowest per-sample cosine >= the rule's and top-1 agreement 100% outside ties."""
    rule = REDUCED_RULES[precision]
    photos = next((p for p in eq.per_input if p["input"] == "photos"), None)
    on, figures = ("photos", photos) if photos else ("every input", eq.as_dict())
    cosine, top1, ties = figures["cosine"], figures["top1_agreement"], figures.get("tie_flips", 0)
    samples = photos["samples"] if photos else eq.samples
    decided = round((1 - top1) * samples) <= ties  # every top-1 change is a tie
    within = eq.max_abs <= eq.tolerance
    passed = bool(within and cosine >= rule.min_cosine and decided)
    entry = eq.as_dict() | {
        "precision": precision, "passed": passed,
        "tolerance_rule": (f"{eq.tolerance_rule}; cosine >= {rule.min_cosine} and top-1 agreement 100% on {on} "
                           f"(a top-2 margin under {rule.tie_margin:g} x max |output| is a tie)"),
        f"{precision}_check": {"on": on, "cosine": cosine, "min_cosine": rule.min_cosine,
                               "top1_agreement": top1, "tie_flips": ties}}
    if not passed:
        entry["failure"] = (f"{precision} does not match PyTorch: max abs error {eq.max_abs:.3g} "
                            f"({'within' if within else 'over'} the tolerance {eq.tolerance:.3g}), cosine {cosine:.6f} "
                            f"on {on} (needs >= {rule.min_cosine}), top-1 agreement {top1:.0%} (needs 100% outside "
                            f"ties: {ties} tie(s))" + (_fp16_range_hint(eq.output_scale) if precision == "fp16" else ""))
    return entry


def _fp16_range_hint(scale: float) -> str:
    """Why fp16 cannot hold these outputs, when PyTorch's own are outside its range."""
    if not np.isfinite(scale) or scale > 65504:
        return f"; PyTorch's outputs reach {scale:.1e}, past fp16's largest value (65504)"
    if scale < NEAR_ZERO:
        return (f"; PyTorch's outputs are near zero (max |output| {scale:.1e}): logits this small are rounding "
                "noise, which fp16 weights change; is the model untrained or randomly initialised? (--weights)")
    return ""


NEAR_ZERO = 1e-6


def near_zero_warning(scale: float) -> str | None:
    """A warning when the reference outputs are so small that float rounding decides the checks."""
    if scale >= NEAR_ZERO:
        return None
    return (f"PyTorch's outputs are near zero (max |output| {scale:.1e}): the tolerance scales with them, so "
            "float rounding decides the check; is the model untrained or randomly initialised? (--weights)")


REFERENCE_FILE = "reference.npz"  # what every export writes beside its files


def reference_path(artifact) -> Path:
    """Where the export that wrote ``artifact`` put its reference.npz: beside it."""
    return Path(artifact).with_name(REFERENCE_FILE)


def save_reference(path, inputs: list[InputSet], refs: list[np.ndarray], meta: dict,
                   int8: Int8Reference | None = None) -> None:
    """``reference.npz``: each input set and the reference's outputs for it, plus metadata, for
    ``cnnexport verify`` on a machine without torch; with ``int8``, also the held-out samples, PyTorch's
    outputs on them and the rule the export checked its int8 files by."""
    arrays = {}
    for s, r in zip(inputs, refs):
        arrays[f"input__{s.name}"] = np.concatenate(s.batches)
        arrays[f"output__{s.name}"] = r
    if int8 is not None:
        arrays["int8_input"], arrays["int8_output"] = np.concatenate(int8.batches), int8.outputs
        if int8.labels is not None:
            arrays["int8_labels"] = int8.labels
        meta = {**meta, "int8": {"min_cosine": int8.min_cosine, "max_drop": int8.max_drop,
                                 "batch": int(len(int8.batches[0]))}}
    arrays["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@dataclass
class Int8Reference:
    """What ``export --int8`` checked its int8 files on: held-out batches, PyTorch's outputs on them,
    their labels (when the data has them) and the rule (mean cosine, top-1 drop)."""
    batches: list[np.ndarray]
    outputs: np.ndarray
    labels: np.ndarray | None
    min_cosine: float
    max_drop: float | None


def load_reference(path) -> tuple[list[InputSet], list[np.ndarray], dict]:
    """Read ``reference.npz`` (numbers only: loaded with allow_pickle=False)."""
    with np.load(path, allow_pickle=False) as data:
        names = [k[len("input__"):] for k in data.files if k.startswith("input__")]
        inputs = [InputSet(n, [data[f"input__{n}"]]) for n in names]
        refs = [data[f"output__{n}"] for n in names]
        meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
    return inputs, refs, meta


def load_int8_reference(path) -> Int8Reference | None:
    """The int8 part of ``reference.npz``, or None when its export wrote no int8 file."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
        rule = meta.get("int8")
        if rule is None or "int8_input" not in data.files:
            return None
        x = data["int8_input"]
        batch = int(rule["batch"])
        return Int8Reference([x[i:i + batch] for i in range(0, len(x), batch)], data["int8_output"],
                             data["int8_labels"] if "int8_labels" in data.files else None,
                             float(rule["min_cosine"]), rule.get("max_drop"))


def _figures(ref: np.ndarray, out: np.ndarray, tie_margin: float = TIE_MARGIN) -> dict:
    diff = np.abs(ref.astype(np.float64) - out.astype(np.float64))
    scale = float(np.abs(ref).max()) or 1.0
    return {
        "max_abs": float(diff.max()),
        "max_rel": float(diff.max() / scale),
        "cosine": float(cosines(ref, out).min()),
        "top1_agreement": top1_agreement(ref, out),
        "tie_flips": tie_flips(ref, out, tie_margin),
    }


def tie_flips(ref: np.ndarray, out: np.ndarray, margin: float = TIE_MARGIN) -> int:
    """Samples whose arg-max differs where the reference's two largest outputs are closer than
    ``margin`` x max |reference|."""
    r, o = ref.reshape(len(ref), -1), out.reshape(len(out), -1)
    if r.shape[1] < 2:
        return 0
    top2 = np.sort(r, axis=1)[:, -2:]
    tie = (top2[:, 1] - top2[:, 0]) < margin * (float(np.abs(r).max()) or 1.0)
    return int(np.sum(tie & (r.argmax(1) != o.argmax(1))))
