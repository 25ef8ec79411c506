"""Every table in docs/RESULTS.md and the README is the one ``mmlab.report`` makes from the shipped zoo now:
a figure in the documents is one mmlab reproduces (``python -m mmlab.report docs/RESULTS.md README.md``
rewrites them after a rebuild)."""
from pathlib import Path

import pytest

from mmlab import report

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "RESULTS.md", ROOT / "README.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_tables_are_the_generated_ones(doc):
    found = report.tables_in(doc.read_text())
    assert found, f"{doc.name} holds no generated table"
    for name, table in found.items():
        assert name in report.TABLES, f"{doc.name}: unknown table {name!r}"
        assert table == report.TABLES[name](), f"{doc.name}: table {name!r} is stale; run python -m mmlab.report"


def test_every_table_is_shown_somewhere():
    shown = set()
    for doc in DOCS:
        shown |= set(report.tables_in(doc.read_text()))
    assert shown == set(report.TABLES)
