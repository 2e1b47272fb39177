#!/usr/bin/env python3
"""Convert a darknet YOLO (cfg + weights, e.g. yolov3-tiny) to ONNX with numpy + onnx only.

    darknet2onnx.py CFG WEIGHTS OUT.onnx [--size 320]

The graph takes `images` [1,3,S,S] (float RGB 0..1, letterboxed) and gives `output`
[1,N,85] per box: cx, cy, w, h in input pixels, objectness, 80 class scores (all after the
sigmoid; the YOLOv3/v5 layout). Batch norm is folded into the convolutions. Supported
sections: [net], [convolutional] (leaky/linear, with or without batch norm), [maxpool],
[upsample], [route] (one or two layers), [shortcut], [yolo]. Opset 13.

Darknet facts used (darknet src/parser.c, convolutional_layer.c, yolo_layer.c): weights
file header = 3 int32 (major, minor, revision) + "seen" (int64 when major*10+minor >= 2,
else int32); per convolution: biases, then (with batch norm) scales, rolling mean, rolling
variance, then the kernel [out, in, k, k]; batch-norm epsilon .00001; leaky slope 0.1;
`pad=1` means padding size/2; a maxpool of stride 1 pads (size-1) at the bottom/right;
yolo: x = (sigmoid(tx) + col) * stride, w = exp(tw) * anchor (anchors in input pixels).
"""
import argparse
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def parse_cfg(path):
    sections = []
    with open(path) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("["):
                sections.append({"type": line.strip("[]").strip()})
            else:
                k, v = line.split("=", 1)
                sections[-1][k.strip()] = v.strip()
    if not sections or sections[0]["type"] not in ("net", "network"):
        sys.exit(f"{path}: the first section must be [net]")
    return sections[0], sections[1:]


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, arr, base="c"):
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def op(self, op, inputs, base=None, **attrs):
        out = self.name(base or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out


def convert(cfg_path, weights_path, out_path, size):
    net, layers = parse_cfg(cfg_path)
    w = np.fromfile(weights_path, dtype=np.uint8)
    major, minor, _rev = np.frombuffer(w[:12], dtype=np.int32)
    off = 12 + (8 if major * 10 + minor >= 2 else 4)
    weights = np.frombuffer(w[off:].tobytes(), dtype=np.float32)
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > weights.size:
            sys.exit(f"{weights_path}: too short for {cfg_path} (need more than {weights.size} floats)")
        a = weights[pos:pos + n]
        pos += n
        return a

    g = Graph()
    x = "images"
    channels = int(net.get("channels", 3))
    hw = size
    outs, chans, sizes, heads = [], [], [], []
    total, classes = 0, 80
    for i, l in enumerate(layers):
        t = l["type"]
        if t == "convolutional":
            n, k, s = int(l["filters"]), int(l["size"]), int(l.get("stride", 1))
            pad = k // 2 if int(l.get("pad", 0)) else int(l.get("padding", 0))
            bn = int(l.get("batch_normalize", 0))
            bias = take(n).copy()
            if bn:
                scale, mean, var = take(n), take(n), take(n)
            kern = take(n * channels * k * k).reshape(n, channels, k, k).copy()
            if bn:
                f = scale / np.sqrt(var + 1e-5)
                kern *= f[:, None, None, None]
                bias = bias - mean * f
            x = g.op("Conv", [x, g.const(kern.astype(np.float32), "w"), g.const(bias.astype(np.float32), "b")],
                     kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4)
            act = l.get("activation", "linear")
            if act == "leaky":
                x = g.op("LeakyRelu", [x], alpha=0.1)
            elif act != "linear":
                sys.exit(f"layer {i}: activation {act} not supported (leaky, linear)")
            channels = n
            hw = (hw + 2 * pad - k) // s + 1
        elif t == "maxpool":
            k, s = int(l["size"]), int(l["stride"])
            pads = [0, 0, k - 1, k - 1] if s == 1 else [0, 0, 0, 0]
            x = g.op("MaxPool", [x], kernel_shape=[k, k], strides=[s, s], pads=pads)
            hw = hw // s
        elif t == "upsample":
            s = int(l.get("stride", 2))
            x = g.op("Resize", [x, "", g.const(np.array([1, 1, s, s], dtype=np.float32), "scales")], mode="nearest")
            hw *= s
        elif t == "route":
            idx = [int(v) for v in l["layers"].split(",")]
            idx = [j if j >= 0 else i + j for j in idx]
            ins = [outs[j] for j in idx]
            x = ins[0] if len(ins) == 1 else g.op("Concat", ins, axis=1)
            channels = sum(chans[j] for j in idx)
            hw = sizes[idx[0]]
        elif t == "shortcut":
            j = int(l["from"])
            j = j if j >= 0 else i + j
            x = g.op("Add", [x, outs[j]])
        elif t == "yolo":
            mask = [int(v) for v in l["mask"].split(",")]
            a = [float(v) for v in l["anchors"].split(",")]
            anchors = np.array(a, dtype=np.float32).reshape(-1, 2)[mask]
            classes = int(l["classes"])
            na, d = len(mask), 5 + classes
            stride = size / hw
            # [1, na*d, H, W] -> [1, na, d, H, W] -> [1, na, H, W, d] -> [1, na*H*W, d]
            r = g.op("Reshape", [x, g.const(np.array([1, na, d, hw, hw], dtype=np.int64), "shape")])
            r = g.op("Transpose", [r], perm=[0, 1, 3, 4, 2])
            r = g.op("Reshape", [r, g.const(np.array([1, na * hw * hw, d], dtype=np.int64), "shape")])
            cols, rows = np.meshgrid(np.arange(hw), np.arange(hw))
            grid = np.stack([cols, rows], -1).reshape(1, 1, hw * hw, 2)
            grid = np.broadcast_to(grid, (1, na, hw * hw, 2)).reshape(1, na * hw * hw, 2).astype(np.float32)
            anc = np.broadcast_to(anchors[None, :, None, :], (1, na, hw * hw, 2)).reshape(1, na * hw * hw, 2).astype(np.float32)

            def sl(lo, hi):
                return g.op("Slice", [r, g.const(np.array([lo], dtype=np.int64)), g.const(np.array([hi], dtype=np.int64)),
                                      g.const(np.array([2], dtype=np.int64))])
            xy = g.op("Mul", [g.op("Add", [g.op("Sigmoid", [sl(0, 2)]), g.const(grid, "grid")]),
                              g.const(np.array(stride, dtype=np.float32), "stride")])
            wh = g.op("Mul", [g.op("Exp", [sl(2, 4)]), g.const(anc, "anchors")])
            rest = g.op("Sigmoid", [sl(4, d)])
            heads.append(g.op("Concat", [xy, wh, rest], axis=2, base="head"))
            total += na * hw * hw
        else:
            sys.exit(f"layer {i}: section [{t}] not supported")
        outs.append(x)
        chans.append(channels)
        sizes.append(hw)
    if pos != weights.size:
        sys.exit(f"{weights_path}: {weights.size - pos} floats left over: it does not match {cfg_path}")
    if not heads:
        sys.exit(f"{cfg_path}: no [yolo] layer")
    g.nodes.append(helper.make_node("Concat", heads, ["output"], axis=1))
    graph = helper.make_graph(
        g.nodes, "darknet-yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, total, 5 + classes])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="vr-stream darknet2onnx")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, out_path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cfg")
    ap.add_argument("weights")
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=320, help="input side, a multiple of 32 (default 320)")
    a = ap.parse_args()
    if a.size % 32 or not 64 <= a.size <= 1280:
        sys.exit(f"--size {a.size}: allowed a multiple of 32 in 64..=1280")
    convert(a.cfg, a.weights, a.out, a.size)


if __name__ == "__main__":
    main()
