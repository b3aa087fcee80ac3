"""Copy-detection edits implemented with cv2/numpy, all driven by a numpy Generator.

Every edit takes (img, rng, pool) where img is a BGR uint8 HxWx3 array, rng a
numpy.random.Generator and pool a callable returning another BGR photo (used for
pasted photos and collages); it returns a new BGR uint8 image.
"""
import cv2
import numpy as np

WORDS = ("when you", "me", "nobody", "LOL", "the moment", "breaking", "look at this",
         "wow", "so true", "my face when", "Monday", "share if", "100%", "omg",
         "why", "this is fine", "cat", "news", "sale", "2024", "original", "repost")
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
         cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN)


def rand_text(rng, n_min=1, n_max=4):
    n = int(rng.integers(n_min, n_max + 1))
    return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), n))


def rand_color(rng):
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def area_resize(img, w, h):
    w, h = max(1, int(round(w))), max(1, int(round(h)))
    if w * h < img.shape[0] * img.shape[1]:
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def fit_text(text, font, max_w, max_h, thick):
    scale = 4.0
    while scale > 0.2:
        (tw, th), base = cv2.getTextSize(text, font, scale, thick)
        if tw <= max_w and th + base <= max_h:
            return scale, tw, th, base
        scale *= 0.85
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    return scale, tw, th, base


# ---------------------------------------------------------------- geometry
def crop(img, rng, pool=None, min_area=0.4):
    h, w = img.shape[:2]
    for _ in range(10):
        area = rng.uniform(min_area, 1.0) * w * h
        ar = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        cw, ch = int(round(np.sqrt(area * ar))), int(round(np.sqrt(area / ar)))
        if 8 <= cw <= w and 8 <= ch <= h:
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return img[y:y + ch, x:x + cw].copy()
    return img


def _bg_like(img, rng, W, H):
    kind = rng.integers(0, 3)
    if kind == 0:
        return np.full((H, W, 3), rand_color(rng), np.uint8)
    if kind == 1:
        c = int(rng.choice([0, 255]))
        return np.full((H, W, 3), c, np.uint8)
    small = area_resize(img, max(2, W // 16), max(2, H // 16))
    bg = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(bg, (0, 0), max(W, H) / 40.0)


def border(img, rng, pool=None):
    h, w = img.shape[:2]
    m = rng.uniform(0.03, 0.2)
    t, b, l, r = (int(round(m * s * rng.uniform(0.5, 1.5))) for s in (h, h, w, w))
    H, W = h + t + b, w + l + r
    bg = _bg_like(img, rng, W, H)
    bg[t:t + h, l:l + w] = img
    return bg


def letterbox(img, rng, pool=None):
    h, w = img.shape[:2]
    target = 16 / 9 if rng.random() < 0.5 else 9 / 16
    if w / h < target:
        W, H = int(round(h * target)), h
    else:
        W, H = w, int(round(w / target))
    bg = _bg_like(img, rng, W, H)
    x, y = (W - w) // 2, (H - h) // 2
    bg[y:y + h, x:x + w] = img
    return bg


def rotate90(img, rng, pool=None):
    return cv2.rotate(img, [cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180,
                            cv2.ROTATE_90_COUNTERCLOCKWISE][int(rng.integers(0, 3))])


def rotate_small(img, rng, pool=None):
    h, w = img.shape[:2]
    ang = rng.uniform(-15, 15)
    M = cv2.getRotationMatrix2D((w / 2, h / 2), ang, 1.0)
    if rng.random() < 0.5:  # expand canvas
        c, s = abs(M[0, 0]), abs(M[0, 1])
        W, H = int(h * s + w * c), int(h * c + w * s)
        M[0, 2] += W / 2 - w / 2
        M[1, 2] += H / 2 - h / 2
    else:
        W, H = w, h
    fill = rand_color(rng) if rng.random() < 0.5 else (0, 0, 0)
    return cv2.warpAffine(img, M, (W, H), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def flip(img, rng, pool=None):
    return cv2.flip(img, 1 if rng.random() < 0.7 else 0)


# ---------------------------------------------------------------- overlays
def caption(img, rng, pool=None):
    h, w = img.shape[:2]
    bh = int(round(h * rng.uniform(0.12, 0.35)))
    bar = np.full((bh, w, 3), 255, np.uint8)
    font = FONTS[int(rng.integers(0, len(FONTS)))]
    lines = int(rng.integers(1, 3))
    thick = int(rng.integers(1, 3))
    for i in range(lines):
        text = rand_text(rng)
        scale, tw, th, base = fit_text(text, font, int(w * 0.92), bh // lines - 4, thick)
        x = max(0, (w - tw) // 2)
        y = int((i + 0.5) * bh / lines + th / 2)
        cv2.putText(bar, text, (x, y), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
    out = np.concatenate([bar, img], 0)
    if rng.random() < 0.25:  # bottom bar too
        bar2 = np.full((bh // 2 + 1, w, 3), 255, np.uint8)
        cv2.putText(bar2, rand_text(rng), (4, bh // 3 + 2), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        out = np.concatenate([out, bar2], 0)
    return out


def text_overlay(img, rng, pool=None):
    img = img.copy()
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(1, 4))):
        font = FONTS[int(rng.integers(0, len(FONTS)))]
        text = rand_text(rng)
        thick = int(rng.integers(1, 4))
        scale, tw, th, base = fit_text(text, font, int(w * rng.uniform(0.3, 0.95)),
                                       int(h * rng.uniform(0.06, 0.2)), thick)
        x = int(rng.integers(0, max(1, w - tw)))
        y = int(rng.integers(th, max(th + 1, h - base)))
        col = rand_color(rng) if rng.random() < 0.5 else (255, 255, 255)
        if rng.random() < 0.6:  # meme outline
            cv2.putText(img, text, (x, y), font, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(img, text, (x, y), font, scale, col, thick, cv2.LINE_AA)
    return img


def _paste_rect(img, rng):
    h, w = img.shape[:2]
    area = rng.uniform(0.1, 0.3) * w * h
    ar = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    pw, ph = min(w, int(np.sqrt(area * ar))), min(h, int(np.sqrt(area / ar)))
    pw, ph = max(pw, 2), max(ph, 2)
    x, y = int(rng.integers(0, w - pw + 1)), int(rng.integers(0, h - ph + 1))
    return x, y, pw, ph


def paste_photo(img, rng, pool):
    img = img.copy()
    x, y, pw, ph = _paste_rect(img, rng)
    other = pool(rng)
    other = crop(other, rng, min_area=0.3)
    img[y:y + ph, x:x + pw] = area_resize(other, pw, ph)
    if rng.random() < 0.4:
        cv2.rectangle(img, (x, y), (x + pw - 1, y + ph - 1), (255, 255, 255), 2)
    return img


def sticker(img, rng, pool=None):
    img = img.copy()
    x, y, pw, ph = _paste_rect(img, rng)
    col = rand_color(rng)
    kind = rng.integers(0, 3)
    if kind == 0:
        cv2.rectangle(img, (x, y), (x + pw - 1, y + ph - 1), col, -1)
    elif kind == 1:
        cv2.ellipse(img, (x + pw // 2, y + ph // 2), (pw // 2, ph // 2), 0, 0, 360, col, -1)
    else:  # "emoji": yellow disc with eyes and mouth
        r = min(pw, ph) // 2
        c = (x + pw // 2, y + ph // 2)
        cv2.circle(img, c, r, (0, 215, 255), -1)
        cv2.circle(img, (c[0] - r // 3, c[1] - r // 4), max(1, r // 8), (0, 0, 0), -1)
        cv2.circle(img, (c[0] + r // 3, c[1] - r // 4), max(1, r // 8), (0, 0, 0), -1)
        cv2.ellipse(img, (c[0], c[1] + r // 6), (r // 2, r // 3), 0, 0, 180, (0, 0, 0), max(1, r // 10))
    if rng.random() < 0.3:
        font = FONTS[0]
        t = rand_text(rng, 1, 2)
        s, tw, th, b = fit_text(t, font, pw - 4, ph // 3, 1)
        cv2.putText(img, t, (x + 2, y + ph // 2 + th // 2), font, s, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def screenshot(img, rng, pool=None):
    h, w = img.shape[:2]
    W = int(round(w * rng.uniform(1.0, 1.2)))
    H = int(round(W * rng.uniform(1.8, 2.2)))
    dark = rng.random() < 0.5
    bgc = (int(rng.integers(0, 40)),) * 3 if dark else (int(rng.integers(225, 256)),) * 3
    fg = (235, 235, 235) if dark else (20, 20, 20)
    canvas = np.full((H, W, 3), bgc, np.uint8)
    # photo scaled to the canvas width (with margins)
    pw = int(W * rng.uniform(0.85, 1.0))
    ph = int(round(h * pw / w))
    if ph > H * 0.7:
        ph = int(H * 0.7)
        pw = int(round(w * ph / h))
    y0 = int(H * rng.uniform(0.12, 0.3))
    y0 = min(y0, H - ph - 1)
    x0 = (W - pw) // 2
    canvas[y0:y0 + ph, x0:x0 + pw] = area_resize(img, pw, ph)
    sb = max(8, H // 30)
    barc = tuple(int(c) for c in rng.integers(0, 256, 3)) if rng.random() < 0.4 else bgc
    canvas[:sb] = barc
    sc = sb / 30.0
    cv2.putText(canvas, "%d:%02d" % (rng.integers(0, 24), rng.integers(0, 60)), (4, sb - 3),
                FONTS[0], sc, fg, 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (W - 6 * sb // 2, 3), (W - 4, sb - 3), fg, 1)
    # app header with user name
    hy = sb + max(6, H // 40)
    cv2.circle(canvas, (sb, hy + sb // 2), sb // 2, rand_color(rng), -1)
    cv2.putText(canvas, rand_text(rng, 1, 2), (2 * sb, hy + sb // 2 + 3), FONTS[0], sc * 1.2, fg, 1, cv2.LINE_AA)
    # text under the photo
    ty = y0 + ph + sb
    for i in range(int(rng.integers(1, 4))):
        if ty + i * sb * 1.5 < H - 2 * sb:
            cv2.putText(canvas, rand_text(rng), (6, int(ty + i * sb * 1.5)), FONTS[0], sc * 1.1, fg, 1, cv2.LINE_AA)
    # bottom nav bar
    nb = max(10, H // 16)
    canvas[H - nb:] = bgc if rng.random() < 0.5 else (128, 128, 128)
    for k in range(4):
        cx = int(W * (k + 0.5) / 4)
        cv2.circle(canvas, (cx, H - nb // 2), max(2, nb // 4), fg, 1)
    return canvas


def collage(img, rng, pool):
    h, w = img.shape[:2]
    cw, ch = w // 2 if rng.random() < 0.5 else w, h // 2 if rng.random() < 0.5 else h
    cw, ch = max(cw, 8), max(ch, 8)
    gap = int(rng.integers(0, 6))
    canvas = np.full((2 * ch + gap, 2 * cw + gap, 3), 255 if rng.random() < 0.5 else 0, np.uint8)
    pos = int(rng.integers(0, 4))
    for k in range(4):
        tile = img if k == pos else pool(rng)
        r, c = divmod(k, 2)
        canvas[r * (ch + gap):r * (ch + gap) + ch, c * (cw + gap):c * (cw + gap) + cw] = area_resize(tile, cw, ch)
    return canvas


# ---------------------------------------------------------------- photometric
def colour(img, rng, pool=None):
    x = img.astype(np.float32) / 255.0
    ops = rng.permutation(5)[:int(rng.integers(1, 4))]
    for op in ops:
        if op == 0:
            x = x + rng.uniform(-0.3, 0.3)
        elif op == 1:
            x = (x - 0.5) * rng.uniform(0.5, 1.6) + 0.5
        elif op == 2:
            x = np.clip(x, 0, 1) ** np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        elif op == 3:
            g = x @ np.array([0.114, 0.587, 0.299], np.float32)
            x = g[..., None] + (x - g[..., None]) * rng.uniform(0.0, 2.0)
        else:
            hsv = cv2.cvtColor(np.clip(x, 0, 1).astype(np.float32), cv2.COLOR_BGR2HSV)
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(-60, 60)) % 360
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


def grey(img, rng, pool=None):
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)


SEPIA = np.array([[0.131, 0.534, 0.272], [0.168, 0.686, 0.349], [0.189, 0.769, 0.393]], np.float32)  # BGR rows


def sepia(img, rng, pool=None):
    return np.clip(cv2.transform(img.astype(np.float32), SEPIA), 0, 255).astype(np.uint8)


def blur(img, rng, pool=None):
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.7, 3.5))


def noise(img, rng, pool=None):
    n = rng.normal(0, rng.uniform(3, 25), img.shape).astype(np.float32)
    return np.clip(img.astype(np.float32) + n, 0, 255).astype(np.uint8)


def sharpen(img, rng, pool=None):
    a = rng.uniform(0.5, 2.0)
    b = cv2.GaussianBlur(img, (0, 0), rng.uniform(1, 3))
    return cv2.addWeighted(img, 1 + a, b, -a, 0)


def pixelate(img, rng, pool=None):
    h, w = img.shape[:2]
    f = rng.uniform(4, 14)
    s = cv2.resize(img, (max(1, int(w / f)), max(1, int(h / f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(s, (w, h), interpolation=cv2.INTER_NEAREST)


def jpeg(img, rng, pool=None):
    q = int(rng.integers(20, 91))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def downscale(img, rng, pool=None):
    h, w = img.shape[:2]
    f = rng.uniform(0.15, 0.6)
    s = area_resize(img, w * f, h * f)
    if rng.random() < 0.5:
        return s
    return cv2.resize(s, (w, h), interpolation=cv2.INTER_LINEAR)


EDITS = {
    "crop": (crop, 3.0), "border": (border, 1.0), "letterbox": (letterbox, 1.0),
    "caption": (caption, 1.5), "text": (text_overlay, 1.5), "paste": (paste_photo, 1.0),
    "sticker": (sticker, 1.0), "screenshot": (screenshot, 1.0), "rot90": (rotate90, 1.0),
    "rotsmall": (rotate_small, 1.0), "flip": (flip, 1.5), "colour": (colour, 2.0),
    "grey": (grey, 0.5), "sepia": (sepia, 0.3), "blur": (blur, 1.0), "noise": (noise, 0.7),
    "sharpen": (sharpen, 0.5), "pixelate": (pixelate, 0.5), "jpeg": (jpeg, 1.5),
    "downscale": (downscale, 0.7), "collage": (collage, 0.7),
}
EDIT_NAMES = list(EDITS)
_W = np.array([EDITS[k][1] for k in EDIT_NAMES])
EDIT_P = _W / _W.sum()
# geometric/overlay edits first, then photometric, then compression (a natural order)
ORDER = {k: i for i, k in enumerate(
    ["crop", "rot90", "rotsmall", "flip", "paste", "sticker", "text", "colour", "grey", "sepia",
     "blur", "sharpen", "noise", "pixelate", "collage", "caption", "border", "letterbox",
     "screenshot", "downscale", "jpeg"])}


def random_edits(img, rng, pool, n_min=1, n_max=3):
    n = int(rng.integers(n_min, n_max + 1))
    names = list(rng.choice(EDIT_NAMES, size=n, replace=False, p=EDIT_P))
    names.sort(key=ORDER.get)
    for nm in names:
        img = EDITS[nm][0](img, rng, pool)
    return img, names


MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def preprocess(bgr, size):
    """EXACT model preprocessing: whole image -> size x size (INTER_AREA), BGR->RGB,
    /255, ImageNet mean/std. Returns float32 CHW."""
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    x = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
    x = cv2.cvtColor(x, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))
