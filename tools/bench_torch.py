#!/usr/bin/env python3
"""PyTorch reference for `cnn bench` and `cnn train`: the same model, optimizer and recipe.

    tools/bench_torch.py --model models/lenet5.json --device cpu --batch-size 128 --threads 2
    tools/bench_torch.py --model models/cifar_cnn.json --device cuda --batch-size 128 --json
    tools/bench_torch.py --train --model models/airbench94.json --data ../shared/data/cifar-10-batches-bin \
        --device cuda --seed 1 --json                    # the whole `cnn train` recipe, on CIFAR-10

The model is built from the same JSON description as CNNFromScratch reads (Conv2D, Dense,
Flatten, MaxPooling2D, AveragePooling2D, Activation, BatchNormalization, Dropout,
GlobalAverage/MaxPooling2D), with:
  * TensorFlow's padding: 'valid' pads nothing; 'same' pads so out = ceil(in / stride), the
    odd pixel at the bottom/right (F.pad when the split is asymmetric). Pooling windows clip
    to the image: max ignores the padding, average divides by the in-bounds count.
  * Keras's initialisers (glorot_uniform, he_uniform, zeros, ones), biases zero; Dense's
    "scale" (y = act(scale (x W^T + b))); "trainable": false freezes a layer's parameters.
  * BatchNormalization as ours: PyTorch's momentum convention ("keras_momentum" = 1 - it),
    "scale"/"center" false freeze gamma (1) / beta (0), running variance unbiased.
  * the same optimizer: SGD in PyTorch's form (momentum, nesterov; our decoupled weight decay
    is applied as p -= lr wd p before the step), Adam/AdamW with the JSON's epsilon (1e-7 by
    default, Keras's).
  * a softmax (sigmoid) last layer with a CE (BCE) loss fused into CrossEntropyLoss
    (BCEWithLogitsLoss) on logits, as our model does.

Benchmark (the default; as `cnn bench`): one fixed synthetic batch (inputs uniform in [0, 1),
random labels, seeded) resident on the device; `warmup` steps; then `repeats` timed runs of
`steps` steps (torch.cuda.synchronize before the clock is read on a GPU); median, min and max.
Variants: `eager` everywhere; on CUDA also `graph` (the whole training step captured in one
CUDA graph and replayed) and `compile` (torch.compile, PyTorch >= 2.0) where they work. A
variant that fails is reported with its error instead of numbers.

Precision (--precision, both modes; `cnn bench/train --precision` for ours): fp32 (the default:
float32, TF32 off), tf32 (float32 storage, TF32 tensor-core products for convolutions and
matmuls: allow_tf32), bf16 (torch.autocast to bfloat16 around the forward pass and the loss,
float32 master weights and optimizer, channels-last tensors on CUDA, as airbench runs; autocast's
cache off so the graph variant can capture it).

Training (--train): what `cnn train --model M --data DIR` does, from the model file's "compile"
and "training" sections (flags override them as `cnn train`'s do), in float32 (TF32 off) unless
--precision says otherwise:
  * data: CIFAR-10's binary batches (data_batch_1..5.bin present, then test_batch.bin), the
    first --limit / --test-limit records, pixels x (1/255) in [0, 1], no standardisation;
    validation_split holds out the LAST fraction (Keras's, before shuffling).
  * a Conv2D with kernel_initializer "patch_whitening": `cnn train`'s init_patch_whitening
    from the first min(5000, N) training images: covariance of the layer input's kh x kw
    patches (population, float64), eigendecomposition (ours' Jacobi solver, ported, for its
    eigenvector signs), filters v_f / sqrt(lambda_f + eps) with eps = 5e-4 x the mean eigenvalue
    (the mean patch variance), then their negations; bias -W m: the same float32 values as ours.
    The other weights: glorot_uniform etc. (the same distributions, not the same numbers, unless
    --our-rng).
  * SGD (coupled L2 weight decay, nesterov) as src/kernels/cpu/optimizer.cpp; every parameter
    named bias (Conv2D/Dense biases, BatchNorm betas) at lr x bias_lr_scale (a layer's own
    "bias_lr_scale" first), its weight decay scaled with it (as ours: the decay term is inside
    lr x (g + wd p)) unless bias_lr_scales_weight_decay is false (then wd / scale). A layer's
    "trainable": "bias" trains its bias alone, "trainable_epochs" N stops it after N epochs.
  * CE from logits with label smoothing: targets t (1 - s) + s / K, batch mean (ours; the same
    as nn.CrossEntropyLoss(label_smoothing=s)).
  * the learning rate's multiplier LRSchedule::factor(t, epoch) before every step, at
    t = steps done / steps in all (ceil(epochs x steps per epoch); 9.9 epochs end the 10th early): constant, step, cosine, onecycle.
  * augmentation of each batch (on the device): "alternate" flips mirror image i of the data
    set when i + epoch is odd (ours: when loading); "random" flips each image with
    probability 1/2; "translate" t shifts each image by its own (dy, dx), each uniform in
    [-t, t], reading pixel (reflect(r + dy), reflect(q + dx)) (reflection without repeating
    the edge); "cutout" zeroes a random square inside the image. Per-epoch shuffling with a
    seeded generator (not our permutation, unless --our-rng). The last batch is the remainder.
  * weight averaging (training.weight_averaging): EMA or lookahead as ours, over the parameters
    and the BatchNorm statistics; the average replaces the weights at the end.
  * evaluation in inference mode (running statistics), batch 256; test-time augmentation as
    our evaluate: the outputs (logits) of the image, its mirror (tta.flip) and, with
    tta.translate = t, each of those shifted by (-t, -t) and (+t, +t), averaged with equal
    weights or, with tta.shifted_share s, the shifted views sharing s of the weight (airbench's
    0.5). Reported with and without it.
  * initialisers: as ours (Keras's glorot/he uniform; torch_uniform, PyTorch's default, and
    torch_uniform_dirac, airbench's Conv with torch.nn.init.dirac_ on the first c_in filters).
Per epoch: training loss and accuracy (on the augmented batches, before each update), learning
rate, seconds (synchronised); then test accuracy and wall times, as a table or (--json) one
JSON object on stdout (the per-epoch lines then go to stderr).
  --our-rng      our generators (cnn::Rng, the counter-based augmentation draws) for the initial
                 weights, the shuffles and the translations, as `cnn train --seed SEED`: the twin
                 then runs our run (on the CPU it matched ours to 6 digits for the first 3 steps
                 at airbench94's learning rate, then rounding differences grow, as between any two
                 implementations).
  --weights F    start from a model saved by `cnn train` instead of initialising (without
                 --epochs: only evaluate it, e.g. to check our test accuracy independently).
"""
import argparse
import contextlib
import json
import math
import os
import statistics
import struct
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
        self.scale = float(cfg.get("scale", 1.0))  # y = act(scale (x W^T + b))

    def forward(self, x):
        z = self.fc(x)
        return self.act(z * self.scale if self.scale != 1.0 else z)


class BatchNorm(nn.Module):
    """Our BatchNormalization over axis 1 (channels) of [N, C, ...]: batch statistics in
    training (running ones updated, PyTorch's momentum convention, unbiased variance), running
    statistics in inference and when the layer is frozen. "scale"/"center" false: gamma stays
    1 / beta stays 0, untrained."""

    def __init__(self, channels, cfg):
        super().__init__()
        if "keras_momentum" in cfg:
            self.momentum = 1.0 - float(cfg["keras_momentum"])
        else:
            self.momentum = float(cfg.get("momentum", 0.1))
        self.eps = float(cfg.get("epsilon", 1e-5))
        self.weight = nn.Parameter(torch.ones(channels), requires_grad=bool(cfg.get("scale", True)))
        self.bias = nn.Parameter(torch.zeros(channels), requires_grad=bool(cfg.get("center", True)))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.frozen = False

    def forward(self, x):
        batch_stats = self.training and not self.frozen
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, batch_stats,
                            self.momentum, self.eps)


class GlobalPool(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def forward(self, x):
        return x.mean(dim=(2, 3)) if self.kind == "avg" else x.amax(dim=(2, 3))


class Dropout(nn.Module):
    def __init__(self, rate):
        super().__init__()
        self.rate = rate

    def forward(self, x):
        return F.dropout(x, self.rate, self.training) if self.rate > 0 else x


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
    layers, layer_opts = [], []
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
        elif t == "BatchNormalization":
            m = BatchNorm(shape[0], cfg)
        elif t == "Dropout":
            m = Dropout(float(cfg.get("rate", 0.0)))
        elif t in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            m = GlobalPool("avg" if t == "GlobalAveragePooling2D" else "max")
            shape = [shape[0]]
        else:
            raise ValueError(f"unknown layer type {t!r}")
        trainable = cfg.get("trainable", True)
        if trainable is False:  # frozen: no updates (and BatchNorm keeps its running statistics)
            for prm in m.parameters():
                prm.requires_grad_(False)
            if isinstance(m, BatchNorm):
                m.frozen = True
        # Finer freezing, as ours: "bias" trains the bias alone; trainable_epochs N stops the
        # layer's parameters after epoch N - 1 (train() drops their requires_grad then); a
        # layer's bias_lr_scale replaces compile's for its bias (make_train_optimizer).
        for pname, prm in m.named_parameters():
            if trainable == "bias" and not pname.endswith("bias"):
                prm.requires_grad_(False)
        layer_opts.append({"trainable_epochs": int(cfg.get("trainable_epochs", -1)),
                           "bias_lr_scale": cfg.get("bias_lr_scale")})
        layers.append(m)
    seq = nn.Sequential(*layers)
    seq.cnn_layer_opts = layer_opts  # by layer index: parameter names start "<index>."
    return seq, shape


def set_dirac(w):
    """torch_uniform_dirac's identity filters: the first min(c_out, c_in) filters 1 at their own
    channel's centre tap, 0 elsewhere (torch.nn.init.dirac_ on them, as airbench's Conv)."""
    with torch.no_grad():
        k = min(w.shape[0], w.shape[1])
        if w.dim() > 2:
            torch.nn.init.dirac_(w[:k])
        else:
            w[:k].zero_()
            w[:k, :k] += torch.eye(k, dtype=w.dtype, device=w.device)


def uniform_limit(init, fan_in, fan_out):
    """The U(-limit, limit) of the uniform initialisers (ours: Keras's fans, PyTorch's default)."""
    if init in ("glorot_uniform", "patch_whitening"):
        return math.sqrt(6.0 / (fan_in + fan_out))
    if init == "he_uniform":
        return math.sqrt(6.0 / fan_in)
    if init in ("torch_uniform", "torch_uniform_dirac"):
        return 1.0 / math.sqrt(fan_in)
    return None


def keras_init(model, gen):
    """The model file's initialisers (glorot / he uniform with Keras's fans, receptive field
    included; torch_uniform[_dirac]; zeros; ones), zero biases."""
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
            limit = uniform_limit(m.init, fan_in, fan_out)
            if limit is not None:
                w.copy_(torch.rand(w.shape, generator=gen) * 2 * limit - limit)
                if m.init == "torch_uniform_dirac":
                    set_dirac(w)
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


def set_precision(precision, device):
    """--precision's global switches (TF32 for fp32 and tf32), and the forward pass's context."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"


def autocast_for(precision, device):
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)


def channels_last_for(precision, device, t_or_model):
    """bf16 on CUDA: channels-last images and conv weights (the layout cuDNN's tensor cores read)."""
    if precision == "bf16" and device.type == "cuda":
        if isinstance(t_or_model, torch.Tensor):
            return t_or_model.contiguous(memory_format=torch.channels_last) if t_or_model.dim() == 4 else t_or_model
        return t_or_model.to(memory_format=torch.channels_last)
    return t_or_model


def run_variant(desc, args, variant, device):
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model, out_shape = build_model(desc)
    keras_init(model, gen)
    loss_fn, target_kind = make_loss(desc, model)
    flops = conv_dense_flops(model, desc["input_shape"])
    model = channels_last_for(args.precision, device, model.to(device))
    opt, decoupled_shrink = make_optimizer(desc, model.parameters(), capturable=(variant == "graph"))
    params = [p for p in model.parameters()]

    n = args.batch_size
    classes = out_shape[0]
    x = channels_last_for(args.precision, device, torch.rand([n] + list(desc["input_shape"]), generator=gen).to(device))
    labels = torch.randint(0, classes, (n,), generator=gen)
    y = (labels if target_kind == "labels" else F.one_hot(labels, classes).float()).to(device)

    fwd = model
    if variant == "compile":
        if not hasattr(torch, "compile"):
            raise RuntimeError(f"torch.compile needs PyTorch >= 2.0 (this is {torch.__version__})")
        fwd = torch.compile(model)

    def step():
        opt.zero_grad(set_to_none=(variant != "graph"))
        with autocast_for(args.precision, device):
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
        "precision": args.precision,
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


# ---------------------------------------------------------------------------------------------
# Training (--train): the `cnn train` recipe

CIFAR_RECORD = 1 + 3 * 32 * 32


def read_cifar10(root, limit=0, test_limit=0):
    """(x_train, y_train, x_test, y_test) as src/host/data/cifar10.cpp reads them: the training
    batches present among data_batch_1..5.bin in order, then test_batch.bin; the first `limit`
    (`test_limit`) records (0: all); x float32 [N, 3, 32, 32] = byte x float32(1/255)."""
    def read(paths, count):
        parts, done = [], 0
        for path in paths:
            if count and done >= count:
                break
            with open(path, "rb") as f:
                raw = f.read()
            if len(raw) == 0 or len(raw) % CIFAR_RECORD:
                raise ValueError(f"{path}: {len(raw)} bytes is not a whole number of {CIFAR_RECORD}-byte records")
            n = len(raw) // CIFAR_RECORD
            take = n if not count else min(n, count - done)
            parts.append(torch.frombuffer(bytearray(raw[:take * CIFAR_RECORD]), dtype=torch.uint8).view(take, CIFAR_RECORD))
            done += take
        if not parts:
            return torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.long)
        rec = torch.cat(parts)
        labels = rec[:, 0].long()
        if int(labels.max()) > 9:
            raise ValueError("CIFAR-10: a label is above 9")
        x = rec[:, 1:].float().mul_(torch.tensor(1.0 / 255.0, dtype=torch.float32)).view(-1, 3, 32, 32)
        return x.contiguous(), labels

    train = [os.path.join(root, f"data_batch_{i}.bin") for i in range(1, 6)]
    train = [f for f in train if os.path.exists(f)]
    if not train:
        raise FileNotFoundError(f"no data_batch_1..5.bin in {root}")
    test = [f for f in [os.path.join(root, "test_batch.bin")] if os.path.exists(f)]
    return read(train, limit) + read(test, test_limit)


# Our random numbers (--our-rng): the twin then starts from our initial weights and draws our
# shuffles and augmentation shifts, so it follows our run step by step (up to rounding).
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
AUGMENT_STREAM = 0x6175676D656E7431  # "augment1" (src/kernels/random.hpp)


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class OurRng:
    """cnn::Rng (src/host/core/rng.cpp): xoshiro256** seeded by splitmix64."""

    def __init__(self, seed):
        self.s = []
        x = seed & M64
        for _ in range(4):
            x = (x + GOLDEN) & M64
            self.s.append(mix64(x))

    def next_u64(self):
        s = self.s
        rotl = lambda v, k: ((v << k) | (v >> (64 - k))) & M64
        result = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def uniform(self, lo, hi):
        return lo + (hi - lo) * ((self.next_u64() >> 11) * 2.0 ** -53)

    def below(self, n):
        if n <= 1:
            return 0
        limit = M64 - M64 % n
        while True:
            r = self.next_u64()
            if r < limit:
                return r % n


@torch.no_grad()
def our_init(model, seed):
    """Sequential::compile's initial values: layer i from Rng(seed * 1000003 + i), its
    parameters in order (weight, then bias), the uniform limits of uniform_limit, then
    torch_uniform_dirac's identity filters over the draws."""
    for i, m in enumerate(model):
        layer = m.conv if isinstance(m, Conv2D) else m.fc if isinstance(m, Dense) else None
        if layer is None:
            continue
        rng = OurRng((seed * 1000003 + i) & M64)
        w = layer.weight
        rf = w[0][0].numel() if w.dim() > 2 else 1
        fan_in, fan_out = w.shape[1] * rf, w.shape[0] * rf
        limit = uniform_limit(m.init, fan_in, fan_out)
        if limit is not None:
            vals = [rng.uniform(-limit, limit) for _ in range(w.numel())]
            w.copy_(torch.tensor(vals, dtype=torch.float64).float().view(w.shape))
            if m.init == "torch_uniform_dirac":
                set_dirac(w)
        elif m.init in ("zeros", "ones"):
            w.fill_(0.0 if m.init == "zeros" else 1.0)
        else:
            raise ValueError(f"unknown initializer {m.init!r}")
        if layer.bias is not None:
            layer.bias.zero_()


def our_order(n, seed, epoch):
    """fit's shuffle: Fisher-Yates with Rng(seed * golden + epoch)."""
    rng = OurRng((seed * GOLDEN + epoch) & M64)
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.below(i + 1)
        order[i], order[j] = order[j], order[i]
    return torch.tensor(order, dtype=torch.long)


def our_shifts(seed, epoch, step, n, t):
    """The per-image translation (dy, dx) of fit's augment_images for this step."""
    rng = OurRng((((seed * GOLDEN) & M64) ^ ((epoch << 32) | (step & 0xFFFFFFFF))) & M64)
    base = mix64((rng.next_u64() ^ AUGMENT_STREAM) & M64)  # random_bits(step_seed ^ stream, counter)
    rng_range = 2 * t + 1
    dy, dx = [], []
    for i in range(n):
        for slot, out in ((0, dy), (1, dx)):
            bits = mix64((base + (i * 8 + slot + 1) * GOLDEN) & M64)
            out.append((((bits >> 32) * rng_range) >> 32) - t)
    return torch.tensor(dy, dtype=torch.long), torch.tensor(dx, dtype=torch.long)


def fit_steps(epochs, steps):
    """fit's step count: ceil(epochs x steps), a product within 1e-9 of a whole number being it."""
    product = epochs * steps
    nearest = round(product)
    return int(nearest if abs(product - nearest) <= 1e-9 * max(1.0, nearest) else math.ceil(product))


def lr_factor(sched, t, epoch):
    """LRSchedule::factor (include/cnn/model.hpp) with the JSON's keys and our defaults."""
    kind = sched.get("kind", "constant")
    t = min(max(t, 0.0), 1.0)
    if kind == "step":
        return float(sched.get("gamma", 0.1)) ** (epoch // max(int(sched.get("step_epochs", 10)), 1))
    if kind == "cosine":
        lo = float(sched.get("min_factor", 0.0))
        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * t))
    if kind == "onecycle":
        warmup = float(sched.get("warmup", 0.2))
        start, end = float(sched.get("start_factor", 0.2)), float(sched.get("end_factor", 0.0))
        if t < warmup:
            return start + (1.0 - start) * t / warmup
        return 1.0 + (end - 1.0) * (t - warmup) / (1.0 - warmup)
    if kind != "constant":
        raise ValueError(f"unknown lr_schedule kind {kind!r}")
    return 1.0


def reflect(i, size):
    """src/kernels/augment_map.hpp's reflect: mirror without repeating the edge."""
    return torch.where(i < 0, -i, torch.where(i >= size, 2 * (size - 1) - i, i))


def translate(x, dy, dx):
    """Output pixel (r, q) of image k reads (reflect(r + dy[k]), reflect(q + dx[k])); dy, dx are
    [N] integer tensors on x's device (or ints, the same shift for all)."""
    n, c, h, w = x.shape
    dev = x.device
    if isinstance(dy, int):
        dy = torch.full((n,), dy, dtype=torch.long, device=dev)
        dx = torch.full((n,), dx, dtype=torch.long, device=dev)
    rows = reflect(torch.arange(h, device=dev)[None, :] + dy[:, None], h)  # [n, h]
    cols = reflect(torch.arange(w, device=dev)[None, :] + dx[:, None], w)  # [n, w]
    x = x.gather(2, rows[:, None, :, None].expand(n, c, h, w))
    return x.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def augment_batch(x, idx, epoch, aug, gen, shifts=None):
    """x: the batch [n, C, H, W] of data-set rows idx (on the device). shifts: (dy, dx) to use
    instead of drawing them (--our-rng)."""
    n, c, h, w = x.shape
    dev = x.device
    flip = aug.get("flip", "none")
    if flip == "alternate":  # ours (load_batch): mirrored when data-set index + epoch is odd
        x = torch.where(((idx + epoch) % 2 == 1).view(n, 1, 1, 1), x.flip(3), x)
    elif flip == "random":
        x = torch.where((torch.rand(n, generator=gen, device=dev) < 0.5).view(n, 1, 1, 1), x.flip(3), x)
    elif flip != "none":
        raise ValueError(f"unknown augment.flip {flip!r}")
    t = int(aug.get("translate", 0))
    if t > 0:
        if shifts is not None:
            dy, dx = shifts[0].to(dev), shifts[1].to(dev)
        else:
            dy = torch.randint(-t, t + 1, (n,), generator=gen, device=dev)
            dx = torch.randint(-t, t + 1, (n,), generator=gen, device=dev)
        x = translate(x, dy, dx)
    cut = int(aug.get("cutout", 0))
    if cut > 0:
        cy = torch.randint(0, h - cut + 1, (n,), generator=gen, device=dev)
        cx = torch.randint(0, w - cut + 1, (n,), generator=gen, device=dev)
        r = torch.arange(h, device=dev)[None, :]
        q = torch.arange(w, device=dev)[None, :]
        in_r = (r >= cy[:, None]) & (r < cy[:, None] + cut)
        in_q = (q >= cx[:, None]) & (q < cx[:, None] + cut)
        x = x.masked_fill((in_r[:, :, None] & in_q[:, None, :])[:, None], 0.0)
    return x


def tta_views(x, tta):
    """Our forward_tta's views: the image, its mirror (flip); then each of those shifted by
    (-t, -t) and (+t, +t)."""
    views = [x]
    if tta.get("flip", False):
        views.append(x.flip(3))
    t = int(tta.get("translate", 0))
    if t > 0:
        for v in list(views):
            for d in (-t, t):
                views.append(translate(v, d, d))
    return views


def tta_weights(tta, count):
    """Each view's weight in the average: equal, or (tta.shifted_share, airbench's 0.5) the
    unshifted views (the first one or two) sharing 1 - share and the shifted ones share."""
    share = float(tta.get("shifted_share", -1))
    if share < 0:
        return [1.0 / count] * count
    unshifted = 2 if tta.get("flip", False) else 1
    return [(1 - share) / unshifted] * unshifted + [share / (count - unshifted)] * (count - unshifted)


def jacobi_eigen(a_in):
    """cnn::symmetric_eigen (src/host/layers/initializers.cpp) in Python floats (IEEE double, the same
    operations in the same order): eigenvalues descending and eigenvectors as columns, with
    the same signs as ours (each whitening filter's sign decides which of the pair f, D + f
    the next layer's weights meet, so --our-rng needs them)."""
    n = len(a_in)
    a = [[0.0] * n for _ in range(n)]
    norm2 = 0.0
    for i in range(n):
        for j in range(i, n):
            v = float(a_in[i][j])
            a[i][j] = a[j][i] = v
            norm2 += (1.0 if i == j else 2.0) * v * v
    v = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]

    def off_diagonal2():
        s2 = 0.0
        for i in range(n):
            for j in range(i + 1, n):
                s2 += 2 * a[i][j] * a[i][j]
        return s2

    target = norm2 * 1e-30
    sweep = 0
    while sweep < 100 and off_diagonal2() > target:
        for p in range(n - 1):
            for q in range(p + 1, n):
                apq = a[p][q]
                if apq == 0.0:
                    continue
                app, aqq = a[p][p], a[q][q]
                theta = (aqq - app) / (2.0 * apq)
                t = (1.0 if theta >= 0 else -1.0) / (abs(theta) + math.sqrt(theta * theta + 1.0))
                c = 1.0 / math.sqrt(t * t + 1.0)
                s_ = t * c
                for k in range(n):
                    if k == p or k == q:
                        continue
                    akp, akq = a[k][p], a[k][q]
                    kp, kq = c * akp - s_ * akq, s_ * akp + c * akq
                    a[k][p] = a[p][k] = kp
                    a[k][q] = a[q][k] = kq
                a[p][p] = app - t * apq
                a[q][q] = aqq + t * apq
                a[p][q] = a[q][p] = 0.0
                for k in range(n):
                    vkp, vkq = v[k][p], v[k][q]
                    v[k][p] = c * vkp - s_ * vkq
                    v[k][q] = s_ * vkp + c * vkq
        sweep += 1
    order = sorted(range(n), key=lambda k: -a[k][k])  # stable, as std::stable_sort
    values = torch.tensor([a[k][k] for k in order], dtype=torch.float64)
    vectors = torch.tensor([[v[i][k] for k in order] for i in range(n)], dtype=torch.float64)
    return values, vectors


@torch.no_grad()
def patch_whitening(model, index, images, eps=5e-4, relative_eps=True):
    """cnn::init_patch_whitening (src/host/layers/initializers.cpp) for model[index] (a Conv2D with
    2 C kh kw filters). Returns the eigenvalues (descending)."""
    m = model[index]
    conv = m.conv
    f_out, c, kh, kw = conv.weight.shape
    d = c * kh * kw
    if f_out != 2 * d:
        raise ValueError(f"patch_whitening: layer {index} has {f_out} filters, whitening needs 2 x {d}")
    total = 0.0
    s1 = torch.zeros(d, dtype=torch.float64)
    s2 = torch.zeros(d, d, dtype=torch.float64)
    was_training = model.training
    model.eval()
    for at in range(0, images.shape[0], 256):
        x = images[at:at + 256]
        for layer in list(model)[:index]:  # the layer's input: the layers below, inference mode
            x = layer(x)
        p = F.unfold(x.double().cpu(), (kh, kw))  # [n, d, L]; d in (c, i, j) order, the weight's layout
        p = p.transpose(1, 2).reshape(-1, d)
        total += p.shape[0]
        s1 += p.sum(0)
        s2 += p.t() @ p
    model.train(was_training)
    mean = s1 / total
    cov = s2 / total - torch.outer(mean, mean)
    if d <= 48:  # ours' Jacobi solver, for its eigenvector signs (cheap at this size)
        lam, vec = jacobi_eigen(cov.tolist())
        lam = lam.clamp(min=0.0)
    else:  # the same filters up to each one's sign
        lam, vec = torch.linalg.eigh(cov)  # ascending
        lam, vec = lam.flip(0).clamp(min=0.0), vec.flip(1)
    if relative_eps:
        eps = eps * float(lam.mean())
    w = vec.t() / torch.sqrt(lam + eps)[:, None]  # row f: v_f / sqrt(lambda_f + eps)
    w = torch.cat([w, -w])
    bias = -(w @ mean)
    conv.weight.copy_(w.view(f_out, c, kh, kw).float())
    if conv.bias is not None:
        conv.bias.copy_(bias.float())
    return lam.tolist()


@torch.no_grad()
def load_our_weights(model, path):
    """Copies the parameters of a model saved by CNNFromScratch (safetensors, tensors named
    layers.<i>.<type>.<weight|bias|running_mean|running_var>, float32) into the twin."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    loaded = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        parts = key.split(".")
        if len(parts) != 4 or parts[0] != "layers" or info.get("dtype") != "F32":
            raise ValueError(f"{path}: unexpected tensor {key!r} ({info.get('dtype')})")
        m = model[int(parts[1])]
        target = m.conv if isinstance(m, Conv2D) else m.fc if isinstance(m, Dense) else m
        dst = getattr(target, parts[3])
        begin, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(raw[8 + n + begin:8 + n + end]), dtype=torch.float32).view(info["shape"])
        if tuple(t.shape) != tuple(dst.shape):
            raise ValueError(f"{path}: {key} has shape {list(t.shape)}, the twin's is {list(dst.shape)}")
        dst.copy_(t)
        loaded += 1
    return loaded


def make_train_optimizer(comp, model, lr):
    """Param groups as our trainable segments: weights at lr, biases at lr x bias_lr_scale (the
    layer's own, else compile's), their weight decay scaled with it unless compile's
    bias_lr_scales_weight_decay is false (then wd / scale: a decay step of lr wd p, as airbench).
    Each group's "decay" is its weight decay. Returns (optimizer, base lrs, decoupled wd)."""
    opt = comp.get("optimizer", "sgd")
    wd = float(comp.get("weight_decay", 0.0))
    decoupled = bool(comp.get("decoupled_weight_decay", False))
    scaled_decay = bool(comp.get("bias_lr_scales_weight_decay", True))
    by_key = {}
    for name, prm in model.named_parameters():
        if not prm.requires_grad:
            continue
        own = model.cnn_layer_opts[int(name.split(".")[0])]["bias_lr_scale"]
        scale = float(own if own is not None else comp.get("bias_lr_scale", 1.0)) if name.endswith("bias") else 1.0
        decay = wd / scale if name.endswith("bias") and not scaled_decay else wd
        by_key.setdefault((scale, decay), []).append(prm)
    groups = [{"params": ps, "lr": lr * scale, "decay": decay, "weight_decay": 0.0 if decoupled else decay}
              for (scale, decay), ps in by_key.items()]
    if opt == "sgd":
        o = torch.optim.SGD(groups, lr=lr, momentum=float(comp.get("momentum", 0.0)),
                            nesterov=bool(comp.get("nesterov", False)))
    elif opt == "adam":
        cls = torch.optim.AdamW if (decoupled and wd > 0) else torch.optim.Adam
        for g in groups:
            g["weight_decay"] = g["decay"]
        o = cls(groups, lr=lr, betas=(float(comp.get("beta_1", comp.get("beta1", 0.9))),
                                      float(comp.get("beta_2", comp.get("beta2", 0.999)))),
                eps=float(comp.get("epsilon", 1e-7)))
        decoupled = False  # AdamW applies it
    else:
        raise ValueError(f"unknown optimizer {opt!r}")
    return o, [g["lr"] for g in o.param_groups], (decoupled and opt == "sgd")


@torch.no_grad()
def evaluate(model, x, y, loss_fn, tta=None, batch_size=256, precision="fp32"):
    """(loss, accuracy) in inference mode; with tta, on the views' mean output."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for at in range(0, x.shape[0], batch_size):
        xb, yb = x[at:at + batch_size], y[at:at + batch_size]
        views = tta_views(xb, tta) if tta else [xb]
        weights = tta_weights(tta, len(views)) if tta else [1.0]
        with autocast_for(precision, x.device):
            out = sum(w * model(v).float() for w, v in zip(weights, views))
        loss_sum += loss_fn(out, yb).double() * yb.shape[0]
        correct += (out.argmax(1) == yb).sum()
    model.train(was_training)
    n = max(x.shape[0], 1)
    return float(loss_sum) / n, int(correct) / n


class WeightAverager:
    """training.weight_averaging as our callback (src/host/model/weight_averaging.cpp), over every
    float tensor of the state dict (parameters and BatchNorm statistics, as our flat buffer):
    EMA, shadow += (1 - decay) (w - shadow) every step; lookahead, every `every` steps shadow +=
    alpha_t (w - shadow) and then w = shadow, alpha_t = alpha (1 - alpha_decay p^alpha_decay_power)
    at the fraction p of the steps done. The shadow replaces the weights at the end."""

    def __init__(self, model, o, total_steps):
        self.method, self.decay = o.get("method", "ema"), float(o.get("decay", 0.999))
        self.every, self.alpha = int(o.get("every", 5)), float(o.get("alpha", 0.5))
        self.alpha_decay, self.power = float(o.get("alpha_decay", 0)), float(o.get("alpha_decay_power", 3))
        self.total = max(total_steps, 1)
        self.tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
        self.shadow = [t.detach().clone() for t in self.tensors]

    @torch.no_grad()
    def step(self, global_step):
        if self.method == "ema":
            for s, t in zip(self.shadow, self.tensors):
                s.lerp_(t, 1 - self.decay)
        elif global_step % self.every == 0:
            a = self.alpha * (1 - self.alpha_decay * (global_step / self.total) ** self.power)
            for s, t in zip(self.shadow, self.tensors):
                s.lerp_(t, a)
                t.copy_(s)

    @torch.no_grad()
    def finish(self):
        for s, t in zip(self.shadow, self.tensors):
            t.copy_(s)


def train_main(args, desc, device):
    comp = desc.get("compile", {})
    rec = desc.get("training", {})
    epochs = args.epochs or float(rec.get("epochs", 10))  # 9.9: the last epoch in part, as fit
    batch = args.batch_size or int(rec.get("batch_size", 32))
    vsplit = args.validation_split if args.validation_split is not None else float(rec.get("validation_split", 0.1))
    lr = args.lr or float(comp.get("learning_rate", 0.01))
    sched = rec.get("lr_schedule", {"kind": "constant"})
    aug = rec.get("augment", {})
    tta = rec.get("tta", {})
    shuffle = bool(rec.get("shuffle", True))
    seed = args.seed
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    log = sys.stderr if args.json else sys.stdout

    def say(*a):
        print(*a, file=log, flush=True)

    wall0 = time.perf_counter()
    t0 = time.perf_counter()
    x_all, y_all, x_test, y_test = read_cifar10(args.data, args.limit, args.test_limit)
    load_s = time.perf_counter() - t0
    n_all = x_all.shape[0]
    n_val = int(n_all * vsplit)
    if vsplit and not 0 < n_val < n_all:
        sys.exit(f"bench_torch.py: validation_split {vsplit} of {n_all} leaves an empty set")
    x_tr, y_tr = x_all[:n_all - n_val], y_all[:n_all - n_val]
    x_val, y_val = x_all[n_all - n_val:], y_all[n_all - n_val:]

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model, out_shape = build_model(desc)
    if args.our_rng:
        if aug.get("flip", "none") == "random" or int(aug.get("cutout", 0)) > 0:
            sys.exit("bench_torch.py --our-rng: random flips and cutout are not reproduced (translate and alternate are)")
        our_init(model, seed)
    else:
        keras_init(model, gen)
    loss_fn, target_kind = make_loss(desc, model)
    if target_kind != "labels":
        sys.exit("bench_torch.py --train: only a CE loss on class labels (the CIFAR-10 recipes) is supported")
    model = channels_last_for(args.precision, device, model.to(device))
    x_tr, y_tr = x_tr.to(device), y_tr.to(device)
    x_val, y_val = x_val.to(device), y_val.to(device)
    x_test, y_test = x_test.to(device), y_test.to(device)

    if args.weights:  # start from (or, without --epochs, only evaluate) a model trained by CNNFromScratch
        epochs = args.epochs
        say(f"Loaded {load_our_weights(model, args.weights)} tensors from {args.weights} (no initialisers)"
            + ("" if epochs else "; evaluating only"))
    # Data-dependent initialisers, as cnn train: the first min(5000, N) images fit trains on.
    whiten = []
    t0 = time.perf_counter()
    for i, m in enumerate(model):
        if isinstance(m, Conv2D) and m.init == "patch_whitening" and not args.weights:
            k = min(max(x_tr.shape[0], 1), 5000)
            lam = patch_whitening(model, i, x_tr[:k], 5e-4, True)
            whiten.append({"layer": i, "images": k, "eigenvalues": [lam[0], lam[-1]]})
            say(f"Whitened layer {i} (Conv2D) with the patches of {k} training images "
                f"(eigenvalues {lam[0]:.3g} .. {lam[-1]:.3g}, eps 5e-4 x the mean)")
    sync()
    whiten_s = time.perf_counter() - t0

    opt, base_lrs, decoupled_wd = make_train_optimizer(comp, model, lr)
    n = x_tr.shape[0]
    bs = min(batch, n)
    # drop_last, as fit: only the whole batches of each epoch's order (airbench's loader)
    steps = n // bs if bool(rec.get("drop_last", False)) else (n + bs - 1) // bs
    total_steps = fit_steps(epochs, steps)
    run_epochs = -(-total_steps // steps)  # ceil: every epoch begun
    shuffle_gen = torch.Generator().manual_seed(seed * 1000003 + 7)
    aug_gen = torch.Generator(device=device).manual_seed(seed * 1000003 + 11)
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    say(f"PyTorch {torch.__version__}: training {os.path.basename(args.model)} on {n} images "
        f"({'validation ' + str(n_val) if n_val else 'no validation'}), {epochs:g} epochs, batch {bs}, lr {lr:g}, "
        f"on {dev_name}, seed {seed}, {args.precision}")
    hdr = f"{'epoch':>5} {'loss':>8} {'accuracy':>9} {'val_acc':>8} {'lr':>9} {'seconds':>8}"
    say(hdr)
    history = []
    averager = WeightAverager(model, rec["weight_averaging"], total_steps) if rec.get("weight_averaging") else None
    global_step = 0
    model.train()
    sync()
    train0 = time.perf_counter()
    for epoch in range(run_epochs):
        e0 = time.perf_counter()
        for name, prm in model.named_parameters():  # trainable_epochs: frozen from this epoch on
            if 0 <= model.cnn_layer_opts[int(name.split(".")[0])]["trainable_epochs"] <= epoch:
                prm.requires_grad_(False)
        if args.our_rng:
            order = our_order(n, seed, epoch) if shuffle else torch.arange(n)
        else:
            order = torch.randperm(n, generator=shuffle_gen) if shuffle else torch.arange(n)
        order = order.to(device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        f = 1.0
        rows = 0
        for step in range(min(steps, total_steps - epoch * steps)):
            idx = order[step * bs:(step + 1) * bs]
            shifts = None
            if args.our_rng and int(aug.get("translate", 0)) > 0:
                shifts = our_shifts(seed, epoch, step, idx.shape[0], int(aug["translate"]))
            xb = augment_batch(x_tr[idx], idx, epoch, aug, aug_gen, shifts)
            yb = y_tr[idx]
            f = lr_factor(sched, (epoch * steps + step) / total_steps, epoch)
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base * f
            xb = channels_last_for(args.precision, device, xb)
            with autocast_for(args.precision, device):
                out = model(xb)
                loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if decoupled_wd:
                with torch.no_grad():
                    for g in opt.param_groups:
                        for p in g["params"]:
                            if p.requires_grad:
                                p.mul_(1 - g["lr"] * g["decay"])
            opt.step()
            global_step += 1
            if averager:
                averager.step(global_step)
            with torch.no_grad():
                loss_sum += loss.detach().double() * yb.shape[0]
                correct += (out.argmax(1) == yb).sum()
            rows += yb.shape[0]
        row = {"epoch": epoch + 1, "loss": float(loss_sum) / rows, "accuracy": int(correct) / rows, "lr": lr * f}
        if n_val:
            row["val_loss"], row["val_accuracy"] = evaluate(model, x_val, y_val, loss_fn, precision=args.precision)
        sync()
        row["seconds"] = time.perf_counter() - e0
        history.append(row)
        va = f"{row['val_accuracy']:8.4f}" if n_val else f"{'-':>8}"
        say(f"{row['epoch']:5d} {row['loss']:8.4f} {row['accuracy']:9.4f} {va} {row['lr']:9.4g} {row['seconds']:8.2f}")
    if averager:
        averager.finish()
    sync()
    train_s = time.perf_counter() - train0

    result = {
        "framework": "pytorch", "mode": "train", "torch_version": torch.__version__,
        "model": os.path.splitext(os.path.basename(args.model))[0], "model_file": args.model,
        "device": args.device, "device_name": dev_name, "threads": torch.get_num_threads(), "seed": seed, "our_rng": args.our_rng,
        "precision": args.precision, "train_images": n, "validation_images": n_val, "test_images": int(x_test.shape[0]),
        "epochs": epochs, "batch_size": bs, "learning_rate": lr, "steps_per_epoch": steps,
        "total_steps": total_steps,
        "whitening": whiten, "history": history, "weights": args.weights or None,
        "load_seconds": load_s, "whiten_seconds": whiten_s, "train_seconds": train_s,
    }
    if x_test.shape[0]:
        t0 = time.perf_counter()
        result["test_loss"], result["test_accuracy"] = evaluate(model, x_test, y_test, loss_fn, precision=args.precision)
        sync()
        result["eval_seconds"] = time.perf_counter() - t0
        if tta.get("flip", False) or int(tta.get("translate", 0)) > 0:
            t0 = time.perf_counter()
            result["test_loss_tta"], result["test_accuracy_tta"] = evaluate(model, x_test, y_test, loss_fn, tta,
                                                                            precision=args.precision)
            sync()
            result["eval_tta_seconds"] = time.perf_counter() - t0
            result["tta"] = tta
    result["wall_seconds"] = time.perf_counter() - wall0
    if args.json:
        print(json.dumps(result), flush=True)
        return
    print(f"Trained {run_epochs} epochs in {train_s:.1f} s ({train_s / max(run_epochs, 1):.1f} s per epoch); "
          f"whitening {whiten_s:.2f} s, data {load_s:.2f} s")
    if "test_accuracy" in result:
        print(f"Test: loss {result['test_loss']:.4f}, accuracy {result['test_accuracy']:.4f} "
              f"({result['test_images']} images, no test-time augmentation; {result['eval_seconds']:.1f} s)")
    if "test_accuracy_tta" in result:
        print(f"Test: loss {result['test_loss_tta']:.4f}, accuracy {result['test_accuracy_tta']:.4f} "
              f"({result['test_images']} images, test-time augmentation; {result['eval_tta_seconds']:.1f} s)")
    print(f"Wall time {result['wall_seconds']:.1f} s (data, whitening, training, evaluation)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch-size", type=int, default=0,
                    help="benchmark: required; --train: default the model file's training.batch_size")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: all cores)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--variants", default="",
                    help="comma-separated: eager, graph, compile (default: eager on cpu; all three on cuda)")
    ap.add_argument("--json", action="store_true", help="one JSON object per variant, one per line")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"],
                    help="fp32 (TF32 off), tf32 (TF32 products), bf16 (autocast, channels-last on CUDA)")
    tr = ap.add_argument_group("training (--train: the model file's compile and training sections, as cnn train)")
    tr.add_argument("--train", action="store_true", help="train on CIFAR-10 with the model's recipe")
    tr.add_argument("--data", default="", help="the cifar-10-batches-bin folder")
    tr.add_argument("--epochs", type=float, default=0, help="default: training.epochs, else 10; a fraction trains the last in part")
    tr.add_argument("--lr", type=float, default=0.0, help="default: compile.learning_rate")
    tr.add_argument("--limit", type=int, default=0, help="only the first N training images")
    tr.add_argument("--test-limit", type=int, default=0, help="only the first N test images")
    tr.add_argument("--validation-split", type=float, default=None, help="default: training.validation_split, else 0.1")
    tr.add_argument("--our-rng", action="store_true", help="draw the initial weights, shuffles and "
                    "translations with CNNFromScratch's generators (as `cnn train --seed SEED`): the same run")
    tr.add_argument("--weights", default="", help="start from this model saved by `cnn train` (.safetensors) "
                    "instead of initialising; without --epochs, only evaluate it")
    args = ap.parse_args()
    if not args.train and args.batch_size <= 0:
        ap.error("--batch-size is required (and positive) for the benchmark")

    with open(args.model) as f:
        desc = json.load(f)
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("bench_torch.py: --device cuda but torch.cuda.is_available() is False")
        torch.backends.cudnn.benchmark = True
    set_precision(args.precision, device)  # fp32: TF32 off, float32 as ours
    if args.train:
        if not args.data:
            ap.error("--train needs --data DIR (the cifar-10-batches-bin folder)")
        train_main(args, desc, device)
        return
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
