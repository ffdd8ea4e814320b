from __future__ import annotations

from pathlib import Path

from runner.child.entryindex import EntryIndex


def test_most_specific_entry_wins(tmp_path: Path) -> None:
    (tmp_path / "tests/sub").mkdir(parents=True)
    file = tmp_path / "tests/sub/test_x.py"
    file.write_text("")
    index = EntryIndex(
        [
            {"id": "dir", "path": "tests"},
            {"id": "file", "path": "tests/sub/test_x.py"},
            {"id": "cls", "path": "tests/sub/test_x.py::TestA"},
            {"id": "one", "path": "tests/sub/test_x.py::TestA::test_one"},
        ],
        tmp_path,
    )
    assert index.find(file, "tests/sub/test_x.py::TestA::test_one") == "one"
    assert index.find(file, "tests/sub/test_x.py::TestA::test_one[2]") == "one"
    assert index.find(file, "tests/sub/test_x.py::TestA::test_two") == "cls"
    assert index.find(file, "tests/sub/test_x.py::TestAB::test_two") == "file"
    assert index.find(file, "tests/sub/test_x.py::test_free") == "file"
    other = tmp_path / "tests/test_y.py"
    assert index.find(other, "tests/test_y.py::test") == "dir"
    assert index.find(tmp_path / "elsewhere/test_z.py", "elsewhere/test_z.py::t") is None
