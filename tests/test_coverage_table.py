"""The README's coverage table is the one the committed results produce."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_table_is_generated_from_the_committed_results():
    spec = importlib.util.spec_from_file_location("coverage_table", ROOT / "scripts" / "coverage_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    data = json.loads((ROOT / "benchmarks" / "results" / "coverage.json").read_text())
    readme = (ROOT / "README.md").read_text()
    block = readme.split(mod.START, 1)[1].split(mod.END, 1)[0].strip()
    assert block == mod.render(data).strip()
    from cnnexport.exporter.formats import FORMATS
    from cnnexport.models import list_models

    # every zoo model was run through every format of the table (one that needs a CUDA GPU once a GPU ran it)
    pairs = {(r["model"], r["format"]) for r in data["rows"]}
    needed = {(m, f) for m in list_models() for f in FORMATS
              if not FORMATS[f].needs_cuda or any(r["format"] == f for r in data["rows"])}
    assert pairs == needed
