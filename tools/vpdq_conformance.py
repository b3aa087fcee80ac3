#!/usr/bin/python3
"""vPDQ conformance against Meta's vectors (issue #18): hashes every video of
../shared/vpdq-vectors (or VECTORS) at its own size and at 128x128 with `hashwall hash
--vpdq`, and compares frame by frame with the hashes Meta's vpdq-hash-video wrote.
Prints a Markdown table (docs/VIDEO.md) and exits 1 when a frame count, frame number or
timestamp differs, or when a frame is beyond the match distance (31) while both qualities
are at least 50 (Meta's regtest.py rule).

  tools/vpdq_conformance.py HASHWALL [VECTORS]
"""
import collections
import os
import subprocess
import sys
import time

hw = sys.argv[1]
vectors = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "vpdq-vectors")
videos = sorted(f[:-4] for f in os.listdir(os.path.join(vectors, "videos")) if f.endswith(".mp4"))
ok = True
hist = collections.Counter()
print("| video | size | frames | same numbers and timestamps | max distance | mean | frames > 6 | quality differs | seconds | decode only |")
print("|---|---|---|---|---|---|---|---|---|---|")
for v in videos:
    for size, suffix in ((0, ""), (128, "-128x128")):
        ref = [l.strip().split(",") for l in open(os.path.join(vectors, "hashes", v + suffix + ".txt")) if l.strip()]
        t = time.monotonic()
        out = subprocess.run([hw, "hash", "--vpdq", "--vpdq-size", str(size),
                              os.path.join(vectors, "videos", v + ".mp4")],
                             check=True, capture_output=True, text=True).stdout
        secs = time.monotonic() - t
        # The decode floor of hashwall's own reader: every frame decoded, one hashed.
        t = time.monotonic()
        subprocess.run([hw, "hash", "--vpdq", "--seconds-per-hash", "3600",
                        os.path.join(vectors, "videos", v + ".mp4")], check=True, capture_output=True)
        decode = time.monotonic() - t
        got = [l.split(",") for l in out.splitlines() if l]
        same = len(ref) == len(got) and all(a[0] == b[0] and a[3] == b[3] for a, b in zip(ref, got))
        ds = [bin(int(a[2], 16) ^ int(b[2], 16)).count("1") for a, b in zip(ref, got)]
        hist.update(ds)
        far = [d for a, b, d in zip(ref, got, ds) if d > 31 and int(a[1]) >= 50 and int(b[1]) >= 50]
        qdiff = sum(a[1] != b[1] for a, b in zip(ref, got))
        ok = ok and same and not far
        print(f"| {v} | {'own' if size == 0 else '128x128'} | {len(got)} of {len(ref)} | "
              f"{'yes' if same else 'NO'} | {max(ds)} | {sum(ds) / len(ds):.2f} | "
              f"{sum(d > 6 for d in ds)} | {qdiff} | {secs:.2f} | {decode:.2f} |")
print()
print("Distance from Meta's hash, all frames: " +
      ", ".join(f"{d}: {hist[d]}" for d in sorted(hist)))
print("conformant" if ok else "NOT conformant")
sys.exit(0 if ok else 1)
