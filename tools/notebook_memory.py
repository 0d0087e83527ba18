"""Peak memory and run time of each tutorial notebook, measured as a workshop participant would meet them.

``python tools/notebook_memory.py [--write] [NOTEBOOK...]`` executes each notebook with papermill (into ``build/memory/``)
and samples, every 0.2 s, the proportional set size (PSS: shared pages split between the processes that map
them) summed over the kernel and every process it starts (Dask workers included). PSS sums are what a container's
memory limit sees, without counting a shared library once per worker. Prints one line per notebook and writes
``build/memory/notebook_memory.csv``; with ``--write`` (all notebooks) also ``bench/notebook_memory.csv`` and the
"**Runtime:** about N s; **memory:** peak M MB" statement of each notebook's first cell (runtime rounded to 5 s,
memory rounded up to 10 MB), which ``tests/test_notebook_hygiene.py`` checks against that table. Repository tooling (needs psutil and papermill), not part of the package.
"""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "memory"


def _tree_memory(proc: psutil.Process) -> tuple[int, int]:
    """(PSS, RSS) in bytes summed over the descendants of the papermill process (the kernel and its children)."""
    pss = rss = 0
    try:
        children = proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    for child in children:
        try:
            info = child.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        pss += getattr(info, "pss", info.rss)
        rss += info.rss
    return pss, rss


def measure(notebook: Path, interval: float = 0.2) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "papermill", str(notebook), str(OUT / notebook.name), "--cwd", str(notebook.parent),
           "-k", "python3", "--no-progress-bar", "--execution-timeout", "900"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched = psutil.Process(proc.pid)
    peak_pss = peak_rss = 0
    while proc.poll() is None:
        pss, rss = _tree_memory(watched)
        peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        time.sleep(interval)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{notebook.name} failed:\n{proc.stderr.read().decode()[-3000:]}")
    return {"notebook": notebook.stem, "seconds": round(seconds, 1), "peak_pss_mb": round(peak_pss / 2**20),
            "peak_rss_mb": round(peak_rss / 2**20)}


def stated(seconds: float, peak_mb: float) -> tuple[int, int]:
    """The runtime (nearest 5 s, at least 5) and memory (MB, rounded up to 10) a notebook states."""
    return max(5, 5 * round(seconds / 5)), 10 * math.ceil(peak_mb / 10)


def write_statements(path: Path, seconds: float, peak_mb: float) -> None:
    """Put the measured figures in the notebook's first cell (the JSON layout of the committed files is kept)."""
    runtime, memory = stated(seconds, peak_mb)
    nb = json.loads(path.read_text(encoding="utf-8"))
    text = "".join(nb["cells"][0]["source"])
    new, n_runtime = re.subn(r"\*\*Runtime:\*\* (?:about|under) [^;(]*?(?= \(|;)", f"**Runtime:** about {runtime} s", text, count=1)
    new, n_memory = re.subn(r"\*\*memory:\*\* (?:under|peak|about) [0-9.]+ [GM]B", f"**memory:** peak {memory} MB", new, count=1)
    if not (n_runtime and n_memory):
        raise SystemExit(f"{path.name}: no '**Runtime:** about ...; **memory:** peak ...' statement to update")
    lines = new.split("\n")
    nb["cells"][0]["source"] = [line + "\n" for line in lines[:-1]] + [lines[-1]]
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str]) -> None:
    write = "--write" in argv
    argv = [a for a in argv if a != "--write"]
    if write and argv:
        raise SystemExit("--write measures every notebook: give no notebook names")
    notebooks = [Path(a).resolve() for a in argv] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    rows = []
    for nb in notebooks:
        row = measure(nb)
        rows.append(row)
        print(f"{row['notebook']:40s} {row['seconds']:7.1f} s  peak PSS {row['peak_pss_mb']:5d} MB  "
              f"(RSS sum {row['peak_rss_mb']} MB)", flush=True)
    targets = [OUT / "notebook_memory.csv"] + ([ROOT / "bench" / "notebook_memory.csv"] if write else [])
    for target in targets:
        with open(target, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if write:
        for nb, row in zip(notebooks, rows):
            write_statements(nb, row["seconds"], row["peak_pss_mb"])


if __name__ == "__main__":
    main(sys.argv[1:])
