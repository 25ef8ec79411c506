"""The tables of docs/RESULTS.md and the README, made from the shipped manifest (and the results stored with
each checkpoint), so that every figure there is one mmlab reproduces: ``python -m mmlab.report`` prints
them; ``tests/test_docs.py`` checks that the documents hold exactly these tables.

Each table sits in the documents between ``<!-- table:NAME -->`` and ``<!-- /table -->``.
"""
from __future__ import annotations

import re
import sys

from mmlab import zoo

DATASETS = ("shapes", "shapes_truth", "easyvqa", "digits")


def _entries() -> dict[str, dict]:
    return {e["name"]: e for e in zoo.list_checkpoints()}


def _m(e: dict | None, key: str, fmt: str = ".3f") -> str:
    value = (e or {}).get("metrics", {}).get(key)
    return format(value, fmt) if isinstance(value, float) else "—"


def _artifacts(e: dict):
    from mmlab.artifacts import load

    return load(e["dir"])


def strategies() -> str:
    """Every strategy on every dataset (test split)."""
    from mmlab.fusion import trainable

    es = _entries()
    rows = ["| strategy | shapes: shape / colour acc | shapes_truth acc | easyvqa acc (macro-F1) | digits acc "
            "| shapes masks IoU (Dice) |", "| --- | --- | --- | --- | --- | --- |"]
    for s in trainable():
        shapes, truth, vqa, dig = (es.get(f"{d}-{s}") for d in DATASETS)
        mask = es.get(f"shapes-mask-{s}")
        rows.append(f"| {s} | {_m(shapes, 'accuracy')} / {_m(shapes, 'colour_accuracy')} | {_m(truth, 'accuracy')} "
                    f"| {_m(vqa, 'accuracy', '.4f')} ({_m(vqa, 'macro_f1')}) | {_m(dig, 'accuracy', '.4f')} "
                    f"| {_m(mask, 'iou') + ' (' + _m(mask, 'dice') + ')' if mask else '—'} |")
    return "\n".join(rows)


def masks() -> str:
    """Seed 004's comparison, like for like: every mask model with its schedule, and its maps' grounding."""
    es = _entries()
    rows = ["| checkpoint | epochs | loss | IoU | Dice | head noun's attention on the object (chance) |",
            "| --- | --- | --- | --- | --- | --- |"]
    names = sorted((n for n in es if n.startswith("shapes-mask-")),
                   key=lambda n: (es[n]["train"].get("epochs", 0), -es[n]["metrics"].get("iou", 0)))
    for n in names:
        e = es[n]
        f = e.get("faithfulness") or {}
        point = (f"{f['attention_pointing_head']:.2f} ({f['chance_pointing']:.2f})"
                 if "attention_pointing_head" in f else "no attention" if "chance_pointing" in f else "—")
        rows.append(f"| {n} | {e['train'].get('epochs')} | {e['train'].get('mask_loss')} | {_m(e, 'iou')} "
                    f"| {_m(e, 'dice')} | {point} |")
    return "\n".join(rows)


def faithfulness() -> str:
    """The faithfulness scorecard of every mask model: each map method's pointing (head noun), deletion AUC of
    the mask IoU, and the attention intervention, beside chance."""
    es = _entries()
    rows = ["| checkpoint | attention | rollout | relevance | Grad-CAM | chance | deletion AUC (IoU), best map / "
            "random | IoU: as is / another scene's attention |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n in sorted(n for n in es if n.startswith("shapes-mask-")):
        stored = _artifacts(es[n])
        card = stored.faithfulness if stored is not None else None
        if not card:
            continue
        methods = card["methods"]

        def point(m):
            return f"{methods[m]['pointing_head']:.2f}" if m in methods else "—"

        dels = {m: r["deletion_auc_iou"] for m, r in methods.items() if "deletion_auc_iou" in r}
        best = min(dels, key=dels.get) if dels else None
        inter = card.get("intervention") or {}
        swap = f"{inter['normal']:.3f} / {inter['swapped']:.3f}" if inter else "—"
        rows.append(f"| {n} | {point('attention')} | {point('rollout')} | {point('relevance')} | {point('gradcam')} "
                    f"| {card['chance']['pointing']:.2f} | "
                    + (f"{dels[best]:.3f} ({best}) / {card['chance']['deletion_auc_iou']:.3f}" if best else "—")
                    + f" | {swap} |")
    return "\n".join(rows)


def dropout() -> str:
    """Seed 001: the digits models with the text dropped at test time (from their stored ablations)."""
    es = _entries()
    rows = ["| checkpoint | trained with dropout (text / image) | both | text dropped |", "| --- | --- | --- | --- |"]
    for n in sorted(n for n in es if n.startswith("digits-") and es[n].get("task") == "classify"):
        e = es[n]
        stored = _artifacts(e)
        if stored is None or e.get("eval_drop") or not stored.ablation_pairs:
            continue
        table = {r["condition"]: r for r in stored.ablation()["table"]}
        tr = e["train"]
        rows.append(f"| {n} | {tr.get('drop_text', 0)} / {tr.get('drop_image', 0)} | "
                    f"{table['both']['accuracy']:.4f} | {table['image only']['accuracy']:.4f} |")
    return "\n".join(rows)


def domain() -> str:
    """Every model knows its domain: the share of its own test pictures it flags, per dataset."""
    es = _entries()
    by: dict[str, list[float]] = {}
    for e in es.values():
        stored = _artifacts(e)
        if stored is not None:
            by.setdefault(e.get("dataset") or "?", []).append(stored.domain["test_flagged"])
    rows = ["| dataset | checkpoints | own test pictures flagged: mean (max) |", "| --- | --- | --- |"]
    for d, flags in sorted(by.items()):
        rows.append(f"| {d} | {len(flags)} | {sum(flags) / len(flags):.1%} ({max(flags):.1%}) |")
    return "\n".join(rows)


TABLES = {"strategies": strategies, "masks": masks, "faithfulness": faithfulness, "dropout": dropout,
          "domain": domain}


def tables_in(text: str) -> dict[str, str]:
    """The tables a document holds between its markers: {name: table}."""
    return {m.group(1): m.group(2).strip() for m in
            re.finditer(r"<!-- table:(\w+) -->\n(.*?)\n<!-- /table -->", text, flags=re.S)}


def fill(text: str) -> str:
    """A document with every marked table regenerated."""
    def repl(m):
        return f"<!-- table:{m.group(1)} -->\n{TABLES[m.group(1)]()}\n<!-- /table -->"

    return re.sub(r"<!-- table:(\w+) -->\n.*?\n<!-- /table -->", repl, text, flags=re.S)


def main(argv: list[str] | None = None) -> int:
    """``python -m mmlab.report [FILE ...]``: rewrite the marked tables of each file (or print them all)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        for name, make in TABLES.items():
            print(f"<!-- table:{name} -->\n{make()}\n<!-- /table -->\n")
        return 0
    from pathlib import Path

    for f in argv:
        p = Path(f)
        p.write_text(fill(p.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
