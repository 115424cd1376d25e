"""All kept runs of ``perf_workflow.py`` side by side: one row per run, from each run's ``perf.json``.

The speed-up is a ratio between two workflows measured in the same run, but its value depends on the
host: the source's workflow is mostly Python and fp32 work, the course's mostly bf16 convolutions, and
2-core hosts of the same kind differ in both. This table shows the spread.

    python benchmarks/perf_runs.py       # writes benchmarks/results/perf_runs.md and prints it

Runs: ``benchmarks/results/perf.json`` (the latest, current code) and ``benchmarks/results/earlier_runs/*/perf.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BF16_ROW = "channels_last + bf16 autocast, batch 32"  # in every run's forward ladder: compares the hosts' bf16 speed


def rows() -> list[dict]:
    out = []
    for path in [RESULTS / "perf.json", *sorted(RESULTS.glob("earlier_runs/*/perf.json"))]:
        r = json.loads(path.read_text())
        ladder = {x["config"]: x["ms_per_image"] for x in r.get("techniques", {}).get("forward", {}).get("ladder", [])}
        t = r["targets"]
        out.append(
            {
                "file": path.relative_to(RESULTS.parent.parent).as_posix(),
                "timestamp": r["timestamp"],
                "cpu": r["machine"].get("cpu", "?"),
                "fold_bn": r["config"].get("fold_bn", False),
                "malloc": bool(r["course"].get("reuse_freed_memory", False)),
                "bf16_ms": ladder.get(BF16_ROW),
                "fp32_ms": ladder.get("eval + inference_mode, fp32, batch 32"),
                "anchor_s": r["anchor"]["phases"]["total"],
                "course_s": r["course"]["phases"]["total"],
                "speedup": t["total_speedup"]["value"],
                "rss_gb": t["course_peak_rss_gb"]["value"],
                "ten_over_one": t["ten_epochs_over_one"]["value"],
                "accuracy": t["accuracy"]["value"],
                "all_met": all(x["met"] for x in t.values()),
            }
        )
    return sorted(out, key=lambda x: x["timestamp"])


def label(file: str) -> str:
    folder = Path(file).parent
    return "perf.md (latest)" if folder.name == "results" else f"{folder.name}/perf.md"


def markdown(rs: list[dict]) -> str:
    def ms(v):
        return f"{v:.2f}" if v is not None else "-"

    lines = [
        "# Every kept run of `perf_workflow.py`",
        "",
        "Each row is one complete run (anchor and course in the same run, on the same host). "
        "`BN folded` says whether the course's `tl.embed` folded BatchNorm (its default since 2026-12-02); `freed "
        "memory kept` "
        "whether the course workflow had glibc keep freed activation buffers (`tl.device.reuse_freed_memory()`, "
        "opt-in). "
        f"The two ms/image columns are the forward-ladder rows `{BF16_ROW}` and `eval + inference_mode, fp32, batch "
        f"32`: "
        "they tell the hosts apart.",
        "",
        "| run | CPU | BN folded | freed memory kept | bf16 ms/image | fp32 ms/image | anchor s | course s | speed-up "
        "(>= 5) | course peak RSS GB (<= 1.0) "
        "| 10 epochs / 1 (<= 1.2) | accuracy course vs anchor | all targets met | results |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for x in rs:
        lines.append(
            f"| {x['timestamp']} | {x['cpu']} | {'yes' if x['fold_bn'] else 'no'} | {'yes' if x['malloc'] else 'no'} "
            f"| {ms(x['bf16_ms'])} | "
            f"{ms(x['fp32_ms'])} | {x['anchor_s']:.1f} | {x['course_s']:.2f} | **{x['speedup']:.2f}x** | "
            f"{x['rss_gb']:.2f} | {x['ten_over_one']:.2f} | {x['accuracy']} | {'yes' if x['all_met'] else '**no**'} | "
            f"[{label(x['file'])}]({Path(x['file']).relative_to('benchmarks/results').with_suffix('.md').as_posix()}) |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = markdown(rows())
    (RESULTS / "perf_runs.md").write_text(text)
    print(text)
