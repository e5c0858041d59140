#!/usr/bin/env python3
"""TensorBoard's own event reader on what `cnn train --tensorboard` writes (CTest label interop).

A short run on a tiny synthetic MNIST-format data set writes an event file and the --log CSV;
TensorBoard's EventAccumulator must read back every scalar with the tags, steps and values the
CSV holds (and the cosine schedule's per-step learning rates), the summary as text, the images;
a resumed run appends a second file that the reader joins to the first, which stays byte for
byte the same; and a copy cut short inside its last record reads as every record before it.
Exits non-zero with a message on the first mismatch.

Usage: check_tensorboard.py --cnn PATH --model models/lenet5_gray.json --work DIR
"""
import argparse
import csv
import json
import math
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
from tensorboard.backend.event_processing import event_accumulator, event_file_loader

EPOCHS, RESUMED_EPOCHS, BATCH, EVERY = 3, 5, 16, 2
TRAIN, TEST, VAL_SPLIT = 96, 30, 0.25
STEPS = math.ceil(TRAIN * (1 - VAL_SPLIT) / BATCH)  # optimizer steps per epoch: 72 rows / 16

EPOCH_TAGS = {  # tag -> the --log CSV column
    "epoch/loss": "loss",
    "epoch/accuracy": "accuracy",
    "epoch/val_loss": "val_loss",
    "epoch/val_accuracy": "val_accuracy",
    "epoch/learning_rate": "lr",
    "epoch/seconds": "seconds",
}
STEP_TAGS = ["step/loss", "step/accuracy", "step/learning_rate"]
# The CSV has six decimals (std::to_string), TensorBoard float32 simple_values: the two agree
# to 5e-7 (CSV rounding) + 2.4e-7 (float32 of values below 4) absolute.
CSV_TOLERANCE = 1e-6


def check(condition, message):
    if not condition:
        sys.exit("check_tensorboard: FAIL: " + message)


def write_idx_data(folder):
    """MNIST IDX files of 32x32 grey noise, labels 0..9 (a data set the CLI reads as is)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", TRAIN), ("t10k", TEST)):
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        pixels = rng.integers(0, 256, (n, 32, 32), dtype=np.uint8)
        with open(os.path.join(folder, prefix + "-images-idx3-ubyte"), "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, 32, 32) + pixels.tobytes())
        with open(os.path.join(folder, prefix + "-labels-idx1-ubyte"), "wb") as f:
            f.write(struct.pack(">II", 0x801, n) + labels.tobytes())


def run(args):
    result = subprocess.run(args, capture_output=True, text=True)
    check(result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def accumulate(path):
    acc = event_accumulator.EventAccumulator(
        path, size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0, event_accumulator.IMAGES: 0})
    acc.Reload()
    return acc


def cosine_lr(base, global_step, epochs):
    """fit's cosine schedule (min_factor 0) for the 1-based global step, as float32."""
    t = (global_step - 1) / (epochs * STEPS)
    return float(np.float32(np.float32(base) * np.float32(0.5 * (1 + math.cos(math.pi * t)))))


def check_epoch_scalars(acc, rows, first_epoch):
    for tag, column in EPOCH_TAGS.items():
        events = acc.Scalars(tag)
        check([e.step for e in events] == list(range(first_epoch, first_epoch + len(rows))),
              f"{tag}: steps {[e.step for e in events]}")
        for e, row in zip(events, rows):
            check(int(row["epoch"]) == e.step, f"{tag}: CSV epoch {row['epoch']} at step {e.step}")
            want = float(row[column])
            check(abs(e.value - want) <= CSV_TOLERANCE, f"{tag} epoch {e.step}: event {e.value}, CSV {want}")


def check_step_scalars(acc, base_lr, epochs, first_step, last_step):
    want_steps = [s for s in range(first_step, last_step + 1) if s % EVERY == 0]
    for tag in STEP_TAGS:
        steps = [e.step for e in acc.Scalars(tag)]
        check(steps == want_steps, f"{tag}: steps {steps}, expected {want_steps}")
    for e in acc.Scalars("step/learning_rate"):
        want = cosine_lr(base_lr, e.step, epochs)
        # float32 of the same product, computed in another order: 2 ulp of 1e-3.
        check(abs(e.value - want) <= 3e-10, f"step/learning_rate at {e.step}: {e.value}, schedule {want}")
    # An epoch's last step: the running means are the epoch's.
    epoch_loss = {e.step: e.value for e in acc.Scalars("epoch/loss")}
    for e in acc.Scalars("step/loss"):
        if e.step % STEPS == 0:
            check(e.value == epoch_loss[e.step // STEPS], f"step/loss at {e.step} != epoch/loss {e.step // STEPS}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cnn", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--work", required=True)
    a = p.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    data, logdir = os.path.join(a.work, "data"), os.path.join(a.work, "tb")
    write_idx_data(data)
    with open(a.model) as f:
        base_lr = json.load(f)["compile"]["learning_rate"]
    ckpt, log = os.path.join(a.work, "run.ckpt"), os.path.join(a.work, "metrics.csv")
    common = ["--data", data, "--batch-size", str(BATCH), "--validation-split", str(VAL_SPLIT), "--lr-schedule",
              "cosine", "--verbose", "0", "--save", os.path.join(a.work, "m.safetensors"), "--log", log,
              "--checkpoint", ckpt, "--tensorboard", logdir, "--tensorboard-every", str(EVERY)]

    # 1. A short run with images.
    run([a.cnn, "train", "--model", a.model, "--epochs", str(EPOCHS), "--tensorboard-images"] + common)
    files = sorted(os.listdir(logdir))
    check(len(files) == 1 and files[0].startswith("events.out.tfevents."), f"event files: {files}")
    first_file = os.path.join(logdir, files[0])
    acc = accumulate(first_file)
    tags = acc.Tags()
    check(sorted(tags["scalars"]) == sorted(list(EPOCH_TAGS) + STEP_TAGS), f"scalar tags {tags['scalars']}")
    rows = read_csv(log)
    check(len(rows) == EPOCHS, f"CSV rows {len(rows)}")
    check_epoch_scalars(acc, rows, 1)
    check_step_scalars(acc, base_lr, EPOCHS, 1, EPOCHS * STEPS)

    check(tags["tensors"] == ["model/summary"], f"tensor tags {tags['tensors']}")
    check(acc.SummaryMetadata("model/summary").plugin_data.plugin_name == "text", "model/summary is not text")
    text = acc.Tensors("model/summary")[0].tensor_proto.string_val[0].decode()
    summary = run([a.cnn, "summary", "--model", a.model])
    check("\n".join(line[4:] for line in text.splitlines()).strip() == summary.strip(),
          f"model/summary:\n{text}\nis not `cnn summary`:\n{summary}")

    check(sorted(tags["images"]) == ["images/confusion_matrix", "images/filters"], f"image tags {tags['images']}")
    filters = acc.Images("images/filters")
    check([e.step for e in filters] == list(range(1, EPOCHS + 1)), "images/filters steps")
    confusion = acc.Images("images/confusion_matrix")
    check([e.step for e in confusion] == [EPOCHS], "images/confusion_matrix step")
    for e in filters + confusion:
        png = e.encoded_image_string
        check(png[:8] == b"\x89PNG\r\n\x1a\n", "image is not a PNG")
        check(struct.unpack(">II", png[16:24]) == (e.width, e.height), "PNG size differs from the event's")

    # 2. Resumed to RESUMED_EPOCHS: a second file; the first unchanged; the directory reads as one run.
    with open(first_file, "rb") as f:
        first_bytes = f.read()
    run([a.cnn, "train", "--resume", ckpt, "--epochs", str(RESUMED_EPOCHS)] + common)
    files = sorted(os.listdir(logdir))
    check(len(files) == 2, f"after resuming: event files {files}")
    with open(first_file, "rb") as f:
        check(f.read() == first_bytes, "resuming changed the first event file")
    run_acc = accumulate(logdir)
    rows = read_csv(log)
    check(len(rows) == RESUMED_EPOCHS, f"CSV rows after resuming {len(rows)}")
    check_epoch_scalars(run_acc, rows, 1)
    second = accumulate(os.path.join(logdir, [f for f in files if os.path.join(logdir, f) != first_file][0]))
    check_step_scalars(second, base_lr, RESUMED_EPOCHS, EPOCHS * STEPS + 1, RESUMED_EPOCHS * STEPS)

    # 3. A copy cut short inside its last record: TensorBoard's loader yields every complete
    # record and stops without an error (it waits for the rest, as for a file being written).
    whole = [bytes(r) for r in event_file_loader.RawEventFileLoader(first_file).Load()]
    check(len(whole) > 2, f"{len(whole)} records")
    cut_path = os.path.join(a.work, "events.out.tfevents.cut")
    last_length = len(whole[-1]) + 16
    for cut in (1, 4, last_length // 2, last_length - 12, last_length - 1):
        with open(cut_path, "wb") as f:
            f.write(first_bytes[:len(first_bytes) - cut])
        records = [bytes(r) for r in event_file_loader.RawEventFileLoader(cut_path).Load()]
        check(records == whole[:-1], f"cut {cut} bytes short: {len(records)} records, expected {len(whole) - 1}")
        events = list(event_file_loader.EventFileLoader(cut_path).Load())
        check(len(events) == len(whole) - 1, f"cut {cut}: EventFileLoader read {len(events)} events")
    print(f"check_tensorboard: OK ({len(whole)} records, {RESUMED_EPOCHS} epochs over 2 files, 5 cuts)")


if __name__ == "__main__":
    main()
