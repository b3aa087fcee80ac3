"""Held-out retrieval metrics and false-match calibration.

Originals: all held-out photos (bsds500/test_*, sun_hays80, set14, set5).
Queries: seeded edited copies of each original. Pasted photos / collage tiles come
from the TRAIN photos, so that no held-out photo appears inside another's query.
Unrelated pairs: original-original pairs plus query-vs-other-original pairs, minus the
pairs that show the same photo (set14/face == set5/head).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import augment as A  # noqa: E402
import data as D  # noqa: E402

FMR = 1e-4


def build_queries(orig_imgs, pool_imgs, per_photo_single=1, per_photo_multi=1, seed=1234):
    """Return list of (source_index, edit_label, bgr image)."""
    rng = np.random.default_rng(seed)
    pool = lambda r: pool_imgs[int(r.integers(0, len(pool_imgs)))]  # noqa: E731
    out = []
    k = 0
    for i, img in enumerate(orig_imgs):
        for _ in range(per_photo_single):
            nm = A.EDIT_NAMES[k % len(A.EDIT_NAMES)]
            k += 1
            out.append((i, nm, A.EDITS[nm][0](img, rng, pool)))
        for _ in range(per_photo_multi):
            q, names = A.random_edits(img, rng, pool, 2, 3)
            out.append((i, "multi:" + "+".join(names), q))
    return out


@torch.no_grad()
def embed(model, imgs, size, bs=64):
    model.eval()
    out = []
    for s in range(0, len(imgs), bs):
        x = torch.from_numpy(np.stack([A.preprocess(im, size) for im in imgs[s:s + bs]]))
        out.append(torch.nn.functional.normalize(model(x), dim=1))
    return torch.cat(out).numpy()


class Validator:
    def __init__(self, size, orig_max_side=640, per_single=1, per_multi=1, seed=1234, pool_imgs=None):
        self.size = size
        files = D.heldout_files()
        self.files = files
        keys = [D.key(f) for f in files]
        self.orig = [D.shrink(D.read(f), orig_max_side) for f in files]
        if pool_imgs is None:
            pool_imgs = [D.shrink(D.read(f), 320) for f in D.train_files()[:300]]
        qs = build_queries(self.orig, pool_imgs, per_single, per_multi, seed)
        self.q_src = np.array([q[0] for q in qs])
        self.q_label = [q[1] for q in qs]
        self.q_imgs = [q[2] for q in qs]
        n = len(files)
        same = np.eye(n, dtype=bool)
        for a, b in D.SAME_PHOTO:
            if a in keys and b in keys:
                ia, ib = keys.index(a), keys.index(b)
                same[ia, ib] = same[ib, ia] = True
        self.same = same

    def run(self, model, detail=False):
        t = time.time()
        eo = embed(model, self.orig, self.size)
        eq = embed(model, self.q_imgs, self.size)
        so = eo @ eo.T
        sq = eq @ eo.T  # queries x originals
        n = len(self.orig)
        iu = np.triu_indices(n, 1)
        oo_unrel = so[iu][~self.same[iu]]
        q_related = self.same[self.q_src]  # query row related to original col
        q_unrel = sq[~q_related]
        unrel = np.concatenate([oo_unrel, q_unrel])
        N = unrel.size
        allowed = int(np.floor(N * FMR))
        srt = np.sort(unrel)[::-1]
        thr = float(srt[allowed])  # matches are sim > thr: exactly `allowed` unrelated above
        fm = int((unrel > thr).sum())
        pos = sq[np.arange(len(sq)), self.q_src]
        # top-1: best original must be the source (or the same photo)
        top = sq.argmax(1)
        r1 = float(np.mean(q_related[np.arange(len(sq)), top]))
        rthr = float(np.mean(pos > thr))
        res = {"recall_at_1": r1, "threshold": thr, "recall_at_threshold": rthr,
               "unrelated_pairs": int(N), "false_matches_at_threshold": fm,
               "fmr_target": FMR, "n_originals": n, "n_queries": len(sq),
               "pos_sim_median": float(np.median(pos)),
               "unrelated_sim_p99": float(np.quantile(unrel, 0.99)),
               "unrelated_sim_max": float(srt[0]), "seconds": time.time() - t}
        if detail:
            per = {}
            for lab, p, tp in zip(self.q_label, pos, q_related[np.arange(len(sq)), top]):
                k = "multi(2-3 edits)" if lab.startswith("multi:") else lab
                d = per.setdefault(k, [0, 0, 0])
                d[0] += 1
                d[1] += int(p > thr)
                d[2] += int(tp)
            res["per_edit"] = {k: {"n": v[0], "recall_at_threshold": v[1] / v[0], "recall_at_1": v[2] / v[0]}
                               for k, v in sorted(per.items())}
        return res


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ckpt", required=True, help="checkpoint .pt from train.py")
    ap.add_argument("--per-single", type=int, default=3, help="single-edit queries per held-out photo")
    ap.add_argument("--per-multi", type=int, default=2, help="2-3-edit queries per held-out photo")
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--json", default=None, help="write calibration JSON here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    import cv2
    cv2.setNumThreads(1)
    from model import EmbedNet
    ck = torch.load(a.ckpt, map_location="cpu")
    m = EmbedNet(ck["args"]["dim"])
    m.load_state_dict(ck["model"])
    v = Validator(ck["args"]["size"], per_single=a.per_single, per_multi=a.per_multi, seed=a.seed)
    res = v.run(m, detail=True)
    res["checkpoint_step"] = ck["step"]
    res["size"] = ck["args"]["size"]
    res["note"] = ("threshold: cosine similarity of L2-normalised embeddings; a pair is a match when "
                   "sim > threshold. Unrelated pairs = held-out original-original pairs + edited held-out "
                   "query vs every other held-out original (same-photo pairs excluded). Queries seed=%d." % a.seed)
    txt = json.dumps(res, indent=1)
    print(txt)
    if a.json:
        with open(a.json, "w") as f:
            f.write(txt + "\n")


if __name__ == "__main__":
    main()
