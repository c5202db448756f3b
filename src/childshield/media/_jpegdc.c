/*
 * childshield: DC-only decoding of baseline JPEG luma.
 *
 * PDQ of a large photo needs only 8x8 block averages of its luma, which a
 * JPEG stores directly as each block's DC coefficient.  libjpeg at 1/8 scale
 * already skips the inverse DCT, but still spends most of its time in a
 * general Huffman decoder.  This decoder only *skips* AC coefficients: one
 * table lookup per symbol gives the code length plus the number of value bits
 * that follow, so neither the symbol nor its value is ever materialised.
 *
 * The output is defined to be identical to libjpeg's 1/8-scale grayscale
 * output (jpeg_idct_1x1 and its range-limit table), so a file hashes the same
 * whichever decoder ran.  Anything that is not a clean baseline Huffman file
 * with Y first (progressive, arithmetic, 12-bit, CMYK/RGB, odd sampling,
 * damaged data) is refused with ValueError and the caller falls back to
 * Pillow, which then decodes it or reports the damage.
 *
 * Untrusted input: every read is bounds-checked; output writes are bounded by
 * the block grid computed from the header.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define LUT_BITS 10
#define LUT_SIZE (1 << LUT_BITS)
/* Pair table: up to two AC symbols per lookup of the next PAIR_BITS bits. */
#define PAIR_BITS 13
#define PAIR_SIZE (1 << PAIR_BITS)
#define P_VALID (1u << 25)
#define P_HAS2 (1u << 24)
#define P_EOB2 (1u << 23)
#define P_EOB1 (1u << 11)

typedef struct {
    /* Fast table: for codes of <= LUT_BITS bits. len == 0 means "longer code". */
    uint8_t len[LUT_SIZE];
    uint8_t sym[LUT_SIZE];
    /* AC skipping: bits 0-5 code length plus value bits, bits 6-11 coefficients
     * advanced, bit 12 end of block; 0 means "decode the slow way". */
    uint16_t skip[LUT_SIZE];
    /* bits 0-5 bits of symbol 1 (code + value), 6-10 its advance, 11 its EOB;
     * 12-17 bits of both, 18-22 advance of symbol 2, 23 its EOB, 24 "two". */
    uint32_t pair[PAIR_SIZE];
    /* Canonical decoding for longer codes. */
    int32_t maxcode[18];
    int32_t valptr[17];
    uint8_t huffval[256];
    int nvals;
    int defined;
} huff_t;

typedef struct {
    const uint8_t *p, *end;
    uint64_t buf;
    int bits;
    int pad_bits;  /* zero bits appended past the data (a marker or the end) */
    int at_marker;
} reader_t;

typedef struct {
    int id, h, v, tq;
    int dc_tbl, ac_tbl, in_scan;
} comp_t;

static void fill(reader_t *r) {
    /* Fast path: the next 8 bytes hold no 0xFF, so no stuffing and no marker. */
    if (!r->at_marker && r->end - r->p >= 8) {
        uint64_t x;
        memcpy(&x, r->p, 8);
        uint64_t inv = ~x;
        if (!((inv - 0x0101010101010101ULL) & ~inv & 0x8080808080808080ULL)) {
            x = __builtin_bswap64(x);
            int n = (63 - r->bits) >> 3;
            r->buf |= x >> r->bits; /* bytes past n are real data too and are re-added later */
            r->p += n;
            r->bits += n * 8;
            return;
        }
    }
    while (r->bits <= 56) {
        unsigned c = 0;
        if (!r->at_marker && r->p < r->end) {
            c = *r->p;
            if (c == 0xFF) {
                unsigned n = (r->p + 1 < r->end) ? r->p[1] : 0x100;
                if (n == 0x00) {
                    r->p += 2;
                } else {
                    r->at_marker = 1; /* leave the marker for the caller */
                    c = 0;
                    r->pad_bits += 8;
                }
            } else {
                r->p++;
            }
        } else {
            r->at_marker = 1;
            r->pad_bits += 8;
        }
        r->buf |= (uint64_t)c << (56 - r->bits);
        r->bits += 8;
    }
}

static inline void drop(reader_t *r, int n) {
    r->buf <<= n;
    r->bits -= n;
}

/* Did decoding consume bits that were not in the file? */
static inline int overran(const reader_t *r) {
    return r->pad_bits > r->bits;
}

/* At the end of an entropy-coded segment: only the padding of the last byte
 * may be left, and the next thing in the file must be a marker. */
static int segment_ends_cleanly(reader_t *r) {
    fill(r);
    if (!r->at_marker || overran(r)) return 0;
    return r->bits - r->pad_bits < 8;
}

/* Canonical decode of a code at the top of a `width`-bit value; returns length or 0. */
static int peek_code(const huff_t *h, unsigned value, int width, int *sym) {
    for (int l = 1; l <= width && l <= 16; l++) {
        int32_t code = (int32_t)(value >> (width - l));
        if (h->maxcode[l] >= 0 && code <= h->maxcode[l]) {
            int i = h->valptr[l] + code;
            if (i < 0 || i > 255) return 0;
            *sym = h->huffval[i];
            return l;
        }
    }
    return 0;
}

static void symbol_effect(int sym, int *valbits, int *adv, int *eob) {
    int sz = sym & 15, run = sym >> 4;
    *valbits = sz;
    *eob = 0;
    if (sz) *adv = run + 1;
    else if (run == 15) *adv = 16;
    else { *adv = 0; *eob = 1; }
}

static void build_pairs(huff_t *h) {
    for (unsigned idx = 0; idx < PAIR_SIZE; idx++) {
        int sym1, sym2;
        int l1 = peek_code(h, idx, PAIR_BITS, &sym1);
        if (!l1) { h->pair[idx] = 0; continue; }
        int v1, a1, e1;
        symbol_effect(sym1, &v1, &a1, &e1);
        int b1 = l1 + v1;
        uint32_t e = P_VALID | (uint32_t)b1 | ((uint32_t)a1 << 6) | (e1 ? P_EOB1 : 0);
        if (!e1 && b1 < PAIR_BITS) {
            int rest = PAIR_BITS - b1;
            int l2 = peek_code(h, idx & ((1u << rest) - 1), rest, &sym2);
            if (l2) {
                int v2, a2, e2;
                symbol_effect(sym2, &v2, &a2, &e2);
                e |= P_HAS2 | ((uint32_t)(b1 + l2 + v2) << 12) | ((uint32_t)a2 << 18) | (e2 ? P_EOB2 : 0);
            }
        }
        h->pair[idx] = e;
    }
}

static int build_huff(huff_t *h, const uint8_t counts[16], const uint8_t *vals, int nvals) {
    int code = 0, k = 0;
    memset(h->len, 0, sizeof(h->len));
    memset(h->skip, 0, sizeof(h->skip));
    memcpy(h->huffval, vals, (size_t)nvals);
    h->nvals = nvals;
    for (int l = 1; l <= 16; l++) {
        int n = counts[l - 1];
        h->valptr[l] = k;
        if (n == 0) {
            h->maxcode[l] = -1;
        } else {
            for (int i = 0; i < n; i++, k++, code++) {
                if (l <= LUT_BITS) {
                    int shift = LUT_BITS - l;
                    int first = code << shift;
                    for (int j = 0; j < (1 << shift); j++) {
                        if (first + j >= LUT_SIZE) return -1;
                        h->len[first + j] = (uint8_t)l;
                        h->sym[first + j] = vals[k];
                        int sz = vals[k] & 15, run = vals[k] >> 4;
                        uint16_t e;
                        if (sz) e = (uint16_t)((l + sz) | ((run + 1) << 6));
                        else if (run == 15) e = (uint16_t)(l | (16 << 6));
                        else e = (uint16_t)(l | (1 << 12));
                        h->skip[first + j] = e;
                    }
                }
            }
            h->maxcode[l] = code - 1;
            h->valptr[l] -= code - n; /* valptr + code gives the index */
        }
        if (code >= (1 << l)) return -1; /* over-subscribed, or an all-ones code: libjpeg refuses both */
        code <<= 1;
    }
    h->maxcode[17] = 0x7FFFFFFF;
    h->defined = 1;
    build_pairs(h);
    return 0;
}

/* Decode one Huffman symbol; returns -1 on a bad code. */
static inline int decode_sym(reader_t *r, const huff_t *h) {
    if (r->bits < 32) fill(r);
    unsigned idx = (unsigned)(r->buf >> (64 - LUT_BITS));
    int l = h->len[idx];
    if (l) {
        drop(r, l);
        return h->sym[idx];
    }
    for (l = LUT_BITS + 1; l <= 16; l++) {
        int32_t code = (int32_t)(r->buf >> (64 - l));
        if (code <= h->maxcode[l]) {
            int i = h->valptr[l] + code;
            drop(r, l);
            if (i < 0 || i > 255) return -1;
            return h->huffval[i];
        }
    }
    return -1;
}

static inline int receive_extend(reader_t *r, int s) {
    if (s == 0) return 0;
    if (r->bits < 32) fill(r);
    int v = (int)(r->buf >> (64 - s));
    drop(r, s);
    if (v < (1 << (s - 1))) v -= (1 << s) - 1;
    return v;
}

/* Skip the 63 AC coefficients of a block. Returns 0, or -1 on corrupt data. */
static inline int skip_ac(reader_t *r, const huff_t *h) {
    int k = 1;
    while (k < 64) {
        if (r->bits < 32) fill(r);
        uint32_t e = h->pair[(unsigned)(r->buf >> (64 - PAIR_BITS))];
        if (e) {
            if (e & P_EOB1) {
                drop(r, (int)(e & 63));
                break;
            }
            int a1 = (int)((e >> 6) & 31);
            if ((e & P_HAS2) && k + a1 < 64) {
                drop(r, (int)((e >> 12) & 63));
                k += a1 + (int)((e >> 18) & 31);
                if (e & P_EOB2) break;
            } else {
                drop(r, (int)(e & 63));
                k += a1;
            }
            continue;
        }
        int sym = decode_sym(r, h);
        if (sym < 0) return -1;
        int s = sym & 15, run = sym >> 4;
        if (s) {
            drop(r, s); /* value bits: never needed */
            k += run + 1;
        } else if (run == 15) {
            k += 16;
        } else {
            break; /* EOB */
        }
    }
    return k > 64 ? -1 : 0;
}

static inline unsigned range_limit(int x) {
    /* libjpeg's post-IDCT range-limit table, indexed by (x & 1023). */
    int i = x & 1023;
    if (i < 128) return (unsigned)(128 + i);
    if (i < 512) return 255;
    if (i < 896) return 0;
    return (unsigned)(i - 896);
}

static int read_u16(const uint8_t *p) { return (p[0] << 8) | p[1]; }

static PyObject *refuse(const char *why) {
    PyErr_SetString(PyExc_ValueError, why);
    return NULL;
}

/* Variable shifts dominate the loop; BMI2 (x86-64-v3) makes them single instructions. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FAST_CLONES __attribute__((target_clones("default", "arch=x86-64-v3")))
#else
#define FAST_CLONES
#endif

/* dc_luma(data) -> (bytes, width, height, plane_width, plane_height) */
FAST_CLONES
static PyObject *py_dc_luma(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    const uint8_t *data = (const uint8_t *)view.buf;
    const uint8_t *end = data + view.len;
    const uint8_t *p = data;
    huff_t *tables = NULL; /* 0-3 DC, 4-7 AC */
    uint8_t *plane = NULL;
    PyObject *result = NULL;
    const char *why = NULL;
    int qt[4] = {-1, -1, -1, -1};
    comp_t comps[4];
    memset(comps, 0, sizeof(comps));
    int ncomp = 0, width = 0, height = 0, restart = 0, adobe_rgb = 0, have_frame = 0;
    int hmax = 1, vmax = 1;

    tables = (huff_t *)PyMem_Calloc(8, sizeof(huff_t));
    if (!tables) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    /* Pillow (libjpeg's front end here) insists on FF D8 FF: a file it refuses is refused here too. */
    if (view.len < 4 || data[0] != 0xFF || data[1] != 0xD8 || data[2] != 0xFF) {
        why = "not a JPEG";
        goto out;
    }
    p = data + 2;
    for (;;) {
        while (p < end && *p != 0xFF) p++; /* tolerate junk between segments like libjpeg */
        while (p < end && *p == 0xFF) p++;
        if (p >= end) { why = "no scan"; goto out; }
        int marker = *p++;
        /* FF 00 between segments is junk to libjpeg, not a marker with a length. */
        if (marker == 0x00 || marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7)) continue;
        /* Pillow's header parser refuses markers below C0 (TEM and the reserved ones): so do we. */
        if (marker < 0xC0) { why = "unknown marker"; goto out; }
        if (marker == 0xD9) { why = "no scan"; goto out; }
        if (end - p < 2) { why = "truncated header"; goto out; }
        int len = read_u16(p);
        if (len < 2 || end - p < len) { why = "truncated header"; goto out; }
        const uint8_t *seg = p + 2;
        int seglen = len - 2;
        p += len;
        switch (marker) {
        case 0xC0:
        case 0xC1: {
            if (have_frame || seglen < 6 || seg[0] != 8) { why = "unsupported frame"; goto out; }
            height = read_u16(seg + 1);
            width = read_u16(seg + 3);
            ncomp = seg[5];
            if (height == 0 || width == 0 || (ncomp != 1 && ncomp != 3) || seglen != 6 + 3 * ncomp) {
                why = "unsupported frame";
                goto out;
            }
            for (int i = 0; i < ncomp; i++) {
                const uint8_t *c = seg + 6 + 3 * i;
                comps[i].id = c[0];
                comps[i].h = c[1] >> 4;
                comps[i].v = c[1] & 15;
                comps[i].tq = c[2];
                comps[i].in_scan = 0;
                if (comps[i].h < 1 || comps[i].h > 4 || comps[i].v < 1 || comps[i].v > 4 || comps[i].tq > 3) {
                    why = "bad sampling";
                    goto out;
                }
                for (int j = 0; j < i; j++)
                    if (comps[j].id == comps[i].id) { why = "duplicate component id"; goto out; }
                if (comps[i].h > hmax) hmax = comps[i].h;
                if (comps[i].v > vmax) vmax = comps[i].v;
            }
            if (comps[0].h != hmax || comps[0].v != vmax) { why = "luma is subsampled"; goto out; }
            if (ncomp == 3 && comps[0].id == 'R' && comps[1].id == 'G' && comps[2].id == 'B') {
                why = "RGB JPEG";
                goto out;
            }
            have_frame = 1;
            break;
        }
        case 0xC2: case 0xC3: case 0xC5: case 0xC6: case 0xC7:
        case 0xC9: case 0xCA: case 0xCB: case 0xCD: case 0xCE: case 0xCF:
            why = "not baseline";
            goto out;
        case 0xC4: { /* DHT */
            const uint8_t *q = seg, *qend = seg + seglen;
            while (q < qend) {
                if (qend - q < 17) { why = "bad DHT"; goto out; }
                int tc = q[0] >> 4, th = q[0] & 15;
                if (tc > 1 || th > 3) { why = "bad DHT"; goto out; }
                int total = 0;
                for (int i = 0; i < 16; i++) total += q[1 + i];
                if (total > 256 || qend - q < 17 + total) { why = "bad DHT"; goto out; }
                if (build_huff(&tables[tc * 4 + th], q + 1, q + 17, total) != 0) { why = "bad DHT"; goto out; }
                q += 17 + total;
            }
            break;
        }
        case 0xDB: { /* DQT: only the DC step of each table is needed */
            const uint8_t *q = seg, *qend = seg + seglen;
            while (q < qend) {
                int pq = q[0] >> 4, tq = q[0] & 15;
                int size = pq ? 129 : 65;
                if (pq > 1 || tq > 3 || qend - q < size) { why = "bad DQT"; goto out; }
                qt[tq] = pq ? read_u16(q + 1) : q[1];
                q += size;
            }
            break;
        }
        case 0xDD:
            if (seglen != 2) { why = "bad DRI"; goto out; }
            restart = read_u16(seg);
            break;
        case 0xEE: /* Adobe: transform 0 on 3 components means RGB, not YCbCr */
            if (seglen >= 12 && memcmp(seg, "Adobe", 5) == 0 && seg[11] == 0 && ncomp != 1) adobe_rgb = 1;
            break;
        case 0xDA: { /* SOS: decode this first scan */
            if (!have_frame) { why = "scan before frame"; goto out; }
            if (adobe_rgb && ncomp == 3) { why = "RGB JPEG"; goto out; }
            if (seglen < 1) { why = "bad SOS"; goto out; }
            int ns = seg[0];
            if (ns < 1 || ns > ncomp || seglen != 4 + 2 * ns) { why = "bad SOS"; goto out; }
            int order[4];
            for (int i = 0; i < ns; i++) {
                int cs = seg[1 + 2 * i], t = seg[2 + 2 * i];
                int found = -1;
                for (int c = 0; c < ncomp; c++)
                    if (comps[c].id == cs && !comps[c].in_scan) found = c;
                if (found < 0) { why = "bad SOS"; goto out; }
                comps[found].in_scan = 1;
                comps[found].dc_tbl = t >> 4;
                comps[found].ac_tbl = t & 15;
                if (comps[found].dc_tbl > 3 || comps[found].ac_tbl > 3 ||
                    !tables[comps[found].dc_tbl].defined || !tables[4 + comps[found].ac_tbl].defined) {
                    why = "missing Huffman table";
                    goto out;
                }
                order[i] = found;
            }
            const uint8_t *tail = seg + 1 + 2 * ns;
            if (tail[0] != 0 || tail[1] != 63 || tail[2] != 0) { why = "not baseline"; goto out; }
            if (!comps[0].in_scan) { why = "luma not in first scan"; goto out; }
            if (ns > 1) { /* libjpeg's limit on blocks in one MCU */
                int blocks = 0;
                for (int i = 0; i < ns; i++) blocks += comps[order[i]].h * comps[order[i]].v;
                if (blocks > 10) { why = "too many blocks per MCU"; goto out; }
            }
            for (int c = 0; c < ncomp; c++) /* libjpeg refuses a frame with any table missing */
                if (qt[comps[c].tq] < 0) { why = "missing quantisation table"; goto out; }
            for (int i = 0; i < ns; i++) { /* ... and DC tables with symbols above 15 */
                const huff_t *dct = &tables[comps[order[i]].dc_tbl];
                for (int v = 0; v < 256; v++)
                    if (dct->huffval[v] > 15 && v < dct->nvals) { why = "bad DC table"; goto out; }
            }
            const int q0 = qt[comps[0].tq];

            /* Block grid of the luma plane (luma is never subsampled here). */
            const int bw = (width + 7) / 8, bh = (height + 7) / 8;
            int mcux, mcuy;
            if (ns == 1) {
                mcux = bw;
                mcuy = bh;
            } else {
                mcux = (width + 8 * hmax - 1) / (8 * hmax);
                mcuy = (height + 8 * vmax - 1) / (8 * vmax);
            }
            plane = (uint8_t *)PyMem_Malloc((size_t)bw * (size_t)bh);
            if (!plane) {
                PyErr_NoMemory();
                goto out;
            }
            reader_t r = {p, end, 0, 0, 0, 0};
            int pred[4] = {0, 0, 0, 0};
            long mcus_left = restart;
            int next_rst = 0;
            const long nmcu = (long)mcux * mcuy;
            for (long m = 0; m < nmcu; m++) {
                if (restart && mcus_left == 0) {
                    /* Expect RSTn right after the data of the last interval. */
                    if (!segment_ends_cleanly(&r)) { why = "damaged restart interval"; goto out; }
                    r.buf = 0;
                    r.bits = 0;
                    r.pad_bits = 0;
                    while (r.p + 1 < r.end && r.p[0] == 0xFF && r.p[1] == 0xFF) r.p++; /* fill bytes */
                    if (r.p + 1 >= r.end || r.p[0] != 0xFF || r.p[1] != 0xD0 + next_rst) {
                        why = "missing restart marker";
                        goto out;
                    }
                    r.p += 2;
                    r.at_marker = 0;
                    memset(pred, 0, sizeof(pred));
                    mcus_left = restart;
                    next_rst = (next_rst + 1) & 7; /* out-of-sequence markers make libjpeg resync */
                }
                if (restart) mcus_left--;
                const long mx = m % mcux, my = m / mcux;
                for (int si = 0; si < ns; si++) {
                    const int c = order[si];
                    const comp_t *cp = &comps[c];
                    const huff_t *dct = &tables[cp->dc_tbl];
                    const huff_t *act = &tables[4 + cp->ac_tbl];
                    const int nh = ns == 1 ? 1 : cp->h, nv = ns == 1 ? 1 : cp->v;
                    for (int by = 0; by < nv; by++) {
                        for (int bx = 0; bx < nh; bx++) {
                            int s = decode_sym(&r, dct);
                            if (s < 0 || s > 11) { why = "corrupt data"; goto out; }
                            int diff = receive_extend(&r, s);
                            /* As libjpeg: the predictor wraps, the stored coefficient is 16-bit. */
                            pred[c] = (int)((unsigned)pred[c] + (unsigned)diff);
                            if (skip_ac(&r, act) != 0) { why = "corrupt data"; goto out; }
                            if (c == 0) {
                                long x = ns == 1 ? mx : mx * cp->h + bx;
                                long y = ns == 1 ? my : my * cp->v + by;
                                if (x < bw && y < bh) {
                                    int dc = (int)(int16_t)pred[0] * q0;
                                    plane[y * bw + x] = (uint8_t)range_limit((dc + 4) >> 3);
                                }
                            }
                        }
                    }
                }
                /* Data ran out (zeros are being fed): stop now rather than decode padding. */
                if (overran(&r)) { why = "truncated data"; goto out; }
            }
            if (!segment_ends_cleanly(&r)) { why = "truncated or damaged data"; goto out; }
            { /* Pillow reports a file without its end-of-image marker as truncated: do the same. */
                const uint8_t *q = r.p;
                int eoi = 0;
                while (q + 1 < end && !eoi) {
                    const uint8_t *ff = memchr(q, 0xFF, (size_t)(end - q - 1));
                    if (!ff) break;
                    eoi = ff[1] == 0xD9;
                    q = ff + 1;
                }
                if (!eoi) { why = "no end-of-image marker"; goto out; }
            }
            PyObject *bytes = PyBytes_FromStringAndSize((const char *)plane, (Py_ssize_t)bw * bh);
            if (!bytes) goto out;
            result = Py_BuildValue("(Niiii)", bytes, width, height, bw, bh);
            goto out;
        }
        default:
            break; /* APPn, COM, DNL...: skipped */
        }
    }
out:
    if (!result && why && !PyErr_Occurred()) refuse(why);
    PyMem_Free(plane);
    PyMem_Free(tables);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"dc_luma", py_dc_luma, METH_VARARGS,
     "dc_luma(data) -> (plane, width, height, plane_width, plane_height): 1/8-scale luma of a baseline JPEG."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegdc", "DC-only baseline JPEG luma decoder.", -1, methods,
};

PyMODINIT_FUNC PyInit__jpegdc(void) { return PyModule_Create(&module); }
