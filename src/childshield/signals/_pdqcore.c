/*
 * childshield PDQ core: the float work of PDQ (luma, Jarosz tent filter,
 * decimation, quality metric and the 64->16 DCT).
 *
 * Every floating-point operation is done in the same order and precision as
 * Meta's reference implementation, so identical pixels give identical bits.
 * What differs is the memory order: the box filter runs many independent
 * running sums side by side (one per row or column) so the compiler can
 * vectorise across them; each running sum still sees its additions and
 * subtractions in the reference order.  Build with -ffp-contract=off so no
 * multiply-add is fused (the reference is built without FMA).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PDQ_MIN_DIM 5
/* Sides beyond this are refused before any size arithmetic, so products cannot overflow. */
#define PDQ_MAX_SIDE (1 << 20)
#define PDQ_PI 3.14159265358979323846

static float dct_matrix[16][64];

static void build_dct_matrix(void) {
    const float scale = (float)sqrt(2.0 / 64.0);
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 64; j++) {
            double angle = (PDQ_PI / 2.0 / 64.0) * (double)(i + 1) * (double)(2 * j + 1);
            dct_matrix[i][j] = (float)(scale * cos(angle));
        }
    }
}

/*
 * One box-filter pass over `nlanes` independent vectors of length `n`.
 * Element t of lane l lives at base[t * step + l * lane_stride].
 * Window handling follows the reference's four phases: grow without output,
 * grow with output, slide, shrink.
 */
static void box_pass(const float *in, float *out, float *sums, int n, int nlanes,
                     Py_ssize_t step, Py_ssize_t lane_stride, int window) {
    int half = (window + 2) / 2;
    int p1 = half - 1;
    int p2 = window - half + 1;
    int p3 = n - window;
    int p4 = half - 1;
    int ri = 0, li = 0, oi = 0, cw = 0;

    for (int l = 0; l < nlanes; l++) sums[l] = 0.0f;

    for (int r = 0; r < p1; r++, ri++) {
        const float *src = in + (Py_ssize_t)ri * step;
        for (int l = 0; l < nlanes; l++) sums[l] += src[l * lane_stride];
        cw++;
    }
    for (int r = 0; r < p2; r++, ri++, oi++) {
        const float *src = in + (Py_ssize_t)ri * step;
        float *dst = out + (Py_ssize_t)oi * step;
        cw++;
        const float fcw = (float)cw;
        for (int l = 0; l < nlanes; l++) {
            sums[l] += src[l * lane_stride];
            dst[l * lane_stride] = sums[l] / fcw;
        }
    }
    {
        const float fcw = (float)cw;
        for (int r = 0; r < p3; r++, ri++, li++, oi++) {
            const float *add = in + (Py_ssize_t)ri * step;
            const float *sub = in + (Py_ssize_t)li * step;
            float *dst = out + (Py_ssize_t)oi * step;
            for (int l = 0; l < nlanes; l++) {
                sums[l] += add[l * lane_stride];
                sums[l] -= sub[l * lane_stride];
                dst[l * lane_stride] = sums[l] / fcw;
            }
        }
    }
    for (int r = 0; r < p4; r++, li++, oi++) {
        const float *sub = in + (Py_ssize_t)li * step;
        float *dst = out + (Py_ssize_t)oi * step;
        cw--;
        const float fcw = (float)cw;
        for (int l = 0; l < nlanes; l++) {
            sums[l] -= sub[l * lane_stride];
            dst[l * lane_stride] = sums[l] / fcw;
        }
    }
}

/* Horizontal pass: run along each row.  Rows are handled in blocks and each
 * block is transposed into a scratch buffer, so the running sums are
 * contiguous lanes and the inner loop vectorises. */
static void box_rows(const float *in, float *out, float *scratch_in, float *scratch_out,
                     float *sums, int rows, int cols, int window, int block) {
    for (int r0 = 0; r0 < rows; r0 += block) {
        int nb = rows - r0 < block ? rows - r0 : block;
        for (int c = 0; c < cols; c++)
            for (int b = 0; b < nb; b++)
                scratch_in[(Py_ssize_t)c * nb + b] = in[(Py_ssize_t)(r0 + b) * cols + c];
        box_pass(scratch_in, scratch_out, sums, cols, nb, nb, 1, window);
        for (int b = 0; b < nb; b++)
            for (int c = 0; c < cols; c++)
                out[(Py_ssize_t)(r0 + b) * cols + c] = scratch_out[(Py_ssize_t)c * nb + b];
    }
}

static int jarosz_window(int old_dim) {
    return (old_dim + 2 * 64 - 1) / (2 * 64);
}

static int quality_metric(float a[64][64]) {
    int gradient_sum = 0;
    for (int i = 0; i < 63; i++) {
        for (int j = 0; j < 64; j++) {
            int d = (int)(((a[i][j] - a[i + 1][j]) * 100.0f) / 255.0f);
            gradient_sum += abs(d);
        }
    }
    for (int i = 0; i < 64; i++) {
        for (int j = 0; j < 63; j++) {
            int d = (int)(((a[i][j] - a[i][j + 1]) * 100.0f) / 255.0f);
            gradient_sum += abs(d);
        }
    }
    int quality = gradient_sum / 90;
    return quality > 100 ? 100 : quality;
}

/* B = D A D^T, each sum taken over k in increasing order as the reference. */
static void dct_64_to_16(float a[64][64], float out[16][16]) {
    float t[16][64];
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 64; j++) t[i][j] = 0.0f;
        for (int k = 0; k < 64; k++) {
            const float d = dct_matrix[i][k];
            for (int j = 0; j < 64; j++) {
                float p = d * a[k][j];
                t[i][j] += p;
            }
        }
    }
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 16; j++) {
            float s = 0.0f;
            for (int k = 0; k < 64; k++) {
                float p = t[i][k] * dct_matrix[j][k];
                s += p;
            }
            out[i][j] = s;
        }
    }
}

/* luma: rows x cols float32, filtered in place (it is the caller's copy). */
static int pdq_from_luma(float *luma, int rows, int cols, float out[16][16], int *quality) {
    float a[64][64];
    if (rows == 64 && cols == 64) {
        memcpy(a, luma, sizeof(a));
    } else {
        const int wr = jarosz_window(cols);
        const int wc = jarosz_window(rows);
        const int block = 64;
        Py_ssize_t n = (Py_ssize_t)rows * cols;
        int maxdim = rows > cols ? rows : cols;
        float *tmp = (float *)malloc(sizeof(float) * (size_t)n);
        float *scr_in = (float *)malloc(sizeof(float) * (size_t)cols * block);
        float *scr_out = (float *)malloc(sizeof(float) * (size_t)cols * block);
        float *sums = (float *)malloc(sizeof(float) * (size_t)(maxdim > block ? maxdim : block));
        if (!tmp || !scr_in || !scr_out || !sums) {
            free(tmp); free(scr_in); free(scr_out); free(sums);
            return -1;
        }
        for (int rep = 0; rep < 2; rep++) {
            box_rows(luma, tmp, scr_in, scr_out, sums, rows, cols, wr, block);
            box_pass(tmp, luma, sums, rows, cols, cols, 1, wc);
        }
        free(tmp); free(scr_in); free(scr_out); free(sums);
        for (int i = 0; i < 64; i++) {
            int si = (int)(((i + 0.5) * rows) / 64);
            for (int j = 0; j < 64; j++) {
                int sj = (int)(((j + 0.5) * cols) / 64);
                a[i][j] = luma[(Py_ssize_t)si * cols + sj];
            }
        }
    }
    *quality = quality_metric(a);
    dct_64_to_16(a, out);
    return 0;
}

/* dct16(luma: float32 buffer, rows, cols) -> (bytes of 256 float32, quality)
 * The buffer is copied, never written. */
static PyObject *py_dct16(PyObject *self, PyObject *args) {
    Py_buffer view;
    int rows, cols;
    if (!PyArg_ParseTuple(args, "y*ii", &view, &rows, &cols)) return NULL;
    if (rows < PDQ_MIN_DIM || cols < PDQ_MIN_DIM || rows > PDQ_MAX_SIDE || cols > PDQ_MAX_SIDE) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "image size out of range for PDQ");
        return NULL;
    }
    if (view.len != (Py_ssize_t)rows * cols * (Py_ssize_t)sizeof(float)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "buffer size does not match rows*cols float32");
        return NULL;
    }
    float *luma = (float *)malloc((size_t)view.len);
    if (!luma) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    memcpy(luma, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);

    float out[16][16];
    int quality = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pdq_from_luma(luma, rows, cols, out, &quality);
    Py_END_ALLOW_THREADS
    free(luma);
    if (rc != 0) return PyErr_NoMemory();
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)out, sizeof(out));
    if (!bytes) return NULL;
    return Py_BuildValue("(Ni)", bytes, quality);
}

/* luma_from_rgb(pixels: uint8 buffer rows x cols x channels, rows, cols, channels)
 * -> bytes of rows*cols float32.  Computed in double and rounded to float, as
 * the pdqhash binding does with NumPy: (r*0.299 + g*0.587) + b*0.114. */
static PyObject *py_luma_from_rgb(PyObject *self, PyObject *args) {
    Py_buffer view;
    int rows, cols, channels;
    if (!PyArg_ParseTuple(args, "y*iii", &view, &rows, &cols, &channels)) return NULL;
    if (channels < 3 || channels > 16 || rows < 0 || cols < 0 || rows > PDQ_MAX_SIDE || cols > PDQ_MAX_SIDE ||
        view.len != (Py_ssize_t)rows * cols * channels) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "buffer size does not match rows*cols*channels uint8");
        return NULL;
    }
    Py_ssize_t n = (Py_ssize_t)rows * cols;
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(float));
    if (!bytes) {
        PyBuffer_Release(&view);
        return NULL;
    }
    float *dst = (float *)PyBytes_AS_STRING(bytes);
    const unsigned char *src = (const unsigned char *)view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t p = 0; p < n; p++) {
        const unsigned char *px = src + p * channels;
        double y = (double)px[0] * 0.299 + (double)px[1] * 0.587;
        y = y + (double)px[2] * 0.114;
        dst[p] = (float)y;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return bytes;
}

/* block64(plane: float32 rows x cols, rows, cols, kr: float32 64 x rows,
 *         kct: float32 cols x 64) -> bytes of 64x64 float32: kr . plane . kct.
 * Sums run in a fixed order, so the result is the same on every machine. */
static PyObject *py_block64(PyObject *self, PyObject *args) {
    Py_buffer pv, kv, cv;
    int rows, cols;
    if (!PyArg_ParseTuple(args, "y*iiy*y*", &pv, &rows, &cols, &kv, &cv)) return NULL;
    PyObject *result = NULL;
    float *t = NULL;
    if (rows < 1 || cols < 1 || rows > PDQ_MAX_SIDE || cols > PDQ_MAX_SIDE ||
        pv.len != (Py_ssize_t)rows * cols * (Py_ssize_t)sizeof(float) ||
        kv.len != (Py_ssize_t)64 * rows * (Py_ssize_t)sizeof(float) ||
        cv.len != (Py_ssize_t)64 * cols * (Py_ssize_t)sizeof(float)) {
        PyErr_SetString(PyExc_ValueError, "block64: buffer sizes do not match rows and cols");
        goto done;
    }
    t = (float *)malloc(sizeof(float) * (size_t)rows * 64);
    if (!t) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, sizeof(float) * 64 * 64);
    if (!result) goto done;
    {
        const float *plane = (const float *)pv.buf;
        const float *kr = (const float *)kv.buf;
        const float *kct = (const float *)cv.buf;
        float *out = (float *)PyBytes_AS_STRING(result);
        Py_BEGIN_ALLOW_THREADS
        /* t = plane . kct  (rows x 64) */
        for (int r = 0; r < rows; r++) {
            float *tr = t + (Py_ssize_t)r * 64;
            const float *pr = plane + (Py_ssize_t)r * cols;
            for (int j = 0; j < 64; j++) tr[j] = 0.0f;
            for (int c = 0; c < cols; c++) {
                const float v = pr[c];
                const float *kc = kct + (Py_ssize_t)c * 64;
                for (int j = 0; j < 64; j++) {
                    float p = v * kc[j];
                    tr[j] += p;
                }
            }
        }
        /* out = kr . t  (64 x 64) */
        for (int i = 0; i < 64; i++) {
            float *oi = out + i * 64;
            const float *ki = kr + (Py_ssize_t)i * rows;
            for (int j = 0; j < 64; j++) oi[j] = 0.0f;
            for (int r = 0; r < rows; r++) {
                const float w = ki[r];
                if (w == 0.0f) continue;
                const float *tr = t + (Py_ssize_t)r * 64;
                for (int j = 0; j < 64; j++) {
                    float p = w * tr[j];
                    oi[j] += p;
                }
            }
        }
        Py_END_ALLOW_THREADS
    }
done:
    free(t);
    PyBuffer_Release(&pv);
    PyBuffer_Release(&kv);
    PyBuffer_Release(&cv);
    return result;
}

static PyMethodDef methods[] = {
    {"block64", py_block64, METH_VARARGS,
     "block64(plane, rows, cols, kr, kct) -> bytes: 64x64 float32 product kr . plane . kct."},
    {"dct16", py_dct16, METH_VARARGS,
     "dct16(luma, rows, cols) -> (bytes, quality): PDQ's 16x16 DCT block (float32, row-major) and quality."},
    {"luma_from_rgb", py_luma_from_rgb, METH_VARARGS,
     "luma_from_rgb(pixels, rows, cols, channels) -> bytes: float32 luma of interleaved 8-bit pixels."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pdqcore", "PDQ float core, bit-exact with the reference.", -1, methods,
};

PyMODINIT_FUNC PyInit__pdqcore(void) {
    build_dct_matrix();
    return PyModule_Create(&module);
}
