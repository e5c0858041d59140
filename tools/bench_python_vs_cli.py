"""Python's fit against the `cnn` CLI's, time per epoch (the [python] issue's "Python adds
little"): LeNet-5 RGB with its recipe (models/lenet5.json: Adam 1e-3, batch 32, cosine schedule,
random flips) on the 50,000 CIFAR-10 training images, run as `cnn train` and as the same fit
from Python, in turn (CLI, Python, CLI, ...), each writing its per-epoch seconds to a CSV log.
Prints every run's epoch times, the median epoch of each run, and the Python / CLI ratio pair
by pair; the first epoch of each run is left out (page faults, first-touch of the buffers).

    python tools/bench_python_vs_cli.py --cnn build/dev/cnn [--pairs 5] [--epochs 4] [--out DIR]

Run it with a Python that has cnnfromscratch installed, on a quiet machine (no other job)."""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile

PYTHON_FIT = r'''
import sys
from cnnfromscratch import AveragePooling2D, CSVLogger, Conv2D, Dense, Flatten, Sequential, datasets
log, epochs = sys.argv[1], int(sys.argv[2])
(x, y), _ = datasets.cifar10.load_data(download=False)
model = Sequential([
    Conv2D(filters=6, kernel_size=5, strides=1, padding='valid', activation='relu'),
    AveragePooling2D(pool_size=2, strides=2),
    Conv2D(filters=16, kernel_size=5, strides=1, padding='valid', activation='relu'),
    AveragePooling2D(pool_size=2, strides=2),
    Flatten(), Dense(120, activation='relu'), Dense(84, activation='relu'), Dense(10, activation='softmax')])
model.compile(optimizer='adam', loss='cce', learning_rate=0.001, input_shape=[3, 32, 32])
model.fit(x, y, epochs=epochs, batch_size=32, lr_schedule='cosine', augment={'flip': 'random'},
          callbacks=[CSVLogger(log)], verbose=0)
'''


def epoch_seconds(log: str) -> list[float]:
    with open(log, newline="") as f:
        return [float(row["seconds"]) for row in csv.DictReader(f)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cnn", default="build/dev/cnn")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--out", default=None, help="folder for the CSV logs and results.json (default: a temporary one)")
    a = p.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="bench_python_vs_cli_")
    os.makedirs(out, exist_ok=True)
    runs = {"cli": [], "python": []}
    for i in range(a.pairs):
        for side in ("cli", "python"):
            log = os.path.join(out, f"{side}_{i}.csv")
            if side == "cli":
                cmd = [a.cnn, "train", "--model", "models/lenet5.json", "--epochs", str(a.epochs),
                       "--validation-split", "0", "--log", log, "--verbose", "0"]
            else:
                cmd = [sys.executable, "-c", PYTHON_FIT, log, str(a.epochs)]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            seconds = epoch_seconds(log)
            runs[side].append(seconds)
            print(f"pair {i} {side:6s} epochs (s): " + " ".join(f"{s:.3f}" for s in seconds), flush=True)
    median_epoch = {side: [statistics.median(r[1:]) for r in rs] for side, rs in runs.items()}
    ratios = [py / cli for py, cli in zip(median_epoch["python"], median_epoch["cli"])]
    result = {
        "epochs_per_run": a.epochs, "pairs": a.pairs,
        "cli_median_epoch_s": median_epoch["cli"], "python_median_epoch_s": median_epoch["python"],
        "python_over_cli": ratios,
        "python_over_cli_median": statistics.median(ratios),
        "python_over_cli_min": min(ratios), "python_over_cli_max": max(ratios),
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"median epoch (s), CLI: {statistics.median(median_epoch['cli']):.3f}, "
          f"Python: {statistics.median(median_epoch['python']):.3f}; Python / CLI per pair: "
          + " ".join(f"{r:.4f}" for r in ratios) + f"; median {result['python_over_cli_median']:.4f}")
    print(f"logs and results.json in {out}")


if __name__ == "__main__":
    main()
