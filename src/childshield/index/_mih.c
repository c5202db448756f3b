/*
 * childshield: exact PDQ range search by multi-index hashing.
 *
 * The 256 bits are cut into 16 chunks of 16 bits.  If two hashes are within
 * distance r, then by pigeonhole some chunk differs in at most s = r / 16
 * bits, so probing, in every chunk's table, each 16-bit value within s bits
 * of the query's chunk finds every item within r; candidates are then
 * verified on the full 256 bits.  An item reached through several chunks is
 * counted once: it is skipped in chunk c when an earlier chunk was already
 * within s bits (where it was found first).  Nothing within the threshold
 * can be missed, and nothing is reported twice.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Every 16-bit value with at most 3 bits set, ordered by bit count: the first MASKS_UP_TO[s] are those
 * with at most s bits set. */
static int masks[1 + 16 + 120 + 560];
static const int MASKS_UP_TO[4] = {1, 17, 137, 697};

static void build_masks(void) {
    int k = 0;
    for (int bits = 0; bits <= 3; bits++)
        for (int m = 0; m < 65536; m++)
            if (__builtin_popcount((unsigned)m) == bits) masks[k++] = m;
}

#define PREFETCH 16

static inline int chunk_of(const uint64_t *h, int c) {
    return (int)((h[c >> 2] >> (48 - 16 * (c & 3))) & 0xFFFF);
}

typedef struct {
    int32_t *q, *item;
    int16_t *dist;
    Py_ssize_t n, cap;
} hits_t;

static int push(hits_t *h, int32_t q, int32_t item, int16_t d) {
    if (h->n == h->cap) {
        Py_ssize_t cap = h->cap ? h->cap * 2 : 1024;
        int32_t *nq = PyMem_Realloc(h->q, (size_t)cap * sizeof(int32_t));
        if (!nq) return -1;
        h->q = nq;
        int32_t *ni = PyMem_Realloc(h->item, (size_t)cap * sizeof(int32_t));
        if (!ni) return -1;
        h->item = ni;
        int16_t *nd = PyMem_Realloc(h->dist, (size_t)cap * sizeof(int16_t));
        if (!nd) return -1;
        h->dist = nd;
        h->cap = cap;
    }
    h->q[h->n] = q;
    h->item[h->n] = item;
    h->dist[h->n] = d;
    h->n++;
    return 0;
}

/* search(hashes, thresholds, alive, ids, offsets, queries, s[, limit]) -> (q, item, dist) as bytes
 *   hashes: N*4 uint64; thresholds: N int16; alive: N uint8 (0: skip); ids: 16*N uint32;
 *   offsets: 16*65537 int64 (absolute positions in ids); queries: Q*4 uint64; s: 0..3 bits per chunk.
 *   limit: the largest distance reported (default 16*s+15, up to which the search is exact); a larger
 *   limit also reports items beyond it that share a chunk within s bits of the query (approximate). */
static PyObject *py_search(PyObject *self, PyObject *args) {
    Py_buffer hb, tb, ab, ib, ob, qb;
    int s, limit = -1;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*i|i", &hb, &tb, &ab, &ib, &ob, &qb, &s, &limit)) return NULL;
    PyObject *result = NULL;
    hits_t hits = {NULL, NULL, NULL, 0, 0};
    const Py_ssize_t n = hb.len / 32, nq = qb.len / 32;
    if (hb.len % 32 || qb.len % 32 || tb.len != n * 2 || ab.len != n || ib.len != 16 * n * 4 ||
        ob.len != 16 * 65537 * 8 || s < 0 || s > 3 || n > INT32_MAX || nq > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "mih.search: inconsistent buffers");
        goto done;
    }
    {
        const uint64_t *hashes = hb.buf, *queries = qb.buf;
        const int16_t *thr = tb.buf;
        const uint8_t *alive = ab.buf;
        const uint32_t *ids = ib.buf;
        const int64_t *offsets = ob.buf;
        const int nmasks = MASKS_UP_TO[s];
        const int max_thr = limit >= 0 ? limit : 16 * s + 15; /* the caller picks s from the largest threshold */
        int failed = 0;
        Py_BEGIN_ALLOW_THREADS
        /* Per query: first list every candidate (sequential reads of the probed buckets), then verify
         * them with the hash of candidate k + PREFETCH already on its way from memory. */
        int64_t cap = 1 << 16;
        uint32_t *cand = PyMem_RawMalloc((size_t)cap * sizeof(uint32_t));
        uint8_t *cand_chunk = PyMem_RawMalloc((size_t)cap);
        if (!cand || !cand_chunk) failed = 1;
        for (Py_ssize_t qi = 0; qi < nq && !failed; qi++) {
            const uint64_t *q = queries + 4 * qi;
            int64_t m = 0;
            for (int c = 0; c < 16; c++) {
                const int qc = chunk_of(q, c);
                const int64_t *off = offsets + (Py_ssize_t)c * 65537;
                for (int mi = 0; mi < nmasks && !failed; mi++) {
                    const int v = qc ^ masks[mi];
                    const int64_t len = off[v + 1] - off[v];
                    if (m + len > cap) { /* grow the candidate list */
                        while (m + len > cap) cap *= 2;
                        uint32_t *nc = PyMem_RawRealloc(cand, (size_t)cap * sizeof(uint32_t));
                        if (nc) cand = nc;
                        uint8_t *nk = PyMem_RawRealloc(cand_chunk, (size_t)cap);
                        if (nk) cand_chunk = nk;
                        if (!nc || !nk) {
                            failed = 1;
                            break;
                        }
                    }
                    memcpy(cand + m, ids + off[v], (size_t)len * sizeof(uint32_t));
                    memset(cand_chunk + m, c, (size_t)len);
                    m += len;
                }
            }
            for (int64_t k = 0; k < m && !failed; k++) {
                if (k + PREFETCH < m) __builtin_prefetch(hashes + 4 * (Py_ssize_t)cand[k + PREFETCH]);
                const uint32_t it = cand[k];
                const uint64_t *h = hashes + 4 * (Py_ssize_t)it;
                uint64_t x[4] = {h[0] ^ q[0], h[1] ^ q[1], h[2] ^ q[2], h[3] ^ q[3]};
                int d = __builtin_popcountll(x[0]) + __builtin_popcountll(x[1]) + __builtin_popcountll(x[2]) +
                        __builtin_popcountll(x[3]);
                /* Threshold and liveness are read only for the rare near candidates. */
                if (d > max_thr || d > thr[it] || !alive[it]) continue;
                const int c = cand_chunk[k];
                int seen = 0; /* found already through an earlier chunk? */
                for (int e = 0; e < c && !seen; e++) seen = __builtin_popcount((unsigned)chunk_of(x, e)) <= s;
                if (seen) continue;
                if (push(&hits, (int32_t)qi, (int32_t)it, (int16_t)d) != 0) failed = 1;
            }
        }
        PyMem_RawFree(cand);
        PyMem_RawFree(cand_chunk);
        Py_END_ALLOW_THREADS
        if (failed) {
            PyErr_NoMemory();
            goto done;
        }
        /* No hits: empty bytes, not None (y# turns a NULL pointer into None). */
        result = Py_BuildValue(
            "(y#y#y#)", hits.n ? (const char *)hits.q : "", hits.n * (Py_ssize_t)sizeof(int32_t),
            hits.n ? (const char *)hits.item : "", hits.n * (Py_ssize_t)sizeof(int32_t),
            hits.n ? (const char *)hits.dist : "", hits.n * (Py_ssize_t)sizeof(int16_t));
    }
done:
    PyMem_Free(hits.q);
    PyMem_Free(hits.item);
    PyMem_Free(hits.dist);
    PyBuffer_Release(&hb);
    PyBuffer_Release(&tb);
    PyBuffer_Release(&ab);
    PyBuffer_Release(&ib);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&qb);
    return result;
}

static PyMethodDef methods[] = {
    {"search", py_search, METH_VARARGS, "Exact multi-index-hashing range search (see module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_mih", "PDQ multi-index hashing.", -1, methods};

PyMODINIT_FUNC PyInit__mih(void) {
    build_masks();
    return PyModule_Create(&module);
}
