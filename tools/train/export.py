"""Export a train.py checkpoint to ONNX that OpenCV 4.6 dnn can load, and verify it.

Raw 128-d projection output (no L2 normalisation in the graph), input "input"
(1x3xSxS float32, preprocessed as in augment.preprocess), output "embedding".
"""
import argparse
import hashlib
import os
import sys

import cv2
import numpy as np
import torch
import torch.onnx.utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import EmbedNet  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True, help="e.g. models/hashwall-embed-v1.onnx")
    ap.add_argument("--opset", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(1)
    ck = torch.load(a.ckpt, map_location="cpu")
    size, dim = ck["args"]["size"], ck["args"]["dim"]
    m = EmbedNet(dim)
    m.load_state_dict(ck["model"])
    m.eval()
    # torch 1.13 replaces byte-identical initializers by Identity nodes, which OpenCV 4.6
    # cannot import; keep every initializer as its own tensor instead.
    torch.onnx.utils._C._jit_pass_onnx_deduplicate_initializers = lambda graph, params, training: params
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    torch.onnx.export(m, x, a.out, opset_version=a.opset, do_constant_folding=True,
                      input_names=["input"], output_names=["embedding"], training=torch.onnx.TrainingMode.EVAL)
    net = cv2.dnn.readNetFromONNX(a.out)
    worst = 0.0
    for seed in range(5):
        xi = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 1.5
        net.setInput(xi.numpy())
        o = net.forward()
        with torch.no_grad():
            t = m(xi).numpy()
        worst = max(worst, float(np.abs(o - t).max()))
    sha = hashlib.sha256(open(a.out, "rb").read()).hexdigest()
    print("exported %s: %d bytes sha256 %s; size %d dim %d; max |cv2.dnn - torch| = %.3g" % (
        a.out, os.path.getsize(a.out), sha, size, dim, worst))
    if worst > 1e-4:
        raise SystemExit("cv2.dnn output differs from torch by more than 1e-4")


if __name__ == "__main__":
    main()
