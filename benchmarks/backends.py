"""Scheduling overhead of the Ray backend against the local process pool, on one tiny grid.

    .venv/bin/python benchmarks/backends.py --out /tmp/backends --rounds 3

One experiment (a phantom cohort at 32 px; target_only and duiit with one source, 8 steps
each, fp32, over `--splits` splits, with their quality references) runs from a fresh folder
with `--workers 2` on this machine's processes and with `--backend ray` on a one-node Ray
cluster of 2 CPUs started here (1 CPU per run): the same two runs at a time. The contenders
alternate within each round, and their order alternates between rounds. Printed: each
wall time (the whole command in this process: workers' start-up, the runs, quality
scoring, runs.csv), the medians, the ratio Ray / local and the overhead per cell,
(Ray - local) / cells. Starting the cluster, once per allocation on a real one, is timed
apart and not counted.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from duiit.data.phantom import PhantomSpec, synthesise
from duiit.evaluation.ray_backend import RayOptions
from duiit.evaluation.runner import run_experiment

RUN = {
    "data": {"image_size": 32},
    "model": {"ngf": 8, "ndf": 8, "n_blocks": 1},
    "predictor": {"network": "resnet10", "width": 0.25},
    "train": {"steps": 8, "batch_size": 4, "eval_every": 4, "ckpt_every": 4, "precision": "fp32"},
}


def start_ray(cpus: int, temp: Path) -> tuple[subprocess.Popen, str]:
    """A one-node Ray cluster on 127.0.0.1 (`ray start --head --block`, its sockets and logs
    in `temp`), and its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = str(Path(sys.executable).parent / "ray")
    head = subprocess.Popen(
        [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}"]
        + [f"--num-cpus={cpus}", "--num-gpus=0", "--include-dashboard=false"]
        + ["--disable-usage-stats", f"--temp-dir={temp}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Ray starts its workers 15 nicer than itself by default; the local pool's run at
        # this process's priority, and so must Ray's, or a busy machine measures niceness.
        env={**os.environ, "RAY_worker_niceness": "0"},
    )
    return head, f"127.0.0.1:{port}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="scratch folder (replaced)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--splits", type=int, default=3)
    args = p.parse_args()
    print("command: " + shlex.join(["python", *sys.argv]))
    shutil.rmtree(args.out, ignore_errors=True)
    synthesise(
        args.out / "cohort",
        PhantomSpec(patients={"CT": 60, "MRI": 30}, size=32, slices=2),
        quiet=True,
    )
    spec = args.out / "exp.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "target": "cohort/ct.csv",
                "sources": ["cohort/mri.csv"],
                "methods": ["duiit", "target_only"],
                "splits": args.splits,
                "run": RUN,
                "quality": {"max_images": 16},
            }
        )
    )
    cells = 3 * args.splits  # duiit, target_only and the quality reference per split
    start = time.perf_counter()
    temp = Path(tempfile.mkdtemp(prefix="duiit-ray-", dir="/tmp"))  # short: socket paths
    head, address = start_ray(cpus=2, temp=temp)
    contenders = {
        "local": {"workers": 2},
        "ray": {"ray": RayOptions(address, cpus_per_run=1.0)},
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    try:
        import ray

        ray.init(address=address, logging_level="WARNING")  # waits for the head to answer
        ray.shutdown()
        print(f"Ray cluster started in {time.perf_counter() - start:.1f}s (not counted)")
        for r in range(args.rounds):
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for name in order:
                folder = args.out / f"{name}-{r}"
                t0 = time.perf_counter()
                run_experiment(spec, folder, quiet=True, **contenders[name])
                times[name].append(time.perf_counter() - t0)
                print(f"round {r + 1} {name:5s}: {times[name][-1]:6.1f}s for {cells} cells")
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
    local, on_ray = (statistics.median(times[n]) for n in ("local", "ray"))
    print(
        f"median: local {local:.1f}s, ray {on_ray:.1f}s; per cell {local / cells:.2f}s vs "
        f"{on_ray / cells:.2f}s; ratio ray/local {on_ray / local:.2f}; overhead per cell "
        f"{(on_ray - local) / cells:+.2f}s"
    )


if __name__ == "__main__":
    main()
