#!/usr/bin/python3
# Material for the video measurements of docs/VIDEO.md and docs/BENCHMARKS.md ("Videos"),
# made from ../shared/photos/bsds500 (or $HASHWALL_PHOTOS/bsds500) with Debian's
# python3-opencv; never run by the tests or CI.
#   tools/make_video_bench.py slides OUT   # OUT/known (20 slideshows), OUT/clips, OUT/unrelated
#   tools/make_video_bench.py hd60 OUT     # OUT/hd60.mp4: 60 s of 720p, 30 photos
#   tools/make_video_bench.py crops OUT    # OUT/crops: 10,000 crops of 400 photos
import cv2, numpy as np, os, sys, glob, random
random.seed(1)
photos = sorted(glob.glob(os.path.join(os.environ.get('HASHWALL_PHOTOS', '../shared/photos'), 'bsds500', '*.jpg')))
out = sys.argv[2] if len(sys.argv) > 2 else 'video-bench'
def fit(img, w, h):
    ih, iw = img.shape[:2]; f = min(w/iw, h/ih)
    s = cv2.resize(img, (max(1,int(iw*f)), max(1,int(ih*f))), interpolation=cv2.INTER_AREA)
    c = np.zeros((h, w, 3), np.uint8); y=(h-s.shape[0])//2; x=(w-s.shape[1])//2
    c[y:y+s.shape[0], x:x+s.shape[1]] = s; return c
def slideshow(path, imgs, secs, fps, w, h):
    vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps, (w, h))
    for p in imgs:
        f = fit(cv2.imread(p), w, h)
        for _ in range(int(secs*fps)): vw.write(f)
    vw.release()
if len(sys.argv) < 2 or sys.argv[1] not in ('slides', 'hd60', 'crops'):
    sys.exit(__doc__ or 'usage: make_video_bench.py slides|hd60|crops OUT')
what = sys.argv[1]
if what == 'slides':
    os.makedirs(out+'/known', exist_ok=True); os.makedirs(out+'/clips', exist_ok=True); os.makedirs(out+'/unrelated', exist_ok=True)
    sh = photos[:]; random.shuffle(sh)
    for i in range(20):   # known: photos 0..199, 10 each
        imgs = sh[i*10:(i+1)*10]
        slideshow(f'{out}/known/show{i:02d}.mp4', imgs, 2, 10, 640, 360)
        slideshow(f'{out}/clips/clip{i:02d}.mp4', imgs[4:7], 2, 15, 480, 270)
    for i in range(20):   # unrelated: photos 200..399
        slideshow(f'{out}/unrelated/other{i:02d}.mp4', sh[200+i*10:200+(i+1)*10], 2, 10, 640, 360)
elif what == 'crops':
    os.makedirs(out+'/crops', exist_ok=True)
    n = 0
    for k in range(25):
        for p in photos[:400]:
            img = cv2.imread(p); h, w = img.shape[:2]
            s = random.uniform(0.45, 0.8); cw, ch = int(w*s), int(h*s)
            x = random.randint(0, w-cw); y = random.randint(0, h-ch)
            c = img[y:y+ch, x:x+cw]
            if random.random() < 0.5: c = cv2.flip(c, 1)
            cv2.imwrite(f'{out}/crops/c{n:05d}.jpg', c, [cv2.IMWRITE_JPEG_QUALITY, 85]); n += 1
elif what == 'hd60':
    # 60 s of 720p at 30 fps: 30 photos (from bsds500 crops' sources) 2 s each
    slideshow(out+'/hd60.mp4', photos[400:430], 2, 30, 1280, 720)
