"""Write tests/data/embed/reference.txt: L2-normalised embeddings of samples/bank/*.jpg
computed with cv2 preprocessing + cv2.dnn (cross-checked against torch), for the C++
parity test. Also measures cv2.dnn inference time on 1 thread."""
import argparse
import glob
import hashlib
import os
import sys
import time

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import augment as A  # noqa: E402
from model import EmbedNet  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--onnx", default=os.path.join(ROOT, "models/hashwall-embed-v1.onnx"))
    ap.add_argument("--ckpt", default=None, help="optional: cross-check against torch")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/data/embed/reference.txt"))
    a = ap.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    sha = hashlib.sha256(open(a.onnx, "rb").read()).hexdigest()
    net = cv2.dnn.readNetFromONNX(a.onnx)
    m = None
    if a.ckpt:
        ck = torch.load(a.ckpt, map_location="cpu")
        m = EmbedNet(ck["args"]["dim"])
        m.load_state_dict(ck["model"])
        m.eval()
        assert ck["args"]["size"] == a.size
    samples = os.path.join(ROOT, "samples")
    files = sorted(glob.glob(os.path.join(samples, "bank", "*.jpg")))
    lines = ["# model=%s size=%d dim=128" % (sha, a.size)]
    worst, times = 0.0, []
    for f in files:
        img = cv2.imread(f, cv2.IMREAD_COLOR)
        x = A.preprocess(img, a.size)[None]
        t = time.perf_counter()
        net.setInput(x)
        e = net.forward()[0].astype(np.float64)
        times.append(time.perf_counter() - t)
        e /= np.linalg.norm(e)
        if m is not None:
            with torch.no_grad():
                te = torch.nn.functional.normalize(m(torch.from_numpy(x)), dim=1)[0].numpy()
            worst = max(worst, float(np.abs(te - e).max()))
        lines.append(os.path.relpath(f, samples) + " " + " ".join("%.7g" % v for v in e))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as fo:
        fo.write("\n".join(lines) + "\n")
    # timing: preprocessing + forward, 1 thread, on a bank photo, after warm-up
    img = cv2.imread(files[0], cv2.IMREAD_COLOR)
    ts = []
    for i in range(30):
        t = time.perf_counter()
        net.setInput(A.preprocess(img, a.size)[None])
        net.forward()
        ts.append(time.perf_counter() - t)
    print("wrote %s: %d images; sha256 %s; max |torch - cv2.dnn| (normalised) %.3g; "
          "cv2.dnn 1 thread: median %.2f ms/photo (preprocess+forward, %s %dx%d), forward-only median %.2f ms" % (
              a.out, len(files), sha, worst, np.median(ts[5:]) * 1e3, os.path.basename(files[0]),
              img.shape[1], img.shape[0], np.median(times) * 1e3))


if __name__ == "__main__":
    main()
