#!/usr/bin/env python3
"""PyTorch reference for `cnn bench`: the same model, optimizer and measurement.

    tools/bench_torch.py --model models/lenet5.json --device cpu --batch-size 128 --threads 2
    tools/bench_torch.py --model models/cifar_cnn.json --device cuda --batch-size 128 --json

The model is built from the same JSON description as CNNFromScratch reads (Conv2D, Dense,
Flatten, MaxPooling2D, AveragePooling2D, Activation), with:
  * TensorFlow's padding: 'valid' pads nothing; 'same' pads so out = ceil(in / stride), the
    odd pixel at the bottom/right (F.pad when the split is asymmetric). Pooling windows clip
    to the image: max ignores the padding, average divides by the in-bounds count.
  * Keras's initialisers (glorot_uniform, he_uniform, zeros, ones), biases zero.
  * the same optimizer: SGD in PyTorch's form (momentum, nesterov; our decoupled weight decay
    is applied as p -= lr wd p before the step), Adam/AdamW with the JSON's epsilon (1e-7 by
    default, Keras's).
  * a softmax (sigmoid) last layer with a CE (BCE) loss fused into CrossEntropyLoss
    (BCEWithLogitsLoss) on logits, as our model does.

Measurement (as `cnn bench`): one fixed synthetic batch (inputs uniform in [0, 1), random
labels, seeded) resident on the device; `warmup` steps; then `repeats` timed runs of `steps`
steps (torch.cuda.synchronize before the clock is read on a GPU); median, min and max.

Variants: `eager` everywhere; on CUDA also `graph` (the whole training step captured in one
CUDA graph and replayed) and `compile` (torch.compile, PyTorch >= 2.0) where they work. A
variant that fails is reported with its error instead of numbers.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

# float32 throughout, as CNNFromScratch computes: TF32 is switched off below, and inductor's
# reminder that it exists is noise here.
warnings.filterwarnings("ignore", message=".*TensorFloat32 tensor cores.*")

# ---------------------------------------------------------------------------------------------
# Model description -> nn.Module


def pair(v, default):
    if v is None:
        return (default, default) if not isinstance(default, tuple) else default
    if isinstance(v, int):
        return (v, v)
    assert isinstance(v, list) and len(v) == 2, v
    return (int(v[0]), int(v[1]))


def tf_same_pad(size, kernel, stride):
    """TensorFlow 'same': output ceil(size / stride); (before, after), the extra one after."""
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Activation(nn.Module):
    def __init__(self, name, alpha=0.3):
        super().__init__()
        self.name, self.alpha = name, alpha

    def forward(self, x):
        n = self.name
        if n in ("linear", "", "none"):
            return x
        if n == "relu":
            return F.relu(x)
        if n == "leaky_relu":
            return F.leaky_relu(x, self.alpha)
        if n == "sigmoid":
            return torch.sigmoid(x)
        if n == "tanh":
            return torch.tanh(x)
        if n == "gelu":
            return F.gelu(x)
        if n == "softmax":
            return F.softmax(x, dim=1)
        raise ValueError(f"unknown activation {n!r}")


class Conv2D(nn.Module):
    def __init__(self, c_in, h, w, cfg):
        super().__init__()
        self.k = pair(cfg.get("kernel_size", 3), 3)
        self.s = pair(cfg.get("strides", 1), 1)
        self.conv = nn.Conv2d(c_in, int(cfg["filters"]), self.k, self.s, padding=0,
                              bias=cfg.get("use_bias", True))
        self.pad = None  # (left, right, top, bottom) for F.pad when asymmetric
        if cfg.get("padding", "valid") == "same":
            ph = tf_same_pad(h, self.k[0], self.s[0])
            pw = tf_same_pad(w, self.k[1], self.s[1])
            if ph[0] == ph[1] and pw[0] == pw[1]:
                self.conv.padding = (ph[0], pw[0])
            else:
                self.pad = (pw[0], pw[1], ph[0], ph[1])
        self.act = Activation(cfg.get("activation", "linear"), cfg.get("alpha", 0.3))
        self.init = cfg.get("kernel_initializer", "glorot_uniform")

    def forward(self, x):
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return self.act(self.conv(x))


class Dense(nn.Module):
    def __init__(self, n_in, cfg):
        super().__init__()
        self.fc = nn.Linear(n_in, int(cfg["units"]), bias=cfg.get("use_bias", True))
        self.act = Activation(cfg.get("activation", "linear"), cfg.get("alpha", 0.3))
        self.init = cfg.get("kernel_initializer", "glorot_uniform")

    def forward(self, x):
        return self.act(self.fc(x))


class Pool2D(nn.Module):
    def __init__(self, kind, h, w, cfg):
        super().__init__()
        self.kind = kind
        self.k = pair(cfg.get("pool_size", 2), 2)
        strides = cfg.get("strides")
        self.s = pair(strides, self.k) if strides is not None else self.k
        self.pad = None
        if cfg.get("padding", "valid") == "same":
            ph = tf_same_pad(h, self.k[0], self.s[0])
            pw = tf_same_pad(w, self.k[1], self.s[1])
            if any(ph) or any(pw):
                self.pad = (pw[0], pw[1], ph[0], ph[1])

    def forward(self, x):
        if self.kind == "max":
            if self.pad is not None:
                x = F.pad(x, self.pad, value=-math.inf)
            return F.max_pool2d(x, self.k, self.s)
        if self.pad is None:
            return F.avg_pool2d(x, self.k, self.s)
        # Average over in-bounds elements only: window sums over the window counts.
        ones = torch.ones_like(x[:1, :1])
        sums = F.avg_pool2d(F.pad(x, self.pad), self.k, self.s, divisor_override=1)
        counts = F.avg_pool2d(F.pad(ones, self.pad), self.k, self.s, divisor_override=1)
        return sums / counts


def out_hw(size, k, s, padding):
    if padding == "same":
        return (size + s - 1) // s
    return (size - k) // s + 1


def build_model(desc):
    shape = list(desc["input_shape"])
    layers = []
    for cfg in desc["layers"]:
        t = cfg["type"]
        if t == "Conv2D":
            c, h, w = shape
            m = Conv2D(c, h, w, cfg)
            pad = cfg.get("padding", "valid")
            shape = [int(cfg["filters"]), out_hw(h, m.k[0], m.s[0], pad), out_hw(w, m.k[1], m.s[1], pad)]
        elif t in ("MaxPooling2D", "AveragePooling2D"):
            c, h, w = shape
            m = Pool2D("max" if t == "MaxPooling2D" else "avg", h, w, cfg)
            pad = cfg.get("padding", "valid")
            shape = [c, out_hw(h, m.k[0], m.s[0], pad), out_hw(w, m.k[1], m.s[1], pad)]
        elif t == "Flatten":
            m = nn.Flatten()
            shape = [math.prod(shape)]
        elif t == "Dense":
            m = Dense(math.prod(shape), cfg)
            shape = [int(cfg["units"])]
        elif t == "Activation":
            m = Activation(cfg.get("activation", "linear"), cfg.get("alpha", 0.3))
        else:
            raise ValueError(f"unknown layer type {t!r}")
        layers.append(m)
    return nn.Sequential(*layers), shape


def keras_init(model, gen):
    """glorot_uniform / he_uniform with Keras's fans (receptive field included), zero biases."""
    for m in model.modules():
        layer = m.conv if isinstance(m, Conv2D) else m.fc if isinstance(m, Dense) else None
        if layer is None:
            continue
        w = layer.weight
        rf = w[0][0].numel() if w.dim() > 2 else 1
        fan_in, fan_out = w.shape[1] * rf, w.shape[0] * rf
        with torch.no_grad():
            # patch_whitening: glorot_uniform, as compile() does (the data-dependent weights
            # do not change what a benchmark times).
            if m.init in ("glorot_uniform", "patch_whitening"):
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                w.copy_(torch.rand(w.shape, generator=gen) * 2 * limit - limit)
            elif m.init == "he_uniform":
                limit = math.sqrt(6.0 / fan_in)
                w.copy_(torch.rand(w.shape, generator=gen) * 2 * limit - limit)
            elif m.init == "zeros":
                w.zero_()
            elif m.init == "ones":
                w.fill_(1.0)
            else:
                raise ValueError(f"unknown initializer {m.init!r}")
            if layer.bias is not None:
                layer.bias.zero_()


def last_activation(model):
    last = model[-1]
    if isinstance(last, (Conv2D, Dense)):
        return last.act
    if isinstance(last, Activation):
        return last
    return None


def make_loss(desc, model):
    """The loss on the model's output; fuses a softmax/sigmoid last activation as we do."""
    comp = desc.get("compile", {})
    loss = comp.get("loss", "cce")
    smoothing = float(comp.get("label_smoothing", 0.0))
    act = last_activation(model)
    name = act.name if act is not None else "linear"
    if loss in ("cce", "categorical_crossentropy", "scce", "sparse_categorical_crossentropy"):
        if name == "softmax":
            act.name = "linear"  # logits out; CrossEntropyLoss applies log-softmax
            return nn.CrossEntropyLoss(label_smoothing=smoothing), "labels"
        if comp.get("from_logits", False):
            return nn.CrossEntropyLoss(label_smoothing=smoothing), "labels"
        eps = 1e-7  # CE on probabilities, clipped as Keras does
        return (lambda p, y: F.nll_loss(torch.log(p.clamp(eps, 1 - eps)), y)), "labels"
    if loss in ("bce", "binary_crossentropy"):
        if name == "sigmoid":
            act.name = "linear"
            return nn.BCEWithLogitsLoss(), "dense"
        if comp.get("from_logits", False):
            return nn.BCEWithLogitsLoss(), "dense"
        return nn.BCELoss(), "dense"
    if loss in ("mse", "mean_squared_error"):
        return nn.MSELoss(), "dense"
    raise ValueError(f"unknown loss {loss!r}")


def make_optimizer(desc, params, capturable=False):
    comp = desc.get("compile", {})
    opt = comp.get("optimizer", "sgd")
    lr = float(comp.get("learning_rate", 0.01))
    wd = float(comp.get("weight_decay", 0.0))
    decoupled = bool(comp.get("decoupled_weight_decay", False))
    if opt == "sgd":
        momentum = float(comp.get("momentum", 0.0))
        nesterov = bool(comp.get("nesterov", False))
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov,
                               weight_decay=0.0 if decoupled else wd), (lr * wd if decoupled else 0.0)
    if opt == "adam":
        kw = dict(lr=lr, betas=(float(comp.get("beta_1", comp.get("beta1", 0.9))),
                                float(comp.get("beta_2", comp.get("beta2", 0.999)))),
                  eps=float(comp.get("epsilon", 1e-7)), weight_decay=wd)
        if capturable:
            kw["capturable"] = True
        cls = torch.optim.AdamW if (decoupled and wd > 0) else torch.optim.Adam
        return cls(params, **kw), 0.0
    raise ValueError(f"unknown optimizer {opt!r}")


# ---------------------------------------------------------------------------------------------
# Measurement


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def conv_dense_flops(model, input_shape):
    """Multiply-adds x 2 of conv and dense layers, per image: (forward, training)."""
    fwd_total = train_total = 0.0
    below = False
    x = torch.zeros([1] + list(input_shape))
    with torch.no_grad():
        for m in model:
            y = m(x)
            f = 0.0
            if isinstance(m, Conv2D):
                f = 2.0 * y[0].numel() * m.conv.weight[0].numel()
            elif isinstance(m, Dense):
                f = 2.0 * m.fc.weight.numel()
            if f:
                fwd_total += f
                train_total += 2 * f + (f if below else 0.0)
                below = True
            x = y
    return fwd_total, train_total


def run_variant(desc, args, variant, device):
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model, out_shape = build_model(desc)
    keras_init(model, gen)
    loss_fn, target_kind = make_loss(desc, model)
    flops = conv_dense_flops(model, desc["input_shape"])
    model = model.to(device)
    opt, decoupled_shrink = make_optimizer(desc, model.parameters(), capturable=(variant == "graph"))
    params = [p for p in model.parameters()]

    n = args.batch_size
    classes = out_shape[0]
    x = torch.rand([n] + list(desc["input_shape"]), generator=gen).to(device)
    labels = torch.randint(0, classes, (n,), generator=gen)
    y = (labels if target_kind == "labels" else F.one_hot(labels, classes).float()).to(device)

    fwd = model
    if variant == "compile":
        if not hasattr(torch, "compile"):
            raise RuntimeError(f"torch.compile needs PyTorch >= 2.0 (this is {torch.__version__})")
        fwd = torch.compile(model)

    def step():
        opt.zero_grad(set_to_none=(variant != "graph"))
        loss = loss_fn(fwd(x), y)
        loss.backward()
        if decoupled_shrink:
            with torch.no_grad():
                for p in params:
                    p.mul_(1 - decoupled_shrink)
        opt.step()
        return loss

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    run = step
    if variant == "graph":
        # Warm up on a side stream (creates the optimizer state and the grads), then capture
        # one whole step; replaying the graph re-runs it on the same static x, y.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        run = graph.replay

    for _ in range(args.warmup):
        run()
    sync()
    ms, ips, cpu_ms = [], [], []
    for _ in range(args.repeats):
        c0 = time.process_time()  # CPU time of all the process's threads
        t0 = time.perf_counter()
        for _ in range(args.steps):
            run()
        sync()
        dt = time.perf_counter() - t0
        cpu_ms.append((time.process_time() - c0) * 1e3 / args.steps)
        ms.append(dt * 1e3 / args.steps)
        ips.append(n * args.steps / dt)
    return {
        "framework": "pytorch",
        "variant": variant,
        "torch_version": torch.__version__,
        "model": os.path.splitext(os.path.basename(args.model))[0],
        "model_file": args.model,
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "batch_size": n,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "seed": args.seed,
        "images_per_s": spread(ips),
        "ms_per_step": spread(ms),
        "ms_per_step_all": ms,
        "cpu_ms_per_step": spread(cpu_ms),
        "forward_flops_per_image": flops[0],
        "train_flops_per_image": flops[1],
        "gflops": flops[1] * statistics.median(ips) / 1e9,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: all cores)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--variants", default="",
                    help="comma-separated: eager, graph, compile (default: eager on cpu; all three on cuda)")
    ap.add_argument("--json", action="store_true", help="one JSON object per variant, one per line")
    args = ap.parse_args()

    with open(args.model) as f:
        desc = json.load(f)
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("bench_torch.py: --device cuda but torch.cuda.is_available() is False")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 as ours
        torch.backends.cudnn.allow_tf32 = False
    variants = [v for v in args.variants.split(",") if v] or (
        ["eager"] if device.type == "cpu" else ["eager", "graph", "compile"])

    for variant in variants:
        try:
            r = run_variant(desc, args, variant, device)
        except Exception as e:  # a variant that does not work here is reported, not fatal
            r = {"framework": "pytorch", "variant": variant, "model": os.path.splitext(os.path.basename(args.model))[0],
                 "device": args.device, "batch_size": args.batch_size, "error": f"{type(e).__name__}: {e}"}
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        if "error" in r:
            print(f"PyTorch {variant}: failed: {r['error']}", flush=True)
            continue
        ips, ms = r["images_per_s"], r["ms_per_step"]
        print(f"PyTorch {r['torch_version']} {variant}: model {r['model']} on {r['device_name']}, batch "
              f"{r['batch_size']}, {r['threads']} threads; {args.warmup} warm-up steps, {args.repeats} repeats of "
              f"{args.steps} steps")
        print(f"  images/s   {ips['median']:10.1f}  (min {ips['min']:.1f}, max {ips['max']:.1f})")
        print(f"  ms/step    {ms['median']:10.3f}  (min {ms['min']:.3f}, max {ms['max']:.3f})")
        cpu = r["cpu_ms_per_step"]
        print(f"  CPU ms/step{cpu['median']:10.3f}  (all threads; min {cpu['min']:.3f}, max {cpu['max']:.3f})")
        print(f"  FLOPs      {r['train_flops_per_image'] / 1e6:10.3f} MFLOP per training image; "
              f"{r['gflops']:.1f} GFLOP/s at the median", flush=True)


if __name__ == "__main__":
    main()
