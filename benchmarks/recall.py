"""Re-judge the paired calls of committed results after a change to the paired test's rule (not to any
measurement): each stored comparison's call from its own counts of slower and faster rounds, and what
follows from the call (a pick's ``beyond_noise``, ours-against-plain ``verdict``); a guidelines study's
G1-G4 verdicts from their tables' round medians (``study.analysis.verdict``). Round medians,
ratios and p-values stay as measured.

    python benchmarks/recall.py [results/targets_resnet50.json ...]   (default: every file in results/)

A file that changes records ``calls_recomputed`` (when, the rule, each change, and any earlier record).
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


def recall_guidelines(result: dict) -> list[str]:
    """Re-judge a guidelines study's verdicts (each table's, the index by runtime, the alignment table's) from
    the round medians its tables hold; the verdicts that change, one line each."""
    from cnnexport.study.analysis import alignment_effect, verdict, verdict_index

    if result.get("study") != "guidelines":
        return []
    changes = []
    for t in result["tables"]:
        new = verdict(t["guideline"], t["rows"])
        if new["verdict"] != t["verdict"]["verdict"]:
            changes.append(f"{t['guideline']} x{t['width']}{'@' + str(t['align']) if t.get('align', 1) > 1 else ''} "
                           f"on {t['runtime']}: {t['verdict']['verdict']} -> {new['verdict']} ({new['detail']})")
        t["verdict"] = new
    result["verdicts"] = verdict_index(result["tables"])
    if "alignment" in result:
        result["alignment"] = alignment_effect(result["tables"])
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
        before = json.dumps(result, sort_keys=True)
        changes = recall(result) + recall_guidelines(result)
        if json.dumps(result, sort_keys=True) != before:  # a guideline's evidence can change beside its word
            record = {"date": datetime.date.today().isoformat(), "rule": CALL_RULE, "changes": changes}
            if result.get("calls_recomputed"):
                record["earlier"] = result["calls_recomputed"]
            result["calls_recomputed"] = record
            second = text.split("\n", 2)[1]
            with atomic_path(path) as tmp:  # the file's own indent, so that the diff shows only the calls
                tmp.write_text(json.dumps(result, indent=len(second) - len(second.lstrip())) + "\n")
        print(f"{path}: {len(changes)} calls changed" + "".join(f"\n  {c}" for c in changes))


if __name__ == "__main__":
    main()
