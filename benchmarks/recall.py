"""Re-judge the paired calls of committed results after a change to the paired test's rule (not to any
measurement): each stored comparison's call from its own counts of slower and faster rounds, and what
follows from the call (a pick's ``beyond_noise``, ours-against-plain ``verdict``). Round medians,
ratios and p-values stay as measured.

    python benchmarks/recall.py [results/targets_resnet50.json ...]   (default: every file in results/)

A file whose calls change records ``calls_recomputed`` (when, the rule, and each change).
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

HERE = Path(__file__).parent


def recall(node, path: str = "") -> list[str]:
    """Re-judge every comparison under ``node`` in place; the changes, one line each."""
    from cnnexport.bench.rows import call_for, ranking_holds

    changes = []
    if isinstance(node, dict):
        if {"slower_rounds", "faster_rounds", "call"} <= node.keys():
            call = call_for(node["slower_rounds"], node["faster_rounds"])
            if call != node["call"]:
                changes.append(f"{path}: {node['slower_rounds']} slower / {node['faster_rounds']} faster of "
                               f"{node['rounds']}: {node['call'] or 'tie'} -> {call or 'tie'}")
                node["call"] = call
        for key, value in node.items():
            changes += recall(value, f"{path}.{key}")
        test = node.get("paired")
        if isinstance(test, dict) and "call" in test:
            if "beyond_noise" in node:  # a pick against its runner-up (rows.pick)
                node["beyond_noise"] = ranking_holds(test)
            if "verdict" in node:  # ours against the plain file (rows.against_plain)
                node["verdict"] = test["call"] or "tie"
    elif isinstance(node, list):
        for i, value in enumerate(node):
            changes += recall(value, f"{path}[{i}]")
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path,
                        default=sorted((HERE / "results").glob("**/*.json")))
    args = parser.parse_args()
    from cnnexport._atomic import atomic_path
    from cnnexport.bench.rows import CALL_RULE

    for path in args.files:
        text = path.read_text()
        result = json.loads(text)
        changes = recall(result)
        if changes:
            result["calls_recomputed"] = {"date": datetime.date.today().isoformat(), "rule": CALL_RULE,
                                          "changes": changes}
            second = text.split("\n", 2)[1]
            with atomic_path(path) as tmp:  # the file's own indent, so that the diff shows only the calls
                tmp.write_text(json.dumps(result, indent=len(second) - len(second.lstrip())) + "\n")
        print(f"{path}: {len(changes)} calls changed" + "".join(f"\n  {c}" for c in changes))


if __name__ == "__main__":
    main()
