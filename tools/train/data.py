"""Photo lists and caches for training (train split only) and held-out validation."""
import glob
import os
import pickle

import cv2
import numpy as np

PHOTOS = "/work/shared/photos"
# set14/face == set5/head (same photo); bsds500/train_302003 ~ set5/woman (train photo!)
SAME_PHOTO = [("set14/face", "set5/head")]


def train_files():
    fs = sorted(glob.glob(f"{PHOTOS}/bsds500/train_*")) + sorted(glob.glob(f"{PHOTOS}/bsds500/val_*"))
    fs += sorted(glob.glob(f"{PHOTOS}/debian/*"))
    return fs


def heldout_files():
    fs = sorted(glob.glob(f"{PHOTOS}/bsds500/test_*")) + sorted(glob.glob(f"{PHOTOS}/sun_hays80/*"))
    fs += sorted(glob.glob(f"{PHOTOS}/set14/*")) + sorted(glob.glob(f"{PHOTOS}/set5/*"))
    return [f for f in fs if not f.endswith((".md", ".txt"))]


def key(path):
    """'set14/face' style key (folder/stem) used for the same-photo exclusions."""
    d, b = os.path.split(path)
    return os.path.basename(d) + "/" + os.path.splitext(b)[0]


def read(path):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise IOError(path)
    return img


def shrink(img, max_side):
    h, w = img.shape[:2]
    f = max_side / max(h, w)
    if f >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def load_cached(files, max_side, cache_path):
    """Decode (slow for the 5120x2880 wallpapers) once, keep a copy downscaled to max_side."""
    if os.path.exists(cache_path):
        with open(cache_path, "rb") as f:
            d = pickle.load(f)
        if d["files"] == files and d["max_side"] == max_side:
            return d["imgs"]
    imgs = [shrink(read(p), max_side) for p in files]
    os.makedirs(os.path.dirname(cache_path), exist_ok=True)
    with open(cache_path + ".tmp", "wb") as f:
        pickle.dump({"files": files, "max_side": max_side, "imgs": imgs}, f, protocol=4)
    os.replace(cache_path + ".tmp", cache_path)
    return imgs
