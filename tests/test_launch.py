"""Launch routes: conda environment, Binder, Colab install cell, notebook badges (all offline, fast)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
CONDA_TO_PIP = {"pytorch": "torch", "matplotlib-base": "matplotlib"}
NOT_PACKAGES = {"python", "pip"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SLUG = PYPROJECT["urls"]["Repository"].removeprefix("https://github.com/").strip("/")


def _name(req: str) -> str:
    return Requirement(req).name.lower().replace("_", "-")


def pyproject_runtime() -> dict[str, Requirement]:
    return {_name(r): Requirement(r) for r in PYPROJECT["dependencies"]}


def pyproject_extras(*extras: str) -> dict[str, Requirement]:
    reqs = [Requirement(r) for e in extras for r in PYPROJECT["optional-dependencies"][e]]
    return {r.name.lower(): r for r in reqs if r.name != "tlhelpers"}


def conda_env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def conda_specs() -> dict[str, str]:
    """pip-style name -> conda spec ("pytorch=2.14.*=cpu*" is keyed "torch"), the pip section's PyPI-only ones too."""
    out = {}
    deps = conda_env()["dependencies"]
    pip = [p for d in deps if isinstance(d, dict) for p in d.get("pip", []) if not p.startswith("-")]
    for dep in [*deps, *pip]:
        if isinstance(dep, str):
            name = re.match(r"[A-Za-z0-9_.\-]+", dep).group(0).lower()
            out[CONDA_TO_PIP.get(name, name)] = dep
    return out


def ci_torch_pins() -> dict[str, Version]:
    """The PyTorch versions CI installs: course.sh's default TL_TORCH."""
    m = re.search(r"TORCH=\$\{TL_TORCH:-([^}]*)\}", (ROOT / "course.sh").read_text())
    assert m, "course.sh no longer sets TORCH=${TL_TORCH:-...}"
    return {Requirement(r).name: Version(str(Requirement(r).specifier).removeprefix("==")) for r in m.group(1).split()}


def binder_requirements() -> tuple[list[str], dict[str, Requirement]]:
    options, reqs = [], {}
    for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            options.append(line)
        else:
            reqs[_name(line)] = Requirement(line)
    return options, reqs


# ---------------------------------------------------------------- environment files


def test_conda_env_is_conda_forge_python311_and_installs_the_package():
    env = conda_env()
    assert env["name"]
    assert env["channels"][0] == "conda-forge" and set(env["channels"]) <= {"conda-forge", "nodefaults"}, env[
        "channels"
    ]
    specs = conda_specs()
    assert re.fullmatch(r"python=3\.11(\.\*)?", specs["python"]), specs["python"]
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert pip_sections and "-e ." in [p.split("#")[0].strip() for p in pip_sections[0]], pip_sections


def test_conda_env_pins_cpu_pytorch_to_what_ci_tests():
    specs, ci = conda_specs(), ci_torch_pins()
    for pip_name, conda_name in (("torch", "pytorch"), ("torchvision", "torchvision")):
        m = re.fullmatch(rf"{conda_name}=(\d+)\.(\d+)\.\*=cpu\*", specs[pip_name])
        assert m, f"environment.yml: {specs[pip_name]!r} should be '{conda_name}=X.Y.*=cpu*' (conda-forge CPU build)"
        assert (int(m.group(1)), int(m.group(2))) == ci[pip_name].release[:2], (specs[pip_name], ci[pip_name])


def test_conda_env_and_pyproject_list_the_same_runtime_dependencies():
    runtime, specs = pyproject_runtime(), conda_specs()
    tools = pyproject_extras("lab", "test")
    env_names = set(specs) - NOT_PACKAGES
    assert set(runtime) <= env_names, f"in pyproject.toml but not environment.yml: {sorted(set(runtime) - env_names)}"
    assert env_names - set(runtime) <= set(tools), (
        f"in environment.yml but neither a runtime dependency nor a lab/test tool: "
        f"{sorted(env_names - set(runtime) - set(tools))}"
    )
    assert set(tools) <= env_names, f"lab/test tools missing from environment.yml: {sorted(set(tools) - env_names)}"
    for name, req in {**runtime, **tools}.items():
        conda = specs[name]
        if name in ("torch", "torchvision"):  # pinned: the pin must satisfy pyproject's range
            pinned = re.search(r"=(\d+\.\d+)\.\*", conda).group(1)
            assert req.specifier.contains(pinned + ".0"), (conda, str(req))
        else:
            assert conda.split(re.match(r"[\w.\-]+", conda).group(0), 1)[1] == str(req.specifier), (
                f"version bounds drifted: environment.yml {conda!r} vs pyproject.toml {str(req)!r}"
            )


def test_binder_requirements_cpu_torch_and_same_runtime_dependencies():
    options, reqs = binder_requirements()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in options, options
    ci = ci_torch_pins()
    for name in ("torch", "torchvision"):
        (spec,) = reqs[name].specifier
        v = Version(spec.version)
        assert spec.operator == "==" and v.local == "cpu", f"binder: {reqs[name]} should pin the +cpu wheel"
        assert v.release == ci[name].release, f"binder pins {v}, CI tests {ci[name]}"
    runtime = pyproject_runtime()
    assert set(runtime) <= set(reqs), f"missing from binder/requirements.txt: {sorted(set(runtime) - set(reqs))}"
    for name, req in runtime.items():
        if name not in ("torch", "torchvision"):
            assert reqs[name].specifier == req.specifier, f"binder {reqs[name]} vs pyproject {req}"
    assert reqs["jupyterlab"].specifier.contains("4.2.0") and not reqs["jupyterlab"].specifier.contains("3.6.0")
    assert reqs["ipywidgets"].specifier.contains("8.1.0") and not reqs["ipywidgets"].specifier.contains("7.8.0")


def test_binder_python_matches_conda_env():
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    assert runtime == "python-" + conda_specs()["python"].split("=")[1].removesuffix(".*")


# ---------------------------------------------------------------- Binder scripts


def test_binder_scripts_are_executable_bash():
    for name in ("postBuild", "start"):
        path = ROOT / "binder" / name
        assert path.stat().st_mode & stat.S_IXUSR, f"binder/{name} is not executable"
        assert path.read_text().startswith("#!/bin/bash\n")
        subprocess.run(["bash", "-n", str(path)], check=True)
    text = (ROOT / "binder" / "postBuild").read_text()
    assert "python -m tlhelpers prefetch" in text and "-e ." in text


def test_postbuild_fails_loudly_when_prefetch_fails(tmp_path):
    """Run binder/postBuild with pip stubbed out and no network: the build must stop with a message."""
    shim = tmp_path / "bin" / "python"
    shim.parent.mkdir()
    shim.write_text(f"""#!/bin/bash
if [ "$1 $2" = "-m pip" ]; then echo "pip stubbed: $*"; exit 0; fi
exec {sys.executable} "$@"
""")
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{shim.parent}:{os.environ['PATH']}",
        "TLHELPERS_HOME": str(tmp_path / "cache"),
        "TORCH_HOME": str(tmp_path / "torch"),
        "TLHELPERS_OFFLINE": "1",
        "TLHELPERS_CIFAR_DIR": str(tmp_path / "none"),
    }
    r = subprocess.run(
        ["bash", str(ROOT / "binder" / "postBuild")], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode != 0
    assert "pip stubbed: -m pip install --no-cache-dir -e ." in r.stdout
    assert "binder/postBuild FAILED: python -m tlhelpers prefetch" in r.stderr, r.stderr
    assert "missing: ImageNet ResNet18 weights" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "cpu_max, preset, expected",
    [("100000 100000", None, "1"), ("150000 100000", None, "2"), ("max 100000", None, ""), ("100000 100000", "3", "3")],
)
def test_binder_start_sizes_threads_to_cpu_quota(tmp_path, cpu_max, preset, expected):
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["TL_CGROUP_ROOT"] = str(tmp_path)
    if preset:
        env["OMP_NUM_THREADS"] = preset
    r = subprocess.run(
        ["bash", str(ROOT / "binder" / "start"), "bash", "-c", 'echo "threads=${OMP_NUM_THREADS:-}"'],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout.strip() == f"threads={expected}"


# ---------------------------------------------------------------- the Colab install cell


def canonical_colab_cell() -> str:
    """The install cell exactly as docs/CONTRIBUTING.md prescribes it."""
    text = (ROOT / "docs" / "CONTRIBUTING.md").read_text()
    blocks = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)^[ \t]*```", text, re.S | re.M)]
    cells = [b for b in blocks if b.startswith("# Runs only on Google Colab")]
    assert len(cells) == 1, "docs/CONTRIBUTING.md no longer shows the Colab install cell"
    return cells[0]


def _norm(src: str) -> str:
    return "\n".join(line.rstrip() for line in src.strip().splitlines())


def run_cell_recording_installs(src: str, monkeypatch, in_colab: bool) -> list[str]:
    """Execute ``src`` as IPython would (magics included); return the magics it ran. Any subprocess is an error.

    The cell goes through IPython's own input transformer (``%pip`` becomes
    ``get_ipython().run_line_magic("pip", ...)``) and runs against a stand-in shell that records
    magics instead of running them, so nothing can be installed whatever the cell does.
    """
    from IPython.core.inputtransformer2 import TransformerManager

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"the install cell started a process: {args}")

    calls: list[str] = []

    class RecordingShell:
        def run_line_magic(self, name: str, line: str, *args) -> None:
            calls.append(f"%{name} {line}")

        def run_cell_magic(self, name: str, line: str, cell: str) -> None:
            calls.append(f"%%{name} {line}")

        def system(self, cmd: str) -> None:
            calls.append(f"!{cmd}")

        getoutput = system

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    monkeypatch.setattr(os, "system", no_subprocess)
    if in_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    shell = RecordingShell()
    code = TransformerManager().transform_cell(src)
    exec(compile(code, "<colab install cell>", "exec"), {"get_ipython": lambda: shell, "__name__": "__main__"})
    return calls


def test_colab_cell_is_a_noop_outside_colab(monkeypatch):
    assert run_cell_recording_installs(canonical_colab_cell(), monkeypatch, in_colab=False) == []


def test_colab_cell_installs_this_repository_in_colab(monkeypatch):
    calls = run_cell_recording_installs(canonical_colab_cell(), monkeypatch, in_colab=True)
    assert len(calls) == 1 and calls[0].startswith("%pip install")
    assert f'"tlhelpers @ git+https://github.com/{SLUG}"' in calls[0], calls


# ---------------------------------------------------------------- every notebook: install cell and badges

needs_notebooks = pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks in notebooks/ yet")


@needs_notebooks
def test_binder_landing_notebook_exists():
    assert (NB_DIR / "00_welcome.ipynb").is_file()


def _links(markdown: str) -> list[tuple[str, str]]:
    """(image URL, target URL) of every badge ``[![alt](image)](target)``."""
    return re.findall(r"\[!\[[^\]]*\]\(([^)\s]+)\)\]\(([^)\s]+)\)", markdown)


@needs_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_colab_install_cell_first(path, monkeypatch):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cells"
    src = "".join(code[0]["source"])
    assert _norm(src) == _norm(canonical_colab_cell()), f"{path.name}: first code cell is not the Colab install cell"
    assert run_cell_recording_installs(src, monkeypatch, in_colab=False) == []


@needs_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_badges_point_at_this_notebook(path):
    nb = json.loads(path.read_text())
    first = "".join(nb["cells"][0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown", f"{path.name}: the first cell must be the markdown header"
    links = _links(first)
    binder = [t for img, t in links if "mybinder.org/badge" in img]
    colab = [t for img, t in links if "colab-badge" in img]
    assert len(binder) == 1 and len(colab) == 1, f"{path.name}: expected one Binder and one Colab badge, found {links}"
    rel = f"notebooks/{path.name}"

    b = urlparse(binder[0])
    assert (b.scheme, b.netloc) == ("https", "mybinder.org") and b.path.startswith(f"/v2/gh/{SLUG}/"), binder[0]
    assert parse_qs(b.query).get("urlpath") == [f"lab/tree/{rel}"], f"{path.name}: Binder urlpath {b.query!r}"

    c = urlparse(colab[0])
    assert (c.scheme, c.netloc) == ("https", "colab.research.google.com"), colab[0]
    assert re.fullmatch(rf"/github/{re.escape(SLUG)}/blob/[^/]+/{re.escape(rel)}", c.path), colab[0]
    assert b.path.split("/")[-1] == c.path.split("/blob/")[1].split("/")[0], (
        "Binder and Colab point at different branches"
    )
    owner, name = SLUG.split("/")
    site = f"https://{owner}.github.io/{name}/notebooks/{path.stem}.html"
    assert f"]({site})" in first, f"{path.name}: the header does not link its page on the website ({site})"


def test_readme_documents_every_launch_route():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"^## Launch routes\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert m, "README.md has no '## Launch routes' section"
    section = m.group(1)
    for needle in (
        "bash course.sh lab",
        "bash course.sh test",
        "conda env create -f environment.yml",
        "urlpath=lab/tree/notebooks/00_welcome.ipynb",
        "colab.research.google.com",
        "python -m tlhelpers bundle export",
        "python -m tlhelpers bundle import",
        "bash course.sh doctor",
    ):
        assert needle in section, f"README 'Launch routes' does not mention {needle!r}"


def test_course_sh_calls_cli_commands_that_exist(capsys):
    """course.sh relies on `prefetch --archive ... --data-only`; keep the CLI compatible."""
    from tlhelpers.cli import main

    text = (ROOT / "course.sh").read_text()
    assert "tlhelpers prefetch --archive" in text and "--data-only" in text
    with pytest.raises(SystemExit) as e:
        main(["prefetch", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--archive" in out and "--data-only" in out


def test_api_reference_and_readme_cover_every_module():
    """site/api.md documents every module of tlhelpers, and the README's package table names each one."""
    modules = sorted(p.stem for p in (ROOT / "tlhelpers").glob("*.py") if not p.stem.startswith("_"))
    api = (ROOT / "site" / "api.md").read_text()
    readme = (ROOT / "README.md").read_text()
    missing_api = [m for m in modules if f".. automodule:: tlhelpers.{m}\n" not in api]
    missing_readme = [m for m in modules if f"`{m}`" not in readme]
    assert not missing_api, f"add to site/api.md: {missing_api}"
    assert not missing_readme, f"add to the README's package table: {missing_readme}"


# ---------------------------------------------------------------- course.sh: usage and doctor


def _course_sh(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "course.sh"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("arg", ["help", "--help", "-h"])
def test_course_sh_help_names_each_command_and_installs_nothing(tmp_path, arg):
    r = _course_sh(arg, TL_VENV=str(tmp_path / "venv"))
    assert r.returncode == 0 and r.stderr == ""
    commands = re.search(r'case "\$cmd" in\n\s*([\w|]+)\)', (ROOT / "course.sh").read_text()).group(1).split("|")
    assert set(commands) == {"lab", "test", "doctor", "site"}
    for cmd in commands:  # each command on its own line with what it does
        assert re.search(rf"^  {cmd}\s{{2,}}\S.{{20,}}", r.stdout, re.M), f"usage does not explain {cmd!r}"
    torch = " ".join(f"{n}=={v}" for n, v in ci_torch_pins().items())
    assert f'TL_TORCH="{torch} --index-url https://download.pytorch.org/whl/cpu"' in r.stdout
    assert "5.5 GB" in r.stdout
    assert not (tmp_path / "venv").exists(), "the usage path created a virtual environment"


@pytest.mark.parametrize(
    "args, error", [((), "error: no command given"), (("bogus",), "error: unknown command 'bogus'")]
)
def test_course_sh_without_a_known_command_prints_usage_and_exits_2(tmp_path, args, error):
    r = _course_sh(*args, TL_VENV=str(tmp_path / "venv"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("usage: bash course.sh COMMAND") and r.stderr.strip().endswith(
        error + ": see the usage above"
    )
    assert not (tmp_path / "venv").exists()


def test_course_sh_doctor_refuses_a_bad_setting(tmp_path):
    """`bash course.sh doctor` in this (complete) environment: nothing to install, doctor's verdict and exit code."""
    venv = Path(sys.prefix)
    ready = subprocess.run([sys.executable, "-c", "import torch, torchvision, tlhelpers, nbval, jupyterlab"]).returncode
    if ready != 0 or not (venv / "bin" / "ruff").is_file() or venv / "bin" / "python" != Path(sys.executable):
        pytest.skip("needs a course virtualenv with torch, nbval, jupyterlab and ruff (what course.sh sets up)")
    r = _course_sh("doctor", TL_VENV=str(venv), TLHELPERS_QUICK="maybe", TLHELPERS_HOME=str(tmp_path / "home"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "==> installing" not in r.stdout
    assert "[problem] $TLHELPERS_QUICK='maybe' is not a yes/no value: use 1/true/yes/on or 0/false/no/off." in r.stdout
    assert "Not ready: fix TLHELPERS_QUICK; missing CIFAR-10." in r.stdout


def test_course_sh_lab_opens_the_welcome_notebook_with_the_repository_as_root():
    text = (ROOT / "course.sh").read_text()
    lab = re.search(r'exec "\$VENV/bin/jupyter" lab (.*)', text).group(1)
    assert '--ServerApp.root_dir="$PWD"' in lab and "--LabApp.default_url=/lab/tree/notebooks/00_welcome.ipynb" in lab
    assert "notebooks/00_welcome.ipynb " not in lab.split("default_url")[0], "a file argument makes notebooks/ the root"
    assert (NB_DIR / "00_welcome.ipynb").is_file()


def test_browser_tests_find_playwrights_chromium_or_skip_in_one_line(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("e2e_conftest", ROOT / "tests" / "e2e" / "conftest.py")
    e2e = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "e2e_conftest", e2e)  # its dataclass looks its module up there
    spec.loader.exec_module(e2e)
    chrome = tmp_path / "chromium-1234" / "chrome-linux" / "chrome"
    chrome.parent.mkdir(parents=True)
    chrome.write_text("#!/bin/sh\n")
    chrome.chmod(0o755)
    monkeypatch.delenv("TL_CHROMIUM", raising=False)
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path))
    found = e2e.chromium_path()
    assert found in ("/usr/bin/chromium", shutil.which("chromium"), str(chrome))
    monkeypatch.setenv("TL_CHROMIUM", str(tmp_path / "none"))
    assert e2e.chromium_path() is None
    reason = e2e.CHROMIUM_SKIP.format(where=tmp_path / "none")
    assert "\n" not in reason and "sudo apt-get install chromium" in reason
    assert "python -m playwright install chromium" in reason
