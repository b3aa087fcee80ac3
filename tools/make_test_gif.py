#!/usr/bin/python3
# Writes tests/data/video/anim-3.gif: a 32x32 animated GIF of three frames (a checkerboard,
# two colour halves, a disc), 0.5 s each, in pure Python (no imaging library): LZW with
# a clear code every two pixels, so every code stays 3 bits wide.
#   tools/make_test_gif.py tests/data/video/anim-3.gif
import struct, sys
def lzw_literals(pixels, min_code=2):
    # Every pixel a literal, a clear code every two, so codes stay min_code+1 bits wide.
    clear, eoi, width = 1 << min_code, (1 << min_code) + 1, min_code + 1
    codes = []
    for i, p in enumerate(pixels):
        if i % 2 == 0: codes.append(clear)
        codes.append(p)
    codes.append(eoi)
    bits, nbits, out = 0, 0, bytearray()
    for c in codes:
        bits |= c << nbits; nbits += width
        while nbits >= 8: out.append(bits & 255); bits >>= 8; nbits -= 8
    if nbits: out.append(bits & 255)
    return bytes(out)
def gif(frames, w, h, delay_cs, palette):
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", w, h, 0xF1, 0, 0))  # 4-colour global table
    for c in palette: out += bytes(c)
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for px in frames:
        out += b"\x21\xf9\x04\x00" + struct.pack("<H", delay_cs) + b"\x00\x00"
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0)
        data = lzw_literals(px)
        out += b"\x02"
        for i in range(0, len(data), 255):
            chunk = data[i:i+255]; out += bytes([len(chunk)]) + chunk
        out += b"\x00"
    out += b"\x3b"
    return bytes(out)
w = h = 32
pal = [(0,0,0),(255,255,255),(220,40,40),(40,40,220)]
frames = []
for k in range(3):
    px = []
    for y in range(h):
        for x in range(w):
            if k == 0: v = 1 if (x // 8 + y // 8) % 2 else 0          # checkerboard
            elif k == 1: v = 2 if x < w // 2 else 3                  # halves
            else: v = 1 if (x - w/2)**2 + (y - h/2)**2 < 100 else 0   # disc
            px.append(v)
    frames.append(px)
open(sys.argv[1], "wb").write(gif(frames, w, h, 50, pal))
