"""The classroom kit (issue 28): deterministic builds, no solution leaks, and the grader on a fixture class."""

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

from tlhelpers import classroom
from tlhelpers.cli import main as cli

FIXTURE = Path(__file__).parent / "fixtures" / "classroom" / "make_class.py"


def _make_class():
    spec = importlib.util.spec_from_file_location("make_class", FIXTURE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("classroom")
    assert cli(["classroom", "build", str(out)]) == 0
    return out


def test_build_regenerates_identically(built, tmp_path):
    classroom.build(tmp_path)
    files = sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len([f for f in files if f.parts[0] == "student"]) == len(list(classroom.SOURCE.glob("[0-9]*.ipynb")))
    for f in files:
        assert (built / f).read_bytes() == (tmp_path / f).read_bytes(), f


def test_every_notebook_is_tagged(built):
    for name, nb in classroom.source_notebooks().items():
        notes = [c for c in nb["cells"] if "instructor" in classroom._tags(c)]
        assert len(notes) == 1 and "remove-cell" in classroom._tags(notes[0]), name
        assert len(classroom.exercises(nb, name)) >= 2, name


def test_no_solution_code_leaks_into_student_notebooks(built):
    """Every line of every solution's code is absent from the student notebook, unless the source shows it
    outside the solutions too (a line the exercise template itself contains is no leak)."""
    checked = 0
    for name, nb in classroom.source_notebooks().items():
        public = "\n".join(classroom._text(c) for c in nb["cells"] if "solution" not in classroom._tags(c))
        student = json.loads((built / "student" / name).read_text())
        text = "\n".join(classroom._text(c) for c in student["cells"])
        assert not [c for c in student["cells"] if {"solution", "instructor"} & set(classroom._tags(c))]
        assert "<summary>Solution" not in text and "Instructor notes" not in text, name
        for e in classroom.exercises(nb, name):
            for line in (ln.strip() for ln in e["solution"].splitlines()):
                if len(line) > 3 and line not in public:
                    assert line not in text, f"{name}: solution line {line!r} is in the student notebook"
                    checked += 1
    assert checked > 50


def test_student_code_cells_are_the_source_code_cells(built):
    """What lets CI skip running some student versions: nbval runs the very same code (.ci/run)."""
    for name, nb in classroom.source_notebooks().items():
        student = json.loads((built / "student" / name).read_text())
        code = [classroom._text(c) for c in student["cells"] if c["cell_type"] == "code"]
        assert code == [classroom._text(c) for c in nb["cells"] if c["cell_type"] == "code"], name


def test_instructor_runs_each_solution_right_before_its_check(built):
    manifest = json.loads((built / "autograder" / "manifest.json").read_text())
    for name, ex in manifest["notebooks"].items():
        cells = json.loads((built / "instructor" / name).read_text())["cells"]
        for e in ex:
            i = next(i for i, c in enumerate(cells) if c["id"] == e["cell_id"])
            assert classroom._text(cells[i]) == e["source"]
            assert classroom._text(cells[i - 1]).startswith(f"# Solution of exercise {e['id']}")
        assert [c for c in cells if "instructor" in classroom._tags(c)]
        ns = {}
        exec((built / "autograder" / "tests" / f"q{ex[0]['id'].replace('.', '_')}.py").read_text(), ns)
        assert ns["OK_FORMAT"] and ex[0]["call"] in ns["test"]["suites"][0]["cases"][0]["code"]


def test_autograder_tests_run_in_otter(built):
    """The OK-format file passes with the right answer and fails with the blank one, in otter-grader itself."""
    ok_test = pytest.importorskip("otter.test_files").OKTestFile
    from tlhelpers.exercises.nb00 import check_logits_shape

    for answer, want in (((8, 10), True), (None, False)):
        t = ok_test.from_file(str(built / "autograder" / "tests" / "q00_1.py"))
        t.run({"check_logits_shape": check_logits_shape, "answer": answer})
        assert t.passed_all is want


def test_grade_reports_a_missing_folder(tmp_path, capsys):
    assert cli(["classroom", "grade", str(tmp_path / "nope")]) == 2
    assert "no folder" in capsys.readouterr().err


def test_fixture_class_gets_the_expected_table(tmp_path):
    """Right, blank, partial, raising, tampered, deleted-check, looping, invalid-JSON, os.system,
    writing-outside and printing-200-MB submissions, graded in the sandbox."""
    if os.environ.get("TL_CLASSROOM_FIXTURE_GRADED"):
        pytest.skip(".ci/run graded the fixture class already, with the same expected table")
    if not classroom.sandbox_prefix(tmp_path)[0]:
        pytest.skip("unshare -rnm is not permitted here: the grader runs without a sandbox (it says so)")
    mk = _make_class()
    outside = tmp_path / "outside-marker"
    expected = mk.make_class(tmp_path / "fx", outside)
    manifest = json.loads((tmp_path / "fx" / "manifest.json").read_text())
    rows = classroom.grade(tmp_path / "fx" / "submissions", tmp_path / "grades", manifest, timeout=mk.TIMEOUT)
    assert mk.compare(tmp_path / "grades", expected) == []
    assert not outside.exists(), "a submission changed a file outside its temporary folder"
    by = {r["student"]: r for r in rows}
    assert any("ZeroDivisionError" in e for e in by["raises"]["errors"])
    assert any("PermissionError" in e or "os.system" in e for e in by["os_system"]["errors"])
    assert any("Read-only file system" in e for e in by["writes_outside"]["errors"])
    report = (tmp_path / "grades" / "reports" / "tampered.md").read_text()
    assert re.search(r"check cell edited.*the original check said: ❌ Not yet", report)
    assert (tmp_path / "grades" / "grades.md").read_text().count("\n") == len(expected) + 2


def test_graded_runs_see_the_data_but_not_what_earlier_runs_left(tmp_path):
    from tlhelpers.classroom import _cache_view

    real, run = tmp_path / "cache", tmp_path / "run"
    (real / "cifar10-jpg" / "train").mkdir(parents=True)
    (real / "my_model.pt").write_bytes(b"an earlier run's model")
    (real / "sample-photos").mkdir()
    run.mkdir()
    view = _cache_view(real, run)
    assert sorted(p.name for p in view.iterdir()) == ["cifar10-jpg"]
    assert (view / "cifar10-jpg" / "train").is_dir()
