"""A module's code fingerprint follows its own source and that of the relabel modules it
imports, and nothing else."""

from __future__ import annotations

from pathlib import Path

from package_copy import installed_layout, run_in_copy

_FINGERPRINT = """
import json
from relabel.code_fingerprint import module_closure, module_fingerprint
print(json.dumps({"closure": sorted(module_closure("relabel.tasks.ingest")),
                  "fingerprint": module_fingerprint("relabel.tasks.ingest")}))
"""


def test_the_fingerprint_moves_with_an_imported_module_and_only_with_those(
    tmp_path: Path,
) -> None:
    src = installed_layout(tmp_path / "src")

    def fingerprint() -> str:
        report = run_in_copy(src, _FINGERPRINT, cwd=tmp_path)
        assert "relabel.fileio" in report["closure"]  # imported by tasks/ingest.py
        assert "relabel.tasks.train" not in report["closure"]
        return report["fingerprint"]

    def append_comment(relative: str) -> None:
        path = src / relative
        path.write_text(path.read_text() + "# edited\n")

    before = fingerprint()
    append_comment("relabel/tasks/train.py")  # not imported by ingest
    assert fingerprint() == before
    append_comment("relabel/fileio.py")
    assert fingerprint() != before
