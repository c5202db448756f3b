"""A tiny writer of DC-only baseline JPEGs, to craft edge cases byte by byte (tests only)."""
# ruff: noqa: E741, E731, RUF005

from __future__ import annotations

import struct

DC_BITS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
DC_VALS = list(range(12))
AC_BITS = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D]
AC_VALS = bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa"
)


def codes(bits, vals):
    c = {}
    code = 0
    k = 0
    for l in range(1, 17):
        for _ in range(bits[l - 1]):
            c[vals[k]] = (code, l)
            code += 1
            k += 1
        code <<= 1
    return c


def seg(m, payload):
    return bytes([0xFF, m]) + struct.pack(">H", len(payload) + 2) + payload


class BW:
    def __init__(s):
        s.out = bytearray()
        s.acc = 0
        s.n = 0

    def put(s, v, l):
        for i in range(l - 1, -1, -1):
            s.acc = (s.acc << 1) | ((v >> i) & 1)
            s.n += 1
            if s.n == 8:
                s.out.append(s.acc)
                if s.acc == 0xFF:
                    s.out.append(0)
                s.acc = 0
                s.n = 0

    def flush(s):
        while s.n:
            s.put(1, 1)


def make(
    width,
    height,
    comps=((1, 1, 1, 0),),
    scan=None,
    dcfun=None,
    q=(1,),
    q16=False,
    ri=0,
    rstnum=None,
    dc_bits=DC_BITS,
    dc_vals=DC_VALS,
    pre=b"",
    mid=b"",
    sof_extra=b"",
    sos_extra=b"",
    dri_extra=b"",
    sof=0xC0,
    eoi=True,
):
    # comps: (id,h,v,tq); dcfun(ci, bx, by) -> quantised DC value
    dcfun = dcfun or (lambda ci, x, y: (x * 7 + y * 13) % 200 - 100)
    scan = scan if scan is not None else list(range(len(comps)))
    out = bytearray(b"\xff\xd8") + pre
    for t, qv in enumerate(q):
        if q16:
            out += seg(0xDB, bytes([0x10 | t]) + struct.pack(">64H", qv, *[1] * 63))
        else:
            out += seg(0xDB, bytes([t, qv] + [1] * 63))
    out += seg(
        sof,
        bytes([8])
        + struct.pack(">HH", height, width)
        + bytes([len(comps)])
        + b"".join(bytes([i, (h << 4) | v, tq]) for i, h, v, tq in comps)
        + sof_extra,
    )
    out += seg(0xC4, bytes([0x00] + list(dc_bits) + list(dc_vals)))
    out += seg(0xC4, bytes([0x10] + AC_BITS) + AC_VALS)
    if ri:
        out += seg(0xDD, struct.pack(">H", ri) + dri_extra)
    out += mid
    out += seg(
        0xDA,
        bytes([len(scan)])
        + b"".join(bytes([comps[c][0], 0x00]) for c in scan)
        + bytes([0, 63, 0])
        + sos_extra,
    )
    dcc = codes(dc_bits, dc_vals)
    acc = codes(AC_BITS, AC_VALS)
    hmax = max(c[1] for c in comps)
    vmax = max(c[2] for c in comps)
    if len(scan) == 1:
        c = comps[scan[0]]
        cw = -(-width * c[1] // hmax)
        ch = -(-height * c[2] // vmax)
        mx, my = -(-cw // 8), -(-ch // 8)
        blocks = lambda m: [(scan[0], m % mx, m // mx)]
    else:
        mx = -(-width // (8 * hmax))
        my = -(-height // (8 * vmax))

        def blocks(m):
            X, Y = m % mx, m // mx
            r = []
            for ci in scan:
                _, h, v, _ = comps[ci]
                for by in range(v):
                    for bx in range(h):
                        r.append((ci, X * h + bx, Y * v + by))
            return r

    bw = BW()
    pred = {}
    n = 0
    data = bytearray()
    for m in range(mx * my):
        if ri and m and m % ri == 0:
            bw.flush()
            data += bw.out
            bw = BW()
            pred = {}
            num = rstnum(n) if rstnum else n % 8
            n += 1
            data += bytes([0xFF, 0xD0 + num])
        for ci, x, y in blocks(m):
            v = dcfun(ci, x, y)
            d = v - pred.get(ci, 0)
            pred[ci] = v
            s = 0 if d == 0 else abs(d).bit_length()
            code, l = dcc[s]
            bw.put(code, l)
            if s:
                bw.put(d if d > 0 else d + (1 << s) - 1, s)
            code, l = acc[0]
            bw.put(code, l)
    bw.flush()
    data += bw.out
    out += data
    if eoi:
        out += b"\xff\xd9"
    return bytes(out)
