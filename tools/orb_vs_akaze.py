#!/usr/bin/env python3
"""ORB or AKAZE for the local-feature signal? (issue #5) A quick comparison in Python/OpenCV.

Inputs, made with hashwall itself (40 held-out photos and their phone-screenshot edit):
  mkdir -p /tmp/ss/k /tmp/ss/q
  for f in $(ls HELDOUT | sort | awk 'NR%7==0' | head -40); do
    mkdir -p /tmp/ss/one && rm -f /tmp/ss/one/* && cp -L HELDOUT/$f /tmp/ss/one/ && cp -L HELDOUT/$f /tmp/ss/k/
    build/hashwall bench robustness --corpus /tmp/ss/one --save-examples /tmp/ss/e
    cp /tmp/ss/e/composite--phone-screenshot.jpg /tmp/ss/q/${f%.*}.jpg && rm -rf /tmp/ss/e
  done
  /usr/bin/python3 tools/orb_vs_akaze.py
Simplified pipeline (no tiles, no per-keypoint dedupe, no distance cut): it compares the
detectors, not hashwall's numbers. Results: docs/BENCHMARKS.md.
"""
import cv2, glob, os, time, numpy as np
cv2.setNumThreads(1)
known = sorted(glob.glob('/tmp/ss/k/*'))
def load(p, side):
    im = cv2.imread(p, cv2.IMREAD_GRAYSCALE); s = side / max(im.shape)
    return cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else im
def crop70(im):
    h, w = im.shape; return im[int(h*.15):int(h*.85), int(w*.15):int(w*.85)]
def dets(kind, n):
    if kind == 'orb': return cv2.ORB_create(n, 1.2, 8, 31, 0, 2, cv2.ORB_HARRIS_SCORE, 31, 20)
    return cv2.AKAZE_create(threshold=0.0005)
def feats(kind, im, n):
    d = dets(kind, n); t = time.perf_counter(); kp, de = d.detectAndCompute(im, None); dt = time.perf_counter() - t
    if kind == 'akaze' and len(kp) > n:
        idx = np.argsort([-k.response for k in kp])[:n]; kp = [kp[i] for i in idx]; de = de[idx]
    return kp, de, dt
def inliers(q, e):
    (kq, dq, _), (ke, de, _) = q, e
    if dq is None or de is None or len(kq) < 3 or len(ke) < 3: return 0
    m = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(dq, de, k=2)
    good = [a for a, b in (x for x in m if len(x) == 2) if a.distance < 0.8 * b.distance]
    if len(good) < 3: return 0
    src = np.float32([ke[g.trainIdx].pt for g in good]); dst = np.float32([kq[g.queryIdx].pt for g in good])
    M, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=0.012 * 800, maxIters=500)
    return int(mask.sum()) if M is not None else 0
for kind in ('orb', 'akaze'):
    E = [feats(kind, load(p, 640), 256) for p in known]
    for edit in ('screenshot', 'crop70'):
        ok = 0; worst = 0; tq = 0
        for i, p in enumerate(known):
            stem = os.path.splitext(os.path.basename(p))[0]
            q = load('/tmp/ss/q/' + stem + '.jpg', 800) if edit == 'screenshot' else crop70(load(p, 800))
            Q = feats(kind, q, 1024); tq += Q[2]
            ok += inliers(Q, E[i]) >= 12
            worst = max(worst, max(inliers(Q, E[j]) for j in range(len(known)) if j != i))
        print(f'{kind:6s} {edit:10s} true>=12: {ok}/{len(known)}  best wrong: {worst}  query extract {1000*tq/len(known):.1f} ms  entry extract {1000*np.mean([e[2] for e in E]):.1f} ms  entry kp {np.mean([len(e[0]) for e in E]):.0f} desc bytes {E[0][1].shape[1]}')
