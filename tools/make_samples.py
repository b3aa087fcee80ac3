#!/usr/bin/python3
"""Builds samples/ (the README quickstart's photos) from ../shared/photos/debian.

    /usr/bin/python3 tools/make_samples.py [--photos DIR]

samples/bank/     6 "known" photos, long side at most 1024 px
samples/uploads/  edited copies of 4 of them, 3 unrelated photos, 1 truncated JPEG

Only photos from Debian packages with free licences are used (see samples/README.md for
each file's package, copyright holder and licence); the research-only sets next to them
in ../shared/photos must never be copied here. Nothing random is drawn: the output
depends only on the inputs and on the OpenCV/libjpeg build (Debian 12's python3-opencv),
so rerunning it gives byte-identical files.
"""

import argparse
import pathlib
import sys

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"

# source file in photos/debian -> name in samples/bank (same prefix, same stem)
BANK = [
    "mate_Aqua.jpg",
    "mate_LadyBird.jpg",
    "lomiri_Bridge_by_Sander_Klootwijk.jpg",
    "lomiri_seeding_by_Clements_Engelhardt.jpg",
    "skimage_chelsea.png",
    "skimage_camera.png",  # grayscale, kept as PNG: shows a second format and one channel
]
# Photos that are in no bank: the demo must show non-matches too.
UNRELATED = [
    "skimage_coffee.png",
    "mate_Storm.jpg",
    "lomiri_aitzgorri_by_Aitzol_Berasategi.jpg",
]

LONG_SIDE = 1024  # bank photos
UNRELATED_LONG_SIDE = 800  # uploads need not be large; keeps samples/ small
JPEG_QUALITY = 90
BANK_MAX_BYTES = 300 * 1024
TOTAL_MAX_BYTES = 2_500_000
TRUNCATED_BYTES = 3 * 1024


def read(path: pathlib.Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        sys.exit(f"make_samples: cannot read {path}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def fit(img: np.ndarray, long_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def encode(img: np.ndarray, suffix: str, quality: int = JPEG_QUALITY) -> bytes:
    if suffix == ".png":
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    else:
        params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1]
        ok, buf = cv2.imencode(".jpg", img, params)
    if not ok:
        sys.exit(f"make_samples: cannot encode {suffix}")
    return buf.tobytes()


def stem(name: str) -> str:
    return pathlib.Path(name).stem


def caption(img: np.ndarray, text: str) -> np.ndarray:
    """Meme style: a white bar above the photo with black capitals, centred."""
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    h, w = img.shape[:2]
    bar = max(40, h // 5)
    font, thickness = cv2.FONT_HERSHEY_DUPLEX, max(1, w // 250)
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, thickness)
    scale = min(0.9 * w / tw, 0.55 * bar / th)
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    out = np.full((h + bar, w, 3), 255, dtype=np.uint8)
    out[bar:] = img
    org = ((w - tw) // 2, (bar + th) // 2)
    cv2.putText(out, text, org, font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=pathlib.Path,
                        default=ROOT.parent / "shared" / "photos" / "debian",
                        help="folder of the Debian photos (default: ../shared/photos/debian)")
    args = parser.parse_args()
    if not args.photos.is_dir():
        sys.exit(f"make_samples: {args.photos} is not a folder")

    files: dict[str, bytes] = {}  # path under samples/ -> content
    bank: dict[str, np.ndarray] = {}
    for name in BANK:
        img = fit(read(args.photos / name), LONG_SIDE)
        suffix = ".png" if name.endswith(".png") and img.ndim == 2 else ".jpg"
        data = encode(img, suffix)
        files[f"bank/{stem(name)}{suffix}"] = data
        # Edits start from the bank file as stored, as a re-shared copy would.
        bank[stem(name)] = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)

    aqua, bridge = bank["mate_Aqua"], bank["lomiri_Bridge_by_Sander_Klootwijk"]
    ladybird, chelsea = bank["mate_LadyBird"], bank["skimage_chelsea"]
    small = cv2.resize(bridge, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
    edits = {
        "mate_Aqua--jpeg30.jpg": encode(aqua, ".jpg", quality=30),
        "lomiri_Bridge_by_Sander_Klootwijk--resized40.jpg": encode(small, ".jpg"),
        "skimage_chelsea--caption.jpg": encode(caption(chelsea, "WHEN THE HASH STILL MATCHES"),
                                               ".jpg"),
        "mate_LadyBird--flipped.jpg": encode(cv2.flip(ladybird, 1), ".jpg"),
        "mate_LadyBird--rotated90.jpg": encode(cv2.rotate(ladybird, cv2.ROTATE_90_CLOCKWISE),
                                               ".jpg"),
    }
    for name, data in edits.items():
        files[f"uploads/{name}"] = data
    for name in UNRELATED:
        img = fit(read(args.photos / name), UNRELATED_LONG_SIDE)
        files[f"uploads/unrelated--{stem(name)}.jpg"] = encode(img, ".jpg")
    # A download cut short: JPEG headers and the start of the scan, no end-of-image marker.
    files["uploads/broken-truncated.jpg"] = files["bank/mate_Aqua.jpg"][:TRUNCATED_BYTES]

    for folder in ("bank", "uploads"):
        (SAMPLES / folder).mkdir(parents=True, exist_ok=True)
        # Drop images from an earlier run that this one no longer makes; leave other files.
        for old in (SAMPLES / folder).iterdir():
            if old.suffix in (".jpg", ".png") and f"{folder}/{old.name}" not in files:
                old.unlink()
    total = 0
    for rel, data in sorted(files.items()):
        (SAMPLES / rel).write_bytes(data)
        total += len(data)
        print(f"{len(data):>8}  samples/{rel}")
        if rel.startswith("bank/") and len(data) > BANK_MAX_BYTES:
            sys.exit(f"make_samples: samples/{rel} is over {BANK_MAX_BYTES} bytes")
    print(f"{total:>8}  total")
    if total > TOTAL_MAX_BYTES:
        sys.exit(f"make_samples: samples/ images total {total} bytes, over {TOTAL_MAX_BYTES}")


if __name__ == "__main__":
    main()
