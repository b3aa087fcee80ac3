#!/usr/bin/python3
"""Regenerates tests/data/bad/: the hostile and odd inputs that tests/test_bad_inputs.cpp
feeds to the real binary (docs/SECURITY.md). The files are committed, so CI needs neither
Python nor this script; run it again only to change the corpus:

    /usr/bin/python3 tools/make_bad_inputs.py      # Debian's python3 (python3-opencv, -pil)

Deterministic: the same files come out every time. Cases that git cannot carry (symlink
loops, unreadable files, non-UTF-8 names) are made by the test itself at run time.
"""
import io
import os
import shutil
import struct
import sys
import zlib

import cv2
import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "bad")
HASH = "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22"


def photo(w=96, h=64):
    """A textured BGR picture with enough gradient energy for a trusted PDQ quality."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:h, 0:w]
    base = (128 + 60 * np.sin(x / 5.0) + 50 * np.cos(y / 7.0)).astype(np.float32)
    img = np.stack([base, np.roll(base, 9, axis=1), 255 - base], axis=2)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def put(name, data):
    with open(os.path.join(ROOT, name), "wb") as f:
        f.write(data)


def enc(ext, img, params=()):
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(w, h):
    """A valid PNG header declaring w x h grey pixels, a little compressed data, IEND:
    a few hundred bytes that would decode to w*h bytes."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + w) * 8, 9)  # eight rows of zeros
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def jpeg_with_sof_size(jpeg, w, h):
    """The same JPEG with its SOF0 frame header claiming another size."""
    b = bytearray(jpeg)
    i = b.find(b"\xff\xc0")
    assert i > 0
    struct.pack_into(">HH", b, i + 5, h, w)
    return bytes(b)


def exif_jpeg(jpeg, tiff_payload):
    """Inserts an APP1 Exif segment with the given TIFF payload after SOI."""
    body = b"Exif\0\0" + tiff_payload
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def tiff_orientation(value, ifd_offset=8, count=1):
    head = b"II*\0" + struct.pack("<I", ifd_offset)
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, value, 0)
    return head + struct.pack("<H", count) + entry + b"\0\0\0\0"


def tiff_bomb(w, h):
    """An uncompressed grey TIFF header declaring w x h pixels (under OpenCV's own 2^30
    limit) with one strip of 64 bytes behind it."""
    tags = [(256, 4, w), (257, 4, h), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0),
            (277, 3, 1), (278, 4, h), (279, 4, w * h)]
    ifd_size = 2 + 12 * len(tags) + 4
    data_at = 8 + ifd_size
    out = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(tags))
    for tag, typ, val in tags:
        if tag == 273:
            val = data_at
        out += struct.pack("<HHI", tag, typ, 1) + (struct.pack("<HH", val, 0) if typ == 3 else struct.pack("<I", val))
    return out + b"\0\0\0\0" + b"\x80" * 64


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT)
    img = photo()
    jpeg = enc(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    png = enc(".png", img)

    # Truncated files at many offsets: every cut must be refused, never padded with grey.
    for cut in (1, 2, 3, 20, 150, len(jpeg) // 2, len(jpeg) - 2, len(jpeg) - 1):
        put(f"truncated-at-{cut:05d}.jpg", jpeg[:cut])
    for cut in (8, 20, 33, 60, len(png) // 2, len(png) - 12, len(png) - 1):
        put(f"truncated-at-{cut:05d}.png", png[:cut])

    # Zero bytes, text, and formats behind the wrong extension (decided by magic bytes).
    put("empty.jpg", b"")
    put("text.jpg", b"this is not a picture\n")
    put("png-named.jpg", png)
    put("jpeg-named.png", jpeg)
    put("jpeg-named.txt", jpeg)

    # Decompression bombs: refused from the header, before any pixel is allocated.
    put("bomb-100000x100000.png", png_bomb(100000, 100000))
    put("bomb-65000x65000.jpg", jpeg_with_sof_size(jpeg, 65000, 65000))
    put("bomb-30000x30000.tif", tiff_bomb(30000, 30000))

    # Odd but valid pixel layouts: each must hash.
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    put("grey-16bit.png", enc(".png", grey.astype(np.uint16) * 257))
    put("rgb-16bit.png", enc(".png", img.astype(np.uint16) * 257))
    bgra = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 128
    put("alpha.png", enc(".png", bgra))
    pil = Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    buf = io.BytesIO()
    pil.quantize(64).save(buf, "PNG")
    put("palette.png", buf.getvalue())
    buf = io.BytesIO()
    pil.convert("CMYK").save(buf, "JPEG", quality=90)
    put("cmyk.jpg", buf.getvalue())
    put("1x1.png", enc(".png", img[:1, :1]))
    put("1x1.jpg", enc(".jpg", img[:1, :1]))
    put("4x4.png", enc(".png", img[:4, :4]))

    # Animation: a GIF is hashed from its first frame; animated WebP is refused by name.
    frames = [Image.fromarray(cv2.cvtColor(np.roll(img, 8 * k, axis=1), cv2.COLOR_BGR2RGB)) for k in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    put("animated.gif", buf.getvalue())
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0)
    put("animated.webp", buf.getvalue())

    # EXIF: absurd orientation values and offsets are ignored (orientation 1), not trusted.
    put("exif-orientation-0.jpg", exif_jpeg(jpeg, tiff_orientation(0)))
    put("exif-orientation-9.jpg", exif_jpeg(jpeg, tiff_orientation(9)))
    put("exif-orientation-65535.jpg", exif_jpeg(jpeg, tiff_orientation(65535)))
    put("exif-ifd-offset-past-end.jpg", exif_jpeg(jpeg, tiff_orientation(6, ifd_offset=0xFFFFFFF0)))
    put("exif-ifd-count-65535.jpg", exif_jpeg(jpeg, tiff_orientation(6, count=65535)))

    # Hash lists. The valid ones hold HASH (and its neighbour) so results can be checked.
    other = HASH[:-1] + "3"
    put("list-wrong-length.hex", (HASH + "\n" + HASH[:63] + "\n" + HASH + "0\n").encode())
    put("list-non-hex.hex", (HASH + "\n" + HASH[:10] + "g" + HASH[11:] + "\n").encode())
    put("list-0x-prefix.hex", ("0x" + HASH + "\n").encode())
    put("list-crlf.hex", (HASH + "\r\n" + other + "\r\n").encode())
    put("list-bom.hex", ("\ufeff" + HASH + "\n" + other + "\n").encode("utf-8"))
    put("list-duplicates.hex", (HASH + "\n" + HASH + "\n" + other + "\n" + HASH.upper() + "\n").encode())
    put("list-utf16.hex", (HASH + "\n").encode("utf-16"))
    put("list-binary.hex", bytes(range(256)))
    put("list-crlf-bom.csv", ("\ufeff" + HASH + ",100,a.jpg\r\n" + other + ",80,b,c.jpg\r\n").encode("utf-8"))
    put("list-bad-quality.csv", (HASH + ",101,a.jpg\n" + other + ",-1,b.jpg\n").encode())
    put("list-wrong-type.hma", ("md5 " + HASH[:32] + "\npdq " + HASH + "\n").encode())

    total = sum(os.path.getsize(os.path.join(ROOT, f)) for f in os.listdir(ROOT))
    print(f"{len(os.listdir(ROOT))} files, {total} bytes in {os.path.normpath(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
