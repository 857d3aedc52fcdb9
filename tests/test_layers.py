"""DESIGN.md's dependency rules, read from the source: which part of the package may import which,
and the deploy side (runtimes, calib, bench) never loads torch."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "cnnexport"
LEAVES = {"errors", "_atomic", "_onnx_safety", "_quiet", "machine", "listopt"}  # below everything
# Each part of the package and the parts it may import (besides itself).
ALLOWED = {
    "errors": set(),
    "_atomic": {"errors"},
    "_onnx_safety": {"errors"},
    "_quiet": {"errors"},
    "listopt": {"errors"},  # the comma-separated option parser
    "machine": set(),
    # the cost model, the profilers, graph facts and the roofline: below the exporter and bench, which read them
    "profile": {"formats", "errors", "_onnx_safety"},
    "catalog": {"models"},  # the registry, only to write or check catalog.json
    "_spinner": set(),
    "models": {"errors"},
    "runtimes": {"errors", "_onnx_safety", "_quiet"},
    "calib": {"errors"},
    # exporter/formats/__init__.py, the FORMATS table: pure data that every part reads; imports nothing.
    "formats": set(),
    "exporter": {"formats", "models", "runtimes", "calib", "profile"} | LEAVES,
    # bench and the study receive the export pipeline and the profilers from the CLI: never the exporter
    # (the FORMATS table is not the exporter: it only says which runtime loads which file).
    "bench": {"formats", "runtimes", "models", "profile"} | LEAVES,  # models: the PyTorch baseline, built in its worker process
    "study": {"bench", "formats", "models", "runtimes", "calib", "profile"} | LEAVES,
    "cli": {"exporter", "formats", "runtimes", "calib", "bench", "study", "models", "catalog", "_spinner",
            "root", "profile"} | LEAVES,
    "__main__": {"cli"},
    "root": {"exporter"},  # cnnexport.export, the Python API
}
FORMATS_TABLE = PACKAGE / "exporter" / "formats"


def _part(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    if parts[1:3] == ["exporter", "formats"] and (len(parts) == 3 or not ((FORMATS_TABLE / f"{parts[3]}.py").is_file()
                                                                        or (FORMATS_TABLE / parts[3]).is_dir())):
        return "formats"  # the table itself, or a name defined in it (a format's module or package is the exporter's)
    return parts[1] if (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file() else "root"


def _imports(path: Path) -> set[str]:
    """Every cnnexport module ``path`` imports, at module level or inside a function."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    package = package.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {target} if node.module else {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _is_module(node.value):
            found.add(node.value)  # importlib.import_module("cnnexport..."), or `python -m cnnexport...` in a child
    return {t for t in found if t == "cnnexport" or t.startswith("cnnexport.")}


def _is_module(name: str) -> bool:
    """A dotted name of one of the package's modules (``cnnexport.bench.worker``)."""
    if not name.startswith("cnnexport.") or not all(p.isidentifier() for p in name.split(".")):
        return False
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _module_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (at module level, inside functions, or by name)."""
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in PACKAGE.rglob("*.py")}

    def resolve(target: str) -> str:  # cnnexport.calib.images.Preprocess -> cnnexport.calib.images
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target
    return {m: {resolve(t) for t in _imports(p)} - {m, ""} for m, p in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))
    for v in graph:
        if v not in index:
            visit(v)
    return out


def _edges() -> set[tuple[str, str, str]]:
    out = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        source = ("root" if rel.as_posix() == "__init__.py" else "formats" if path == FORMATS_TABLE / "__init__.py"
                  else rel.parts[0].removesuffix(".py"))
        for target in _imports(path):
            part = _part(target)
            if part != source:
                out.add((rel.as_posix(), source, part))
    return out


def test_every_import_follows_the_dependency_rules():
    edges = _edges()
    assert {s for _, s, _ in edges} <= set(ALLOWED), "a new part of the package: give it a rule"
    broken = sorted((f, t) for f, s, t in edges if t not in ALLOWED[s])
    assert broken == [], f"imports against DESIGN.md's rules (file, part it imports): {broken}"


def test_no_module_imports_itself_through_others():
    """No import circles, counting imports inside functions and by name (bench.jobs -> schedule -> worker
    -> jobs, calib.labelled <-> sources and exporter.graph <-> onnx_fold were the last ones)."""
    assert _circles(_module_graph()) == []
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the finder finds


def test_the_scan_sees_relative_and_function_level_imports(tmp_path):
    probe = PACKAGE / "exporter" / "prepare.py"
    assert "cnnexport.models.layers" not in _imports(probe)  # prepare reads `inference_scale` instead
    assert "cnnexport.machine" in _imports(PACKAGE / "exporter" / "formats" / "onnx" / "quantize_ort.py")  # inside a function
    assert "cnnexport.models" in _imports(PACKAGE / "bench" / "plan.py")  # inside a function
    assert ("study/analysis.py", "study", "profile") in _edges()
    assert ("bench/plan.py", "bench", "formats") in _edges()  # the table, not the exporter
    assert ("exporter/pipeline.py", "exporter", "formats") in _edges()
    assert _part("cnnexport.exporter.formats.tflite") == "exporter"  # a format's module is the exporter's
    assert _part("cnnexport.exporter.formats.onnx.quantize_ort") == "exporter"  # a format package's helper too
    assert "cnnexport.bench.worker" in _imports(PACKAGE / "bench" / "schedule.py")  # `python -m` in a child
    assert "cnnexport.exporter.formats.mnn.mnn_tool" in _imports(PACKAGE / "exporter" / "formats" / "mnn" / "__init__.py")


def test_the_deploy_side_never_loads_torch():
    code = ("import sys\n"
            "import cnnexport.runtimes, cnnexport.calib, cnnexport.bench.jobs, cnnexport.bench.rows, "
            "cnnexport.bench.schedule, cnnexport.bench.plan, cnnexport.bench.worker, cnnexport.bench.latency, "
            "cnnexport.machine, cnnexport.errors, cnnexport.exporter.formats, cnnexport.exporter.int8, "
            "cnnexport.exporter.evaluate, cnnexport.calib.labelled, cnnexport.runtimes.mnn, cnnexport.exporter.formats.mnn, "
            "cnnexport.profile.costs, cnnexport.profile.roofline, cnnexport.profile.onnx_profile, "
            "cnnexport.profile.graph, cnnexport.profile.roofline_profile\n"
            "from cnnexport.runtimes import load, run_nchw\n"
            "print('torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_repository_hygiene():
    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text()
    for link in ("DESIGN.md",):
        assert link not in readme or (root / link).is_file()
    ignored = (root / ".gitignore").read_text().split()
    assert "out/" in ignored and "exports/" in ignored  # the README's example output folders


def test_every_relative_import_names_a_module_of_the_package():
    """A module moved into a subpackage keeps its ``from ..x import`` lines one level short; they fail only
    when the function that holds them runs (cli/render.py -> cli/render/: ``cnnexport.cli.exporter``)."""
    missing = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if target != "cnnexport" and not _is_module(target):
                    missing.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {target}")
    assert missing == []
