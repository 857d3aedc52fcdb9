"""`cnnexport list` reads the zoo's metadata from catalog.json, which must equal the live registry, and
does so without importing torch."""

import json
import subprocess
import sys

from cnnexport.catalog import FIELDS, entries, from_registry


def test_catalog_equals_the_registry():
    written = [{f: getattr(e, f) for f in FIELDS} for e in entries()]
    live = from_registry()
    for row in live:
        row["input_size"] = tuple(row["input_size"])
    assert written == live, "catalog.json is stale: run python scripts/model_catalog.py"


def test_list_imports_no_torch():
    code = ("import sys; from click.testing import CliRunner; from cnnexport.cli import cli; "
            "r = CliRunner().invoke(cli, ['list', 'resnet*', '--json']); "
            "print(r.output); sys.exit(2 if 'torch' in sys.modules else r.exit_code)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-500:]
    names = [m["name"] for m in json.loads(proc.stdout)]
    assert names == sorted(names) and "resnet50" in names and all(n.startswith("resnet") for n in names)


def test_each_family_cites_its_own_paper():
    """A variant with its own paper cites it, not its parent's (Wide ResNet is 1605.07146, not ResNet's)."""
    by_name = {e.name: e for e in entries()}
    assert (by_name["wide_resnet50_2"].paper, by_name["wide_resnet50_2"].arxiv) == ("Wide Residual Networks",
                                                                                    "1605.07146")
    assert by_name["resnet50"].arxiv == "1512.03385" and by_name["resnext50_32x4d"].arxiv == "1611.05431"
