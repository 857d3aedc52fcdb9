"""The README's coverage tables (fp32, fp16, timm, the blocks users write) are the ones the committed results
produce; every Markdown table of the documents renders as one table."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _table_module():
    spec = importlib.util.spec_from_file_location("coverage_table", ROOT / "scripts" / "coverage_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _readme_block(start: str, end: str) -> str:
    return (ROOT / "README.md").read_text().split(start, 1)[1].split(end, 1)[0].strip()


def test_readme_table_is_generated_from_the_committed_results():
    mod = _table_module()
    data = json.loads((ROOT / "benchmarks" / "results" / "coverage.json").read_text())
    assert _readme_block(mod.START, mod.END) == mod.render(data).strip()
    from cnnexport.exporter.formats import FORMATS
    from cnnexport.models import list_models

    # every zoo model was run through every format of the table (one that needs a CUDA GPU once a GPU ran it)
    pairs = {(r["model"], r["format"]) for r in data["rows"]}
    needed = {(m, f) for m in list_models() for f in FORMATS
              if not FORMATS[f].needs_cuda or any(r["format"] == f for r in data["rows"])}
    assert pairs == needed


def test_readme_fp16_table_is_generated_from_the_committed_results():
    mod = _table_module()
    data = json.loads((ROOT / "benchmarks" / "results" / "coverage_fp16.json").read_text())
    assert _readme_block(mod.START_FP16, mod.END_FP16) == mod.render_fp16(data).strip()
    from cnnexport.exporter.formats import FORMATS
    from cnnexport.models import list_models

    # every zoo model through every fp16 file a CPU machine writes
    pairs = {(r["model"], r["format"]) for r in data["rows"]}
    assert pairs == {(m, f.name) for m in list_models() for f in FORMATS.values() if f.fp16 and not f.needs_cuda}


def test_readme_timm_table_is_generated_from_the_committed_results():
    mod = _table_module()
    data = json.loads(mod.RESULTS_TIMM.read_text())
    assert _readme_block(mod.START_TIMM, mod.END_TIMM) == mod.render_timm(data).strip()
    onnx_rows = [r for r in data["rows"] if r["format"] == "onnx"]
    assert len({r["model"] for r in onnx_rows}) >= 40  # the floor: at least 40 timm architectures
    for r in onnx_rows:  # what the table says of a file, the row measured on it
        if r["verifies"]:
            assert {"bn_nodes", "foldable_affine", "no_simplify_bn_nodes", "folded"} <= set(r)


def test_readme_user_blocks_table_is_generated_from_the_committed_results():
    mod = _table_module()
    data = json.loads(mod.RESULTS_BLOCKS.read_text())
    assert _readme_block(mod.START_BLOCKS, mod.END_BLOCKS) == mod.render_user_blocks(data).strip()
    import re

    source = (ROOT / "benchmarks" / "user_blocks.py").read_text()
    blocks = re.findall(r'"(\w+)": \w+', source.split("BLOCKS = {", 1)[1].split("}", 1)[0])
    from cnnexport.exporter.formats import FORMATS

    # every block through every format a CPU machine writes
    assert {(r["model"], r["format"]) for r in data["rows"]} == {
        (b, f) for b in blocks for f in FORMATS if not FORMATS[f].needs_cuda}


def test_a_check_the_floor_makes_inconclusive_is_not_shown_as_a_plain_yes():
    """efficientnetv2_rw_t passed at 5e-1 relative error under a floor of 5e-1: the table said 'yes'."""
    mod = _table_module()
    data = json.loads(mod.RESULTS_TIMM.read_text())
    wide = {r["model"] for r in data["rows"] if r["format"] == "onnx"
            and (r.get("rounding_floor_rel") or 0) > mod.INCONCLUSIVE_FLOOR}
    assert wide  # the committed run has such models (random weights)
    table = mod.render_timm(data)
    for line in table.splitlines():
        model = line.split(" | ")[0].lstrip("| ").split(" (")[0]
        if model in wide:
            assert "yes (" not in line and "inconclusive (" in line, line
    assert f"Inconclusive: {', '.join(sorted(wide))}." in table
    from cnnexport.exporter.verify import INCONCLUSIVE_FLOOR

    assert mod.INCONCLUSIVE_FLOOR == INCONCLUSIVE_FLOOR


def _cells(row: str) -> int:
    import re

    return len(re.findall(r"(?<!\\)\|", row)) - 1  # a pipe in a cell is escaped, in code spans too (GFM)


def test_every_markdown_table_renders_whole():
    """A blank line inside a table ended it (the README's --mnn to --bf16 rows rendered as paragraphs), and an
    unescaped pipe in a cell split it (`max |reference output|`): each block of rows has its header and
    delimiter, and as many cells in every row."""
    import re

    for doc in ("README.md", "DESIGN.md", "benchmarks/REPORT.md"):
        lines = (ROOT / doc).read_text().split("\n")
        fence = False
        i = 0
        while i < len(lines):
            fence ^= lines[i].startswith("```")
            if fence or not lines[i].startswith("|"):
                i += 1
                continue
            assert i + 1 < len(lines) and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip()), \
                f"{doc}:{i + 1}: a table row without a header and delimiter row above it"
            width = _cells(lines[i])
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert _cells(lines[j]) == width, f"{doc}:{j + 1}: {_cells(lines[j])} cells, the header has {width}"
                j += 1
            i = j
