"""docs/reliability.md's matrix table is the matrix: each fault's row matches tests/faults/matrix.py."""

from __future__ import annotations

from infra.constants import REPO_ROOT
from tests.faults.kits import KITS
from tests.faults.matrix import FAULTS, Fault

DOC = REPO_ROOT / "docs" / "reliability.md"
COLUMNS = ("devexpress", "torus", "metric_insights", "clinical_one", "myreports")


def documented_row(fault: Fault) -> str:
    """The row the matrix implies: its description, then per provider a file, an error code, or n/a."""
    cells = []
    for provider in COLUMNS:
        kit = KITS[provider]
        if not fault.applies(kit):
            cells.append("n/a (no such status)")
        else:
            expect = fault.expect(kit)
            cells.append("file" if expect.ready else f"`{expect.code}`")
    return f"| `{fault.name}`: {fault.what} | " + " | ".join(cells) + " |"


def test_every_fault_has_its_row_in_the_reliability_table() -> None:
    # given the reliability document's lines
    lines = DOC.read_text(encoding="utf-8").splitlines()
    # then each fault of the matrix has exactly the row its description and expectations make
    assert sorted(set(KITS)) == sorted(COLUMNS)
    missing = [documented_row(fault) for fault in FAULTS if documented_row(fault) not in lines]
    assert missing == [], "docs/reliability.md differs from the matrix; expected rows:\n" + "\n".join(missing)
