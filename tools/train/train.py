"""Train the hashwall copy-detection embedding (SSCD-style) on CPU.

Each step: K distinct training photos (or random sub-regions of them), two strongly
edited views each -> InfoNCE over the 2K views + KoLeo entropy regulariser.
See tools/train/README.md for the exact command.
"""
import argparse
import json
import math
import os
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import augment as A  # noqa: E402
import data as D  # noqa: E402
from model import EmbedNet  # noqa: E402


class Batches(torch.utils.data.Dataset):
    """Item i = the whole batch of step i, generated from rng seeded by (seed, i)."""

    def __init__(self, imgs, big, pool_imgs, K, size, base_side, seed):
        self.imgs, self.big, self.pool_imgs = imgs, big, pool_imgs
        self.K, self.size, self.base_side, self.seed = K, size, base_side, seed

    def __len__(self):
        return 10 ** 9

    def instance(self, img, big, rng):
        h, w = img.shape[:2]
        p_sub, lo, hi = (0.7, 0.08, 0.6) if big else (0.25, 0.35, 0.7)
        if rng.random() < p_sub:  # a random sub-region is treated as its own photo
            area = rng.uniform(lo, hi) * w * h
            ar = np.exp(rng.uniform(np.log(0.6), np.log(1.7)))
            cw, ch = min(w, int(math.sqrt(area * ar))), min(h, int(math.sqrt(area / ar)))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            img = img[y:y + ch, x:x + cw]
        return D.shrink(img, int(rng.integers(self.base_side - 64, self.base_side + 65)))

    def __getitem__(self, step):
        rng = np.random.default_rng([self.seed, step])
        pool = lambda r: self.pool_imgs[int(r.integers(0, len(self.pool_imgs)))]  # noqa: E731
        idx = rng.choice(len(self.imgs), self.K, replace=False)
        v1, v2 = [], []
        for i in idx:
            base = self.instance(self.imgs[i], self.big[i], rng)
            if rng.random() < 0.25:  # keep the "original vs edited copy" case frequent
                a = base if rng.random() < 0.5 else A.jpeg(base, rng)
            else:
                a, _ = A.random_edits(base, rng, pool, 1, 3)
            b, _ = A.random_edits(base, rng, pool, 1, 3)
            v1.append(A.preprocess(a, self.size))
            v2.append(A.preprocess(b, self.size))
        return torch.from_numpy(np.stack(v1 + v2))


def losses(z, temp):
    """z: (2K, d) L2-normalised, rows i and i+K are the two views of one photo."""
    n = z.shape[0]
    k = n // 2
    sim = z @ z.t()
    eye = torch.eye(n, dtype=torch.bool)
    pos = torch.cat([torch.arange(k, n), torch.arange(0, k)])
    logits = (sim / temp).masked_fill(eye, -1e9)
    ince = F.cross_entropy(logits, pos)
    # KoLeo: distance to the nearest neighbour that is neither itself nor its positive
    mask = eye.clone()
    mask[torch.arange(n), pos] = True
    d2 = (2 - 2 * sim).masked_fill(mask, 1e9)
    rho = d2.min(1).values.clamp_min(1e-8).sqrt()
    koleo = -torch.log(rho + 1e-8).mean()
    acc = (logits.argmax(1) == pos).float().mean()
    return ince, koleo, acc


def _worker_init(_):
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def lr_at(step, a):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    t = (step - a.warmup) / max(1, a.steps - a.warmup)
    return a.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out-dir", default="/tmp/hashwall-train/run")
    ap.add_argument("--log", default=os.path.join(HERE, "train.log"))
    ap.add_argument("--steps", type=int, default=1800)
    ap.add_argument("--photos-per-batch", type=int, default=48, help="K; the batch holds 2K views")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.02)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--temp", type=float, default=0.05)
    ap.add_argument("--koleo", type=float, default=10.0, help="KoLeo (entropy) weight lambda")
    ap.add_argument("--base-side", type=int, default=256, help="instance size before edits (+-64)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--eval-every", type=int, default=300)
    ap.add_argument("--ckpt-minutes", type=float, default=4.0)
    ap.add_argument("--max-minutes", type=float, default=45.0,
                    help="safety stop: save and quit when this much wall time has passed")
    ap.add_argument("--resume", action="store_true", help="continue from OUT_DIR/ckpt.pt")
    a = ap.parse_args()

    # 1 thread: with another process busy on this 2-core box, 2 OpenMP threads ran 10x slower
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(1)
    torch.manual_seed(a.seed)
    os.makedirs(a.out_dir, exist_ok=True)
    t0 = time.time()
    logf = open(a.log, "a")

    def log(msg):
        line = time.strftime("%H:%M:%S ") + msg
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    files = D.train_files()
    imgs = D.load_cached(files, 1280, "/tmp/hashwall-train/cache/train_1280.pkl")
    big = [("/debian/" in f) and max(im.shape[:2]) >= 1000 for f, im in zip(files, imgs)]
    pool_imgs = [D.shrink(im, 320) for im in imgs]
    log("train photos: %d (%d large debian); load %.1fs" % (len(files), sum(big), time.time() - t0))

    from evaluate import Validator
    val = Validator(a.size, pool_imgs=pool_imgs)
    log("validation: %d held-out originals, %d edited queries" % (len(val.orig), len(val.q_imgs)))

    model = EmbedNet(a.dim)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr)
    start, elapsed_before = 0, 0.0
    ck_path = os.path.join(a.out_dir, "ckpt.pt")
    if a.resume and os.path.exists(ck_path):
        ck = torch.load(ck_path, map_location="cpu")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start, elapsed_before = ck["step"], ck.get("train_seconds", 0.0)
        log("resumed from %s at step %d (%.1f min trained before)" % (ck_path, start, elapsed_before / 60))
    else:
        log("args: " + json.dumps(vars(a)))

    def save(step, path=ck_path):
        tmp = path + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "args": vars(a), "train_seconds": elapsed_before + time.time() - t_run}, tmp)
        os.replace(tmp, path)

    ds = Batches(imgs, big, pool_imgs, a.photos_per_batch, a.size, a.base_side, a.seed)
    dl = torch.utils.data.DataLoader(
        ds, batch_size=None, sampler=range(start, a.steps), num_workers=a.workers,
        worker_init_fn=_worker_init, prefetch_factor=4 if a.workers else 2,
        persistent_workers=False)
    t_run = time.time()
    last_ck = time.time()
    agg = np.zeros(4)
    nagg = 0
    t_log = time.time()
    step = start
    for step, x in enumerate(dl, start):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a)
        model.train()
        z = F.normalize(model(x), dim=1)
        ince, koleo, acc = losses(z, a.temp)
        loss = ince + a.koleo * koleo
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        agg += [loss.item(), ince.item(), koleo.item(), acc.item()]
        nagg += 1
        done = step + 1
        if done % a.log_every == 0:
            agg /= nagg
            log("step %d/%d loss %.4f infonce %.4f koleo %.4f acc %.3f lr %.2e %.2fs/step train %.1fmin" % (
                done, a.steps, *agg, lr_at(step, a), (time.time() - t_log) / nagg,
                (elapsed_before + time.time() - t_run) / 60))
            agg[:] = 0
            nagg = 0
            t_log = time.time()
        if done % a.eval_every == 0 or done == a.steps:
            r = val.run(model)
            log("eval step %d: recall@1 %.3f | thr(FMR<=1e-4 on %d unrelated pairs) %.4f recall@thr %.3f "
                "| pos median %.3f unrel p99 %.3f max %.3f (%.0fs)" % (
                    done, r["recall_at_1"], r["unrelated_pairs"], r["threshold"], r["recall_at_threshold"],
                    r["pos_sim_median"], r["unrelated_sim_p99"], r["unrelated_sim_max"], r["seconds"]))
            t_log = time.time()
        if time.time() - last_ck > a.ckpt_minutes * 60:
            save(done)
            last_ck = time.time()
        if (elapsed_before + time.time() - t_run) / 60 > a.max_minutes:
            log("max-minutes reached at step %d: stopping early" % done)
            break
    save(step + 1)
    save(step + 1, os.path.join(a.out_dir, "final.pt"))
    log("done: %d steps, training wall time %.1f min (this process %.1f min incl. setup)" % (
        step + 1, (elapsed_before + time.time() - t_run) / 60, (time.time() - t0) / 60))


if __name__ == "__main__":
    main()
