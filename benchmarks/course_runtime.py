"""Execute every chapter with nbclient and report its run time and the kernel's peak memory.

    OMP_NUM_THREADS=1 python benchmarks/course_runtime.py                 # all chapters
    OMP_NUM_THREADS=1 python benchmarks/course_runtime.py 00 01           # chapters whose name starts so
    python benchmarks/course_runtime.py --student                          # the student copies instead

Peak memory is the kernel process's maximum resident set size (resource.getrusage inside the
kernel, read by one extra cell appended to an in-memory copy), so it counts the chapter's own
work, not this driver. Wall time includes kernel start-up. The kernel's CPU time (user + system) is printed
beside it: on a busy machine the wall time grows with the load while the CPU time of these one-thread
runs stays close to what an idle machine takes (kernel start-up excluded). Nothing is written to the chapters.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARK = "__PEAK_RSS_KB__"
PROBE = ("import resource, sys\n"
         "_ru = resource.getrusage(resource.RUSAGE_SELF)\n"
         "_kb = _ru.ru_maxrss\n"
         "print('" + MARK + "', _kb // 1024 if sys.platform == 'darwin' else _kb, _ru.ru_utime + _ru.ru_stime)")


def run_chapter(path: pathlib.Path, *, student: bool = False, timeout: int = 900) -> dict:
    """Execute one chapter; return its name, wall seconds, peak kernel RSS (MiB) and status."""
    nb = nbformat.read(path, as_version=4)
    if student:
        sys.path.insert(0, str(ROOT))
        from dpm_lab.course import student_notebook
        nb = student_notebook(nb)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    status, peak, cpu = "ok", float("nan"), float("nan")
    try:
        client.execute()
    except Exception as exc:  # report and go on to the next chapter
        status = f"FAILED: {type(exc).__name__}"
    wall = time.perf_counter() - start
    for out in nb.cells[-1].get("outputs", []):
        text = out.get("text", "")
        if MARK in text:
            kb, cpu = text.split(MARK)[1].split()[:2]
            peak, cpu = int(kb) / 1024, float(cpu)
    return {"chapter": path.stem, "seconds": wall, "cpu": cpu, "peak_mib": peak, "status": status}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("prefixes", nargs="*", help="run only chapters whose file name starts with one of these")
    p.add_argument("--chapters", default=str(ROOT / "chapters"), help="folder of the chapters")
    p.add_argument("--student", action="store_true", help="time the student copies (solutions stubbed)")
    p.add_argument("--timeout", type=int, default=900, help="per-cell timeout in seconds")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")          # the kernel inherits it
    env_path = os.environ.get("PYTHONPATH", "")
    if str(ROOT) not in env_path.split(os.pathsep):        # run from a checkout without installing
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env_path]))
    paths = sorted(pathlib.Path(args.chapters).glob("[0-9][0-9]_*.ipynb"))
    if args.prefixes:
        paths = [q for q in paths if any(q.name.startswith(x) for x in args.prefixes)]
    if not paths:
        print("no chapters found")
        return 1
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
          f"{', student copies' if args.student else ''}")
    print(f"{'chapter':32s} {'time (s)':>9s} {'kernel CPU (s)':>15s} {'peak RSS (MiB)':>15s}  status")
    rows, failed = [], 0
    for path in paths:
        row = run_chapter(path, student=args.student, timeout=args.timeout)
        rows.append(row)
        failed += row["status"] != "ok"
        print(f"{row['chapter']:32s} {row['seconds']:9.1f} {row['cpu']:15.1f} {row['peak_mib']:15.0f}  {row['status']}",
              flush=True)
    print(f"{'total':32s} {sum(r['seconds'] for r in rows):9.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
