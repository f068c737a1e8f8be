"""Throughput and memory of the Sparsey core on real MNIST digits (issues 2, 3 and 7).

For each benchmark network it prints, and writes to a JSON file: train frames/s (exactly
sequential learning, one frame per step), eval frames/s at batch 1 and at the best batch size,
peak RSS above the process's baseline after imports and data, RSS drift over the epoch, and
MAC-steps/s (active MACs processed per second). `--metrics` adds frames/s with every metric
on (trainer=all_metrics) next to the default metrics, for the metrics-cost figure.

Each network runs in its own subprocess so that its peak RSS is its own. Figures are medians
of --repeats runs on the same images: 1000 PNGs of ../shared/data/mnist_1k_png, binarised at
0.5 (the demo network's input is resized to 8×8 first), the input the reference table used.

    python benchmarks/bench_sparsey.py                 # all networks, 3 repeats
    python benchmarks/bench_sparsey.py --networks small demo --repeats 1
    nox -s bench                                       # the same, from the noxfile
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mnist_1k_png"
NETWORKS = ["demo", "small", "wide", "medium", "big"]
#: sparseypy 0.0.5 on a CI-like machine (issue 7): train fps, eval fps b1, eval fps b16, RSS GB
REFERENCE = {
    "demo": (572, 2274, 30714, 0.31), "small": (52.9, 674, 3837, 0.35),
    "wide": (13.8, 280, 710, 0.49), "medium": (2.2, 82.8, 693, 1.09),
    "big": (3.2, 142, 779, 0.76),
}
REFERENCE_BASELINE_GB = 0.24
EVAL_BATCHES = (1, 16, 64, 256, 1000)


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def load_images(data: Path, network: str):
    """The benchmark input through the product's own transforms (resize, binarize)."""
    import torch

    from sparsey_hydra.data.image_folder import ImageFolderParams
    from sparsey_hydra.data.image_folder import load as load_image_folder
    from sparsey_hydra.data.preprocess import build_pipeline, preprocess_all
    from sparsey_hydra.plugins import get_registry

    images = load_image_folder(ImageFolderParams(path=str(data)))
    transforms = [{"name": "binarize", "threshold": 0.5}]
    if network in ("demo", "mnist_small_8x8"):
        transforms.insert(0, {"name": "resize", "height": 8, "width": 8})
    pipeline = build_pipeline(get_registry(), transforms)
    return preprocess_all(images.images, pipeline, images.names).to(torch.float32)


def network_config(name: str) -> dict:
    import yaml

    file = REPO / "conf" / "network" / (f"bench_{name}.yaml" if name in NETWORKS
                                        else f"{name}.yaml")
    return yaml.safe_load(file.read_text())


def build(name: str, shape, seed: int = 0):
    from sparsey_hydra.network import build_model
    from sparsey_hydra.plugins import get_registry

    return build_model(network_config(name), tuple(shape), seed, "cpu", get_registry())


def run_one(name: str, data: Path, repeats: int, threads: int, metrics: bool) -> dict:
    """Measure one network in this process (called in a subprocess)."""
    import torch

    torch.set_num_threads(threads)
    images = load_images(data, name)
    build(name, images.shape[1:])  # warm imports and allocator before the baseline
    baseline = rss_bytes()
    train, evals, drift, mac_steps = [], {b: [] for b in EVAL_BATCHES}, [], []
    for rep in range(repeats):
        model = build(name, images.shape[1:], seed=rep)
        start = time.perf_counter()
        rss_start, active = None, 0
        for lo in range(0, images.shape[0], 256):
            outs = model.learn_frames(images[lo:lo + 256])
            active += sum(int(o.active.sum()) for o in outs)
            if rss_start is None:
                rss_start = rss_bytes()
        seconds = time.perf_counter() - start
        if rep == 0:
            train_peak = peak_rss_bytes()  # before any recognition
        train.append(images.shape[0] / seconds)
        mac_steps.append(active / seconds)
        drift.append(rss_bytes() - rss_start)
        for b in EVAL_BATCHES:
            n = min(images.shape[0], max(64, 16 * b)) if b > 1 else min(200, images.shape[0])
            n -= n % b
            start = time.perf_counter()
            for lo in range(0, n, b):
                model.recognize(images[lo:lo + b])
            evals[b].append(n / (time.perf_counter() - start))
            if rep == 0 and b == 16:
                b16_peak = peak_rss_bytes()  # the reference's own eval batches: 1 and 16
    result = {
        "network": name,
        "frames": int(images.shape[0]),
        "input": list(images.shape[1:]),
        "threads": threads,
        "train_fps": statistics.median(train),
        "train_fps_runs": train,
        "mac_steps_per_s": statistics.median(mac_steps),
        "eval_fps": {str(b): statistics.median(v) for b, v in evals.items()},
        "peak_rss_gb": peak_rss_bytes() / 1e9,
        "baseline_rss_gb": baseline / 1e9,
        "peak_above_baseline_gb": (peak_rss_bytes() - baseline) / 1e9,
        "train_peak_above_baseline_gb": (train_peak - baseline) / 1e9,
        "eval_b16_peak_above_baseline_gb": (b16_peak - baseline) / 1e9,
        "rss_drift_over_epoch_mb": max(drift) / 1e6,
    }
    best = max(result["eval_fps"], key=result["eval_fps"].get)
    result["eval_best_batch"] = int(best)
    result["eval_fps_best"] = result["eval_fps"][best]
    if metrics:
        result.update(metric_costs(name, images, threads))
    return result


def metric_costs(name: str, images, threads: int, rounds: int = 3) -> dict:
    """Train+eval frames/s through the Trainer with default metrics and with all metrics:
    the three set-ups run in turn, `rounds` times, and each gets its median (one run of each
    takes under a second, so a single run is at the mercy of the machine's noise)."""
    import torch
    from omegaconf import OmegaConf

    from sparsey_hydra.plugins import get_registry
    from sparsey_hydra.training.trainer import Trainer

    torch.set_num_threads(threads)
    fps: dict[str, list[float]] = {}
    for _, trainer_cfg in [(r, c) for r in range(rounds)
                           for c in ("off", "default", "all_metrics")]:
        cfg = {"metrics": []} if trainer_cfg == "off" else OmegaConf.to_container(
            OmegaConf.load(REPO / "conf" / "trainer" / f"{trainer_cfg}.yaml"), resolve=True)
        model = build(name, images.shape[1:])
        registry, metrics = get_registry(), []
        for m in cfg.get("metrics") or []:
            metric = registry.get("metric", m["name"]).factory(
                registry.build_params("metric", m["name"], dict(m), key="trainer.metrics"))
            metric.name = m["name"]
            metrics.append(metric)
        trainer = Trainer(model, metrics, progress=False)
        cut = int(images.shape[0] * 0.8)
        start = time.perf_counter()
        trainer.train(images[:cut])
        trainer.evaluate(images[cut:])
        fps.setdefault(f"trainer_{trainer_cfg}_fps", []).append(
            images.shape[0] / (time.perf_counter() - start))
    out = {key: statistics.median(values) for key, values in fps.items()}
    out["all_metrics_slowdown"] = out["trainer_off_fps"] / out["trainer_all_metrics_fps"]
    return out


def table(results: list[dict]) -> str:
    lines = ["| network | train fps (×ref) | eval fps b1 (×ref) | eval fps best [batch] "
             "(× ref b16) | peak RSS above baseline GB: training / eval ≤ b16 / any eval (ref) "
             "| MAC-steps/s |",
             "|---|---|---|---|---|---|"]
    for r in results:
        ref = REFERENCE.get(r["network"])
        if ref:
            tr, e1, e16, rss = ref
            ref_rss = rss - REFERENCE_BASELINE_GB
            lines.append(
                f"| {r['network']} | {r['train_fps']:.0f} ({r['train_fps'] / tr:.1f}×) "
                f"| {r['eval_fps']['1']:.0f} ({r['eval_fps']['1'] / e1:.1f}×) "
                f"| {r['eval_fps_best']:.0f} [{r['eval_best_batch']}] "
                f"({r['eval_fps_best'] / e16:.1f}×) "
                f"| {r['train_peak_above_baseline_gb']:.3f} / "
                f"{r['eval_b16_peak_above_baseline_gb']:.3f} / "
                f"{r['peak_above_baseline_gb']:.3f} ({ref_rss:.2f}) "
                f"| {r['mac_steps_per_s']:.3g} |")
        else:
            lines.append(f"| {r['network']} | {r['train_fps']:.0f} | {r['eval_fps']['1']:.0f} "
                         f"| {r['eval_fps_best']:.0f} [{r['eval_best_batch']}] "
                         f"| {r['train_peak_above_baseline_gb']:.3f} / "
                         f"{r['eval_b16_peak_above_baseline_gb']:.3f} / "
                         f"{r['peak_above_baseline_gb']:.3f} | {r['mac_steps_per_s']:.3g} |")
    for r in results:
        if "all_metrics_slowdown" in r:
            lines.append(f"\n{r['network']}: Trainer train+eval frames/s: metrics off "
                         f"{r['trainer_off_fps']:.0f}, default metrics "
                         f"{r['trainer_default_fps']:.0f}, all metrics "
                         f"{r['trainer_all_metrics_fps']:.0f} ({r['all_metrics_slowdown']:.2f}× "
                         f"slower than off)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", nargs="+", default=NETWORKS + ["mnist_small"])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get(
        "SPARSEY_BENCH_DATA", DEFAULT_DATA)))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", type=Path, default=HERE / "results.json")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--metrics", action="store_true",
                    help="also time the Trainer with default vs all metrics (mnist_small)")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"error: --data: {args.data} is not a folder of class subfolders of PNGs; "
              "point it at shared/data/mnist_1k_png", file=sys.stderr)
        return 2
    if args.one:
        print(json.dumps(run_one(args.one, args.data, args.repeats, args.threads,
                                 args.metrics)))
        return 0
    results = []
    for name in args.networks:
        cmd = [sys.executable, __file__, "--one", name, "--data", str(args.data),
               "--repeats", str(args.repeats), "--threads", str(args.threads)]
        if name == "mnist_small" or (args.metrics and name == "small"):
            cmd.append("--metrics")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"error: network {name} failed:\n{proc.stderr}", file=sys.stderr)
            return 1
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{name}: train {r['train_fps']:.1f} fps, eval b1 {r['eval_fps']['1']:.1f} fps, "
              f"best {r['eval_fps_best']:.1f} fps (batch {r['eval_best_batch']}), "
              f"peak RSS +{r['peak_above_baseline_gb']:.3f} GB, "
              f"drift {r['rss_drift_over_epoch_mb']:.1f} MB", flush=True)
    print()
    print(table(results))
    payload = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "python": platform.python_version(),
                           "torch": __import__("torch").__version__},
               "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results}
    args.output.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
