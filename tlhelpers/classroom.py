"""Classroom kit: student and instructor notebooks from one source, and an offline grader.

``python -m tlhelpers classroom build OUT | grade DIR | verify OUT | plan`` (or ``bash course.sh classroom``).

The notebooks in ``notebooks/`` are the only hand-edited copy. Their cells carry tags:

* ``exercise``: the blank template a learner fills in (kept as is in both versions);
* ``check``: the self-check call of one exercise (a ``tlhelpers.exercises`` function); never edited;
* ``solution``: a markdown cell, collapsed in a ``<details>`` block, whose ``python`` blocks are the solution;
* ``instructor`` (with ``remove-cell``, so the website drops it): notes for the instructor.

``build`` writes ``student/`` (no solution and no instructor cell), ``instructor/`` (the solution code as a
code cell right before each check, plus the notes) and ``autograder/`` (``manifest.json``: every exercise's
check cell, its hash and its check function; ``tests/``: the same checks as otter-grader OK-format tests).
``grade`` runs every submission in a sandbox (no network, read-only file system except its own temporary
folder, a time limit, an output cap), runs the *pristine* check cells from the manifest, and writes
``grades.csv``, ``grades.md`` and one report per student.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import json
import os
import pprint
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FORMAT = "tlhelpers-classroom-1"
ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "notebooks"
BUDGETS = ROOT / "docs" / "notebook_budgets.json"
PASSED, NOT_YET, ERROR, TAMPERED = "passed", "not yet", "error", "tampered"
OUTPUT_CAP = 20 * 2**20  # bytes of stdout + stderr a submission may print
FORBIDDEN = re.compile(r"\bos\.(system|popen|exec\w*|spawn\w*|kill)\b|\bsubprocess\b|\bpty\.spawn\b|\bshutil\.rmtree\b")
# Runtime guard inside the sandbox: these audit events raise PermissionError.
# os.fork stays allowed: a forked Python inherits the sandbox (notebook 04's data loading forks workers).
BLOCKED_EVENTS = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen", "os.kill")
# the cache entries a graded notebook may read (the images, torchvision weights); everything else it writes afresh
# (sample photos, the saved model of notebook 07), never reading what an earlier run left behind
READ_FROM_CACHE = ("cifar10-jpg", "torchvision")
# the environment a graded run inherits; the rest (tokens, proxies, home) stays outside
PASSED_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "TLHELPERS_HOME",
    "TLHELPERS_CIFAR_DIR",
    "TORCH_HOME",
    "OMP_NUM_THREADS",
    "VIRTUAL_ENV",
)
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


# ---------------------------------------------------------------- reading the source


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _text(cell: dict) -> str:
    return "".join(cell["source"])


def _lines(text: str) -> list[str]:
    """A cell source as nbformat stores it: lines with their newlines, the last without."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def check_call(source: str) -> str:
    """The first ``check_*(...)`` call expression of a check cell's source."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("check_"):
            return ast.get_source_segment(source, node)
    raise ValueError(f"no check_*(...) call in check cell: {source[:60]!r}")


def exercises(nb: dict, name: str) -> list[dict]:
    """The exercises of a source notebook, in order: check cell k goes with solution cell k."""
    checks = [c for c in nb["cells"] if "check" in _tags(c)]
    solutions = [c for c in nb["cells"] if "solution" in _tags(c)]
    if len(checks) != len(solutions):
        raise ValueError(f"{name}: {len(checks)} check cells but {len(solutions)} solution cells; tag one of each")
    out = []
    for k, (chk, sol) in enumerate(zip(checks, solutions), 1):
        code = "\n".join(b.strip("\n") for b in PYTHON_BLOCK.findall(_text(sol)))
        if not code:
            raise ValueError(f"{name}: the solution of exercise {k} has no ```python block to run")
        src = _text(chk)
        call = check_call(src)
        out.append(
            {
                "id": f"{name[:2]}.{k}",
                "check": call.split("(", 1)[0],
                "call": call,
                "cell_id": chk["id"],
                "source": src,
                "sha256": hashlib.sha256(src.encode()).hexdigest(),
                "solution": code,
            }
        )
    return out


def allowed_calls(nb: dict) -> list[str]:
    """The calls the grader would flag that the course's own notebook makes (not held against a submission)."""
    code = "\n".join(_text(c) for c in nb["cells"] if c["cell_type"] == "code")
    return sorted({m.group(0) for m in FORBIDDEN.finditer(code)})


def source_notebooks(names: list[str] | None = None) -> dict[str, dict]:
    paths = sorted(SOURCE.glob("[0-9][0-9]_*.ipynb"))
    return {p.name: json.loads(p.read_text()) for p in paths if not names or p.name in names or p.name[:2] in names}


# ---------------------------------------------------------------- the two versions


def _clean(cell: dict) -> dict:
    cell = json.loads(json.dumps(cell))
    if cell["cell_type"] == "code" and "# NBVAL_CHECK_OUTPUT" not in _text(cell):
        cell["outputs"], cell["execution_count"] = [], None
    return cell


def student_version(nb: dict) -> dict:
    """No solution and no instructor cell; exercise templates and checks as they are."""
    out = dict(nb)
    out["cells"] = [_clean(c) for c in nb["cells"] if not {"solution", "instructor"} & set(_tags(c))]
    return out


def instructor_version(nb: dict, name: str) -> dict:
    """Each solution's code as a code cell right before its check; solutions and notes stay visible."""
    sols = {e["cell_id"]: e for e in exercises(nb, name)}
    cells = []
    for c in nb["cells"]:
        if c.get("id") in sols:
            e = sols[c["id"]]
            cells.append(
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "id": f"{c['id']}-solution",
                    "metadata": {"tags": ["solution"]},
                    "outputs": [],
                    "source": _lines(f"# Solution of exercise {e['id']}\n{e['solution']}"),
                }
            )
        c = _clean(c)
        if "instructor" in _tags(c):
            c["metadata"]["tags"] = [t for t in _tags(c) if t != "remove-cell"]
        cells.append(c)
    out = dict(nb)
    out["cells"] = cells
    return out


def _dump(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def doctest_code(call: str) -> str:
    """A doctest that runs a check quietly (its verdict line would break doctest's output match) and wants True."""
    return (
        ">>> import contextlib, io\n>>> with contextlib.redirect_stdout(io.StringIO()):\n"
        f"...     _tl_ok = bool({call})\n>>> _tl_ok\nTrue"
    )


def otter_test(e: dict) -> str:
    """An otter-grader OK-format test file that runs the course's own check function (no duplicate logic)."""
    test = {
        "name": e["id"],
        "points": 1,
        "suites": [
            {
                "cases": [{"code": doctest_code(e["call"]), "hidden": False, "locked": False}],
                "scored": True,
                "setup": "",
                "teardown": "",
                "type": "doctest",
            }
        ],
    }
    return f"OK_FORMAT = True\n\ntest = {pprint.pformat(test, sort_dicts=False)}\n"


def build(out: Path, names: list[str] | None = None) -> dict:
    """Write student/, instructor/ and autograder/ under ``out``; return the manifest."""
    out = Path(out)
    for sub in ("student", "instructor", "autograder"):
        shutil.rmtree(out / sub, ignore_errors=True)
    manifest = {"format": FORMAT, "notebooks": {}, "allowed_calls": {}}
    for name, nb in source_notebooks(names).items():
        ex = exercises(nb, name)
        manifest["allowed_calls"][name] = allowed_calls(nb)
        _dump(student_version(nb), out / "student" / name)
        _dump(instructor_version(nb, name), out / "instructor" / name)
        manifest["notebooks"][name] = [{k: v for k, v in e.items() if k != "solution"} for e in ex]
        for e in ex:
            (out / "autograder" / "tests").mkdir(parents=True, exist_ok=True)
            (out / "autograder" / "tests" / f"q{e['id'].replace('.', '_')}.py").write_text(otter_test(e))
    _dump(manifest, out / "autograder" / "manifest.json")
    return manifest


# ---------------------------------------------------------------- running one notebook in a sandbox


def sandbox_prefix(workdir: Path) -> tuple[list[str], str]:
    """The command prefix that isolates a run, and a sentence saying what it gives."""
    script = (
        'mount --bind "$0" "$0" && while read -r _ mp _ opts _; do [ "$mp" = "$0" ] && continue; f=ro; '
        'for o in $(echo "$opts" | tr , " "); do case $o in nosuid|nodev|noexec|relatime|noatime|nodiratime|'
        'strictatime) f="$f,$o";; esac; done; mount -o "remount,bind,$f" "$mp" 2>/dev/null; done </proc/self/mounts; '
        'mount -t tmpfs tmpfs /dev/shm 2>/dev/null; shift; exec "$@"'
    )
    prefix = ["unshare", "-rnm", "sh", "-c", script, str(workdir), "--"]
    probe = subprocess.run([*prefix, "sh", "-c", f'! touch "{ROOT}/.tl-ro-probe" 2>/dev/null'], capture_output=True)
    if probe.returncode == 0:
        return prefix, "no network (own network namespace), file system read-only except the run's temporary folder"
    return [], (
        "NO SANDBOX: `unshare -rnm` is not permitted on this machine (user namespaces disabled), so submissions "
        "ran with the grader's network and file access; grade untrusted work on a machine that allows it"
    )


def _runner(job_path: str) -> None:
    """Inside the sandbox: run the cells in one IPython shell; one JSON line per check on fd 3's file."""
    import contextlib
    import io
    import traceback

    job = json.loads(Path(job_path).read_text())
    log = open(job["results"], "a", buffering=1)  # noqa: SIM115 - written line by line until the end
    import matplotlib

    matplotlib.use("Agg")
    import torch  # noqa: F401 - imported before the guard: torch may probe the system at import
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance(colors="nocolor")

    python = os.path.realpath(sys.executable)

    def guard(event, args):
        if event == "subprocess.Popen" and os.path.realpath(str(args[0] or (list(args[1]) or [""])[0])) == python:
            return  # a fresh Python process (notebook 07 reloads a model in one); it inherits the sandbox
        if event.startswith(BLOCKED_EVENTS):
            raise PermissionError(f"{event} is not allowed while grading")

    sys.addaudithook(guard)
    for i, cell in enumerate(job["cells"]):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            try:
                res = shell.run_cell(cell["source"], store_history=False, silent=False)
                err = res.error_in_exec or res.error_before_exec
            except BaseException as e:  # noqa: BLE001 - a submission may raise anything, SystemExit included
                err = e
        text = buf.getvalue()
        sys.stdout.write(text)
        sys.stdout.flush()
        rec = {"cell": i}
        if err is not None:
            rec["error"] = "".join(traceback.format_exception_only(type(err), err)).strip().splitlines()[-1][:300]
        if cell.get("exercise"):
            rec["exercise"] = cell["exercise"]
            verdicts = [ln for ln in text.splitlines() if ln.startswith(("✅ Correct", "❌ Not yet"))]
            rec["verdict"] = (
                ERROR if err is not None or not verdicts else PASSED if verdicts[-1].startswith("✅") else NOT_YET
            )
            rec["line"] = (verdicts[-1] if verdicts else rec.get("error", "no verdict printed"))[:300]
        if "error" in rec or "exercise" in rec:
            log.write(json.dumps(rec) + "\n")
    log.write(json.dumps({"done": True}) + "\n")


def identify(nb: dict, manifest: dict) -> str | None:
    """Which assignment a submission is: the source notebook sharing the most check functions with it."""
    code = "\n".join(_text(c) for c in nb.get("cells", []) if c.get("cell_type") == "code")
    scores = {n: sum(e["check"] + "(" in code for e in ex) for n, ex in manifest["notebooks"].items()}
    best = max(scores, key=scores.get, default=None)
    return best if best and scores[best] else None


def run_submission(
    path: Path,
    manifest: dict,
    timeout: float = 600,
    quick: bool = True,
    through_exercises: bool = False,
    sandbox: bool = True,
) -> dict:
    """Grade one notebook file; never raises for anything the submission does."""
    result = {"file": path.name, "notebook": None, "status": "ok", "exercises": {}, "errors": [], "notes": []}
    try:
        nb = json.loads(path.read_bytes())
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            raise ValueError("not a notebook (no cell list)")
        nb["cells"] = [c for c in nb["cells"] if isinstance(c, dict) and isinstance(c.get("source"), (str, list))]
    except (ValueError, UnicodeDecodeError) as e:
        result["status"] = "invalid notebook"
        result["notes"].append(f"not valid notebook JSON: {str(e)[:200]}")
        return result
    name = identify(nb, manifest)
    if name is None:
        result["status"] = "unknown notebook"
        result["notes"].append("none of the course's check calls is in this notebook")
        return result
    result["notebook"] = name
    ex = manifest["notebooks"][name]
    by_id = {e["cell_id"]: e for e in ex}
    cells, seen = [], set()
    for c in nb["cells"]:
        if c.get("cell_type") != "code":
            continue
        src = _text(c) if isinstance(c["source"], list) else c["source"]
        e = by_id.get(c.get("id"))
        if e is None:
            e = next((x for x in ex if x["id"] not in seen and src.strip() == x["source"].strip()), None)
        if e is not None:
            seen.add(e["id"])
            if src.strip() != e["source"].strip():
                result["exercises"][e["id"]] = {"verdict": TAMPERED, "line": "check cell edited; graded as tampered"}
            cells.append({"source": e["source"], "exercise": e["id"]})  # the pristine check, whatever was there
        else:
            cells.append({"source": src})
    for e in ex:
        if e["id"] not in seen:
            result["exercises"][e["id"]] = {"verdict": TAMPERED, "line": "check cell deleted"}
    code = "\n".join(c["source"] for c in cells)
    allowed = set(manifest.get("allowed_calls", {}).get(name, []))  # what the course's own notebook calls
    hits = sorted({m.group(0) for m in FORBIDDEN.finditer(code)} - allowed)
    if hits:
        result["notes"].append(f"forbidden call(s) in the code: {', '.join(hits)} (blocked in the sandbox)")
        result["status"] = f"forbidden call: {hits[0]}"
    if through_exercises and any("exercise" in c for c in cells):
        last = max(i for i, c in enumerate(cells) if "exercise" in c)
        cells = cells[: last + 1]
    result.update(_execute(cells, timeout, quick, sandbox, result))
    if result["status"] == "ok" and any(v["verdict"] == TAMPERED for v in result["exercises"].values()):
        result["status"] = "tampered check"
    return result


def _cache_view(real: Path, tmp: Path) -> Path:
    """A cache folder inside the run's temporary folder: links to the real (read-only) data in
    ``READ_FROM_CACHE``, and room for what the notebooks write there (notebook 07: its sample photos, its model)."""
    view = tmp / "cache"
    view.mkdir()
    for name in READ_FROM_CACHE:
        if (real / name).exists():
            (view / name).symlink_to(real / name)
    return view


def _execute(cells: list[dict], timeout: float, quick: bool, sandbox: bool, result: dict) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="tl-grade-"))
    try:
        (tmp / "home").mkdir()
        job = {"cells": cells, "results": str(tmp / "results.jsonl")}
        (tmp / "job.json").write_text(json.dumps(job))
        prefix, how = sandbox_prefix(tmp) if sandbox else ([], "no sandbox (disabled by the caller)")
        env = {k: v for k, v in os.environ.items() if k in PASSED_ENV}
        env.update(
            HOME=str(tmp / "home"),
            MPLCONFIGDIR=str(tmp / "home"),
            MPLBACKEND="Agg",
            PYTHONPATH=str(ROOT),
            PYTHONDONTWRITEBYTECODE="1",
            TLHELPERS_QUICK="1" if quick else "0",
            TMPDIR=str(tmp),
        )
        env.setdefault("TORCH_HOME", str(Path.home() / ".cache" / "torch"))
        env["TLHELPERS_HOME"] = str(
            _cache_view(Path(env.get("TLHELPERS_HOME", Path.home() / ".cache" / "tlhelpers")), tmp)
        )
        cmd = [
            *prefix,
            sys.executable,
            "-c",
            f"from tlhelpers.classroom import _runner; _runner({str(tmp / 'job.json')!r})",
        ]
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        size, outcome = 0, None
        os.set_blocking(proc.stdout.fileno(), False)
        with open(tmp / "output.txt", "wb") as out:
            while True:
                chunk = proc.stdout.read(1 << 16)
                if chunk:
                    size += len(chunk)
                    if size <= OUTPUT_CAP:
                        out.write(chunk)
                    else:
                        outcome = f"output over {OUTPUT_CAP // 2**20} MB"
                elif proc.poll() is not None:
                    break
                else:
                    time.sleep(0.05)
                if outcome is None and time.monotonic() - start > timeout:
                    outcome = f"timeout after {timeout:.0f} s"
                if outcome:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    break
        seconds = time.monotonic() - start
        records = (
            [json.loads(ln) for ln in (tmp / "results.jsonl").read_text().splitlines()]
            if (tmp / "results.jsonl").exists()
            else []
        )
        tail = (tmp / "output.txt").read_bytes()[-2000:].decode(errors="replace")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"seconds": round(seconds, 1), "sandbox": how, "exercises": dict(result["exercises"])}
    for r in records:
        if "exercise" in r and r["exercise"] not in out["exercises"]:
            out["exercises"][r["exercise"]] = {"verdict": r["verdict"], "line": r["line"]}
        elif "exercise" in r:  # tampered: keep the verdict, say what the pristine check gave
            out["exercises"][r["exercise"]]["line"] += f"; the original check said: {r['line']}"
        if "error" in r and "exercise" not in r:
            result["errors"].append(f"code cell {r['cell'] + 1}: {r['error']}")
    done = any(r.get("done") for r in records)
    if outcome:
        result["status"] = outcome
    elif not done:
        result["status"] = f"crashed (exit code {proc.returncode})"
        result["notes"].append("last output: " + tail.strip()[-300:])
    return out


# ---------------------------------------------------------------- a class


def submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, file): ``DIR/<student>.ipynb`` or ``DIR/<student>/<any>.ipynb``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}: give the folder that holds the submitted notebooks")
    found = [(p.stem, p) for p in sorted(folder.glob("*.ipynb"))]
    found += [(p.parent.name, p) for p in sorted(folder.glob("*/*.ipynb"))]
    return found


def cell_value(result: dict, ex_id: str) -> str:
    """What the table shows for one exercise: the check's verdict, or why there is none."""
    if ex_id in result["exercises"]:
        return result["exercises"][ex_id]["verdict"]
    return (
        result["status"] if result["status"] not in ("ok",) and not result["status"].startswith("forbidden") else ERROR
    )


def grade(folder: Path, out: Path, manifest: dict, **kw) -> list[dict]:
    """Grade every submission in ``folder``; write grades.csv, grades.md and reports/<student>.md into ``out``."""
    rows = []
    for student, path in submissions(folder):
        r = run_submission(path, manifest, **kw)
        r["student"] = student
        rows.append(r)
        print(f"  {student}: {r['status']} ({r.get('seconds', 0)} s)", flush=True)
    write_tables(rows, manifest, Path(out))
    return rows


def write_tables(rows: list[dict], manifest: dict, out: Path) -> None:
    names = sorted({r["notebook"] for r in rows if r["notebook"]}) or sorted(manifest["notebooks"])
    cols = [e["id"] for n in names for e in manifest["notebooks"][n]]
    out.mkdir(parents=True, exist_ok=True)
    table = [
        [r["student"], r["file"], r["status"]]
        + [cell_value(r, c) if r["notebook"] in (None, c_nb(c, manifest)) else "" for c in cols]
        + [str(sum(r["exercises"].get(c, {}).get("verdict") == PASSED for c in cols))]
        for r in rows
    ]
    head = ["student", "file", "status", *cols, "passed"]
    with open(out / "grades.csv", "w", newline="") as f:
        csv.writer(f).writerows([head, *table])
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(x.replace("|", "/") for x in row) + " |" for row in table]
    (out / "grades.md").write_text("\n".join(md) + "\n")
    (out / "reports").mkdir(exist_ok=True)
    for r in rows:
        lines = [f"# {r['student']}: {r['file']}", "", f"- notebook: {r['notebook'] or 'not recognised'}"]
        lines += [
            f"- status: {r['status']}",
            f"- run time: {r.get('seconds', 0)} s",
            f"- sandbox: {r.get('sandbox', '-')}",
        ]
        lines += [f"- note: {n}" for n in r["notes"]]
        if r["notebook"]:
            lines += ["", "| exercise | check | result | what the check said |", "|---|---|---|---|"]
            for e in manifest["notebooks"][r["notebook"]]:
                v = r["exercises"].get(e["id"], {"verdict": cell_value(r, e["id"]), "line": "not reached"})
                lines.append(f"| {e['id']} | `{e['check']}` | {v['verdict']} | {v['line'].replace('|', '/')} |")
        if r["errors"]:
            lines += ["", "Cells that raised (outside the checks):", *[f"- {x}" for x in r["errors"]]]
        (out / "reports" / f"{r['student']}.md").write_text("\n".join(lines) + "\n")


def c_nb(ex_id: str, manifest: dict) -> str:
    return next(n for n, ex in manifest["notebooks"].items() if any(e["id"] == ex_id for e in ex))


# ---------------------------------------------------------------- verify and plan


def verify(
    out: Path,
    names: list[str] | None = None,
    through: tuple[str, ...] = (),
    skip_student: tuple[str, ...] = (),
    timeout: float = 600,
) -> int:
    """Build, then run the student notebooks (every check 'not yet', no cell raises) and the instructor ones
    (every check passes, no cell raises) through the grader, in quick mode. Returns the number of failures.

    ``through``: notebooks (two-digit numbers) run only up to their last check cell. ``skip_student``: notebooks
    whose student version is not run; its code cells are the source's, byte for byte (a test asserts it), and
    CI runs the source notebooks with nbval."""
    manifest = build(out, names)
    failures = 0
    for version, want in (("student", NOT_YET), ("instructor", PASSED)):
        print(f"== {version} notebooks (every check should say: {want})", flush=True)
        rows = []
        for path in sorted((Path(out) / version).glob("*.ipynb")):
            if version == "student" and path.name[:2] in skip_student:
                print(f"  {path.stem}: not run (code cells identical to the source, which nbval runs)")
                continue
            r = run_submission(path, manifest, timeout=timeout, quick=True, through_exercises=path.name[:2] in through)
            r["student"] = path.stem
            rows.append(r)
            bad = [f"{k}: {v['verdict']} ({v['line']})" for k, v in r["exercises"].items() if v["verdict"] != want]
            if len(r["exercises"]) != len(manifest["notebooks"].get(r["notebook"], [None])):
                bad.append(f"{len(r['exercises'])} checks ran, not {len(manifest['notebooks'].get(r['notebook'], []))}")
            bad += r["errors"] + ([r["status"]] if r["status"] != "ok" else [])
            part = " (through its exercises)" if path.name[:2] in through else ""
            print(f"  {path.stem}{part}: {'FAIL' if bad else 'ok'} ({r.get('seconds', 0)} s)", flush=True)
            for x in bad:
                print(f"    {x}")
            failures += bool(bad)
        write_tables(rows, manifest, Path(out) / f"{version}-run")
    print("verify: " + ("all good" if not failures else f"{failures} notebook(s) failed"))
    return failures


def plan(minutes: int) -> list[tuple[str, float, float]]:
    """(notebook, full-mode run minutes, planned minutes) for a session of ``minutes``.

    Each notebook gets its measured full-mode run time (course backbone, 2 CPUs) plus a reading and exercise
    allowance of 4 minutes per exercise and 8 minutes of explanation; notebooks are taken in order while
    they fit, keeping 10 minutes for the opening and the wrap-up."""
    budgets = json.loads(BUDGETS.read_text())
    used, rows = 10.0, []
    for name, nb in source_notebooks().items():
        run = budgets.get(name, {}).get("course", {}).get("seconds_full_mode", 0) / 60
        need = run + 8 + 4 * len(exercises(nb, name))
        if used + need > minutes:
            break
        used += need
        rows.append((name, round(run, 1), round(need)))
    return rows


# ---------------------------------------------------------------- command line


def add_cli(sub) -> None:
    """Register ``classroom`` on the ``python -m tlhelpers`` parser."""
    p = sub.add_parser("classroom", help="student/instructor notebooks, autograder, grading a class offline")
    cs = p.add_subparsers(dest="action", required=True)
    b = cs.add_parser("build", help="write OUT/student, OUT/instructor and OUT/autograder from notebooks/")
    b.add_argument("out")
    g = cs.add_parser("grade", help="grade every notebook in a folder of submissions, in a sandbox")
    g.add_argument("submissions")
    g.add_argument("--out", help="where the tables and reports go (default: SUBMISSIONS-grades)")
    g.add_argument("--manifest", help="autograder/manifest.json of a build (default: built from notebooks/)")
    g.add_argument("--timeout", type=float, default=600, help="seconds per submission (default 600)")
    g.add_argument("--full", action="store_true", help="run in full mode (default: quick mode, TLHELPERS_QUICK=1)")
    v = cs.add_parser("verify", help="build, then run both versions through the grader (CI)")
    v.add_argument("out")
    v.add_argument("--notebooks", nargs="*", help="only these (names or two-digit numbers)")
    v.add_argument("--through-exercises", nargs="*", default=[], help="these (NN) run only to their last check")
    v.add_argument("--skip-student", nargs="*", default=[], help="these (NN) run only their instructor version")
    v.add_argument("--timeout", type=float, default=600)
    cs.add_parser("plan", help="90-minute and 3-hour session plans from docs/notebook_budgets.json")
    p.set_defaults(fn=main)


def main(args: argparse.Namespace) -> int:
    if args.action == "build":
        m = build(Path(args.out))
        n = sum(len(v) for v in m["notebooks"].values())
        print(f"built {len(m['notebooks'])} notebooks, {n} exercises: {args.out}/student, instructor, autograder")
        return 0
    if args.action == "grade":
        folder = Path(args.submissions)
        if args.manifest:
            manifest = json.loads(Path(args.manifest).read_text())
        else:
            nbs = source_notebooks()
            manifest = {
                "format": FORMAT,
                "notebooks": {n: exercises(nb, n) for n, nb in nbs.items()},
                "allowed_calls": {n: allowed_calls(nb) for n, nb in nbs.items()},
            }
        out = Path(args.out or f"{folder.as_posix().rstrip('/')}-grades")
        try:
            grade(folder, out, manifest, timeout=args.timeout, quick=not args.full)
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"grades: {out}/grades.csv, {out}/grades.md, {out}/reports/")
        return 0
    if args.action == "verify":
        skip = tuple(args.skip_student)
        return (
            1
            if verify(Path(args.out), args.notebooks or None, tuple(args.through_exercises), skip, args.timeout)
            else 0
        )
    for minutes in (90, 180):
        rows = plan(minutes)
        print(f"{minutes} minutes: " + ", ".join(f"{n} ({t} min)" for n, _, t in rows))
    return 0
