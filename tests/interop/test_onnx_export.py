"""The ONNX export checked with the real readers (CTest: interop.onnx).

For every models/*.json and the odd-case models here (tests/interop/onnx_odd_*.json), with
random initial weights and random biases and BatchNormalization statistics
(cnn_onnx_reference save): `cnn export` writes the ONNX file; the onnx package's checker
(full_check, with shape inference) passes; the graph has the documented interface (input
"input" [N, C, H, W] float32 with a dynamic batch, output "probabilities", the opset, the
metadata); onnxruntime's outputs match the library's predict() (cnn_onnx_reference predict)
at batch 1 and 7. The odd-case models are also exported at opsets 13, 20 (a Gelu node) and
22, and with a fixed batch of 7.

Tolerance: 1e-5 relative, element by element. Both sides compute in float32 with different
summation orders (im2col + GEMM versus onnxruntime's kernels, which also fuse Conv with
BatchNormalization and the activations): a few ulp (~1e-7 relative) per op through at most
~30 layers; softmax's exponentials turn the logits' small absolute errors into relative
errors of the same size, also for probabilities near 0. Each export prints its measured worst
relative difference (up to 1.8e-6 on cifar_cnn, ~2e-7 elsewhere, when this was written).
"""
import argparse
import json
import pathlib
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort

RTOL = 1e-5


def run(*args):
    subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL)


def reference(helper, saved, x, work):
    inp, out = work / "x.f32", work / "y.f32"
    x.astype("<f4").tofile(inp)
    run(helper, "predict", saved, inp, out)
    return np.fromfile(out, dtype="<f4").reshape(x.shape[0], -1)


def check_interface(model, description, opset, batch):
    onnx.checker.check_model(model, full_check=True)
    g = model.graph
    assert [i.name for i in g.input] == ["input"], [i.name for i in g.input]
    assert [o.name for o in g.output] == ["probabilities"], [o.name for o in g.output]
    t = g.input[0].type.tensor_type
    assert t.elem_type == onnx.TensorProto.FLOAT
    dims = t.shape.dim
    if batch == "dynamic":
        assert dims[0].dim_param == "N" and not dims[0].HasField("dim_value"), dims[0]
    else:
        assert dims[0].dim_value == int(batch), dims[0]
    assert [d.dim_value for d in dims[1:]] == description["input_shape"], dims
    assert [(o.domain, o.version) for o in model.opset_import] == [("", opset)], model.opset_import
    ops = {n.op_type for n in g.node}
    assert "Dropout" not in ops
    assert ("Gelu" in ops) == (opset >= 20 and any(
        l.get("activation") == "gelu" for l in description["layers"])), ops
    for n in g.node:  # named after its layer: "<layer>/<Op>"
        assert "/" in n.name and len(n.output) == 1, n


def compare(model_path, saved, description, helper, work, rng, batches):
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n in batches:
        x = rng.random((n, *description["input_shape"]), dtype=np.float32)
        want = reference(helper, saved, x, work)
        (got,) = sess.run(["probabilities"], {"input": x})
        assert got.shape == want.shape, (got.shape, want.shape)
        assert np.all(np.isfinite(want)), want
        bound = RTOL * np.abs(want)
        err = np.abs(got - want)
        worst = max(worst, float((err / np.maximum(np.abs(want), 1e-30)).max()))
        if not np.all(err <= bound):
            i = np.unravel_index(np.argmax(err - bound), err.shape)
            raise AssertionError(f"{model_path.name} batch {n}: onnxruntime {got[i]} vs predict {want[i]} at {i}")
    return worst


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cnn", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--work", required=True)
    a = p.parse_args()
    src, work = pathlib.Path(a.source), pathlib.Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    models = sorted((src / "models").glob("*.json"))
    odd = sorted((src / "tests" / "interop").glob("onnx_odd_*.json"))
    assert models and len(odd) == 3, (models, odd)
    checked = 0
    for seed, desc_path in enumerate(models + odd):
        description = json.loads(desc_path.read_text())
        saved = work / (desc_path.stem + ".safetensors")
        run(a.reference, "save", desc_path, saved, 100 + seed)
        variants = [(17, "dynamic")]
        if desc_path in odd:
            variants += [(13, "dynamic"), (20, "dynamic"), (22, "dynamic"), (17, "7")]
        for opset, batch in variants:
            out = work / f"{desc_path.stem}.opset{opset}.{batch}.onnx"
            args = ["export", "--model", saved, "--onnx", out, "--batch", batch]
            if opset != 17:
                args += ["--opset", opset]
            run(a.cnn, *args)
            model = onnx.load(str(out))
            check_interface(model, description, opset, batch)
            meta = {m.key: m.value for m in model.metadata_props}
            # The description's name and description, kept in the saved model.
            assert meta["name"] == description["name"] == model.graph.name, meta
            assert meta["description"] == description["description"] == model.doc_string, meta
            worst = compare(out, saved, description, a.reference, work, rng,
                            [1, 7] if batch == "dynamic" else [7])
            print(f"{out.name}: {len(model.graph.node)} nodes, checker ok, worst relative difference {worst:.2e}")
            checked += 1
    # A description exported directly: its name and description become the metadata.
    desc_path = src / "models" / "lenet5.json"
    description = json.loads(desc_path.read_text())
    out = work / "lenet5_from_description.onnx"
    run(a.cnn, "export", "--model", desc_path, "--onnx", out)
    model = onnx.load(str(out))
    check_interface(model, description, 17, "dynamic")
    meta = {m.key: m.value for m in model.metadata_props}
    assert meta["name"] == "lenet5" and meta["description"] == description["description"], meta
    assert model.graph.name == "lenet5" and model.doc_string == description["description"]
    print(f"{checked} exports checked and run; metadata from a description checked")


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, subprocess.CalledProcessError) as e:
        print(f"FAILED: {e!r}", file=sys.stderr)
        sys.exit(1)
