/*
 * Compiled inner loops of the NEX core (docs/algorithm.md), used by nex_interp.core.learn and
 * nex_interp.core.score when this extension was built. The plain path (plain.py, rows.py, cycles.py,
 * score.py) computes the same thing and stays the fallback; the tests check both against the loop-by-loop oracle.
 *
 * One file of ~1,150 lines on purpose: setuptools builds one extension from it, and the three kernels
 * below share its static helpers (sanitising, medians, the phase step's mixture and Viterbi).
 *
 *   scan_rows  sanitises every row of the given responses, flags each entry that introduces its neuron
 *              (first kept row of the response holding it) and counts them per row (novelty). The
 *              phase step then runs in Python on the slopes.
 *   credit     given the phase labels, finds each response's E->X cycles, their reuse and kind, and adds
 *              the credit of effective/redundant cycles to float32 accumulators in response order,
 *              cycle order, entry order (the plain path's order).
 *   gmf        the Good-Mass Fraction of every base vector.
 *
 * Speed notes (measured on the 400-response benchmark cache): random reads and writes over a table of
 * every neuron are what costs, so (1) "seen in this response" and "introduced by this cycle" are byte
 * maps stamped with a fresh epoch (no clearing, small and hot); (2) credit is gathered into a buffer
 * first and added in a branch-free loop, so the accumulators' cache misses overlap; (3) reuse sums
 * masses as exact integers (float16 values are multiples of 2**-24), so no float add chain.
 *
 * Arrays come in through the buffer protocol; dtypes are checked by the Python wrapper
 * (nex_interp/core/kernel.py), lengths and pointers here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NEX_EPS 1e-6
#define F16_BAD 0x7C00u /* float16 bits at or above: negative (sign bit) or non-finite */
#define REF_TABLE ((int64_t)1 << 22)
#define RESERVED_LAYER 255u
#define DROPPED (-1)
#define OUT_OF_RANGE (-2)
#define UNIT 5.9604644775390625e-08 /* 2**-24: float16 values are whole multiples of it */

typedef struct {
    const void *keys;
    int wide; /* 0: ref22 uint32 keys, 1: wide uint64 keys */
    int64_t n_layers, d_mlp, n_neurons;
} scheme_t;

static inline int64_t dense_index(const scheme_t *s, int64_t e) {
    if (!s->wide) {
        uint32_t k = ((const uint32_t *)s->keys)[e];
        if ((k >> 16) == RESERVED_LAYER) return DROPPED;
        return (int64_t)k < REF_TABLE ? (int64_t)k : OUT_OF_RANGE;
    }
    uint64_t k = ((const uint64_t *)s->keys)[e];
    uint64_t layer = k >> 32, unit = k & 0xFFFFFFFFu;
    if (layer == RESERVED_LAYER) return DROPPED;
    if (layer >= (uint64_t)s->n_layers || unit >= (uint64_t)s->d_mlp) return OUT_OF_RANGE;
    return (int64_t)layer * s->d_mlp + (int64_t)unit;
}

static inline uint16_t clean_bits(uint16_t h) { return h < F16_BAD ? h : 0; }

/* A sanitised float16 (bits below F16_BAD: finite, non-negative) in units of 2**-24, exactly. */
static inline uint64_t half_units(uint16_t h) {
    uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    uint64_t full = exp ? (man | 0x400u) : man;
    return full << (exp ? exp - 1 : 0);
}

/* A sanitised float16 as a double, exactly. */
static inline double half_value(uint16_t h) { return (double)half_units(h) * UNIT; }

/* Where a ref22 key lives in the kernels' own per-neuron maps: (unit << 6) | layer. In key order the
   layers sit 2**16 slots apart, so the few thousand units each layer uses fall into the same cache
   sets, layer after layer, and evict each other; interleaving the layers keeps the used slots
   contiguous. (Wide dense indices are contiguous already.) */
static inline uint32_t ref_slot(uint32_t k) { return ((k & 0xFFFFu) << 6) | (k >> 16); }
static inline int64_t map_slot(const scheme_t *s, int64_t d) { return s->wide ? d : (int64_t)ref_slot((uint32_t)d); }

/* ------------------------------------------------------------------------------------------ */
/* Buffers */

typedef struct {
    Py_buffer view;
    int held;
} buf_t;

static void release_all(buf_t *b, int n) {
    for (int i = 0; i < n; i++)
        if (b[i].held) PyBuffer_Release(&b[i].view), b[i].held = 0;
}

static int get_buf(PyObject *obj, buf_t *b, int writable, Py_ssize_t itemsize, const char *what) {
    if (PyObject_GetBuffer(obj, &b->view, (writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    b->held = 1;
    if (b->view.len % itemsize) {
        PyErr_Format(PyExc_ValueError, "nex kernel: %s holds %zd bytes, not a whole number of %zd-byte items", what,
                     b->view.len, itemsize);
        return -1;
    }
    return 0;
}

#define LEN(b, type) ((int64_t)((b).view.len / (Py_ssize_t)sizeof(type)))
#define PTR(b, type) ((type *)(b).view.buf)

static int check_len(const buf_t *b, int64_t want, Py_ssize_t item, const char *what) {
    if ((int64_t)(b->view.len / item) != want) {
        PyErr_Format(PyExc_ValueError, "nex kernel: %s holds %lld items, expected %lld", what,
                     (long long)(b->view.len / item), (long long)want);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* First appearances: one uint16 stamp per neuron. Response r stamps base_r + kept row, with base_r
   above every stamp written before, so a stamp below base_r means "not met in this response" and the
   table is not cleared between responses (only when the stamps run out, every few hundred responses;
   the table is small: 2 bytes a neuron, which keeps the hot part of it in the L2 cache). */

#define NOT_KEPT 0xFFFFu /* first-row value of entries outside kept rows, and of dropped entries */
#define MAX_ROWS (NOT_KEPT - 1) /* rows a response may have */

typedef struct {
    uint16_t *table;
    int64_t size;
    uint32_t base; /* every stamp in the table is below it */
} firsts_t;

/* The stamp base for a response of n rows. */
static inline uint16_t next_base(firsts_t *f, int64_t n) {
    if ((int64_t)f->base + n > 0xFFFF) {
        memset(f->table, 0, (size_t)f->size * sizeof(uint16_t));
        f->base = 1;
    }
    uint16_t b = (uint16_t)f->base;
    f->base += (uint32_t)n;
    return b;
}

/* ------------------------------------------------------------------------------------------ */
/* The cache arguments both passes start with */

typedef struct {
    buf_t b[6];
    scheme_t s;
    const int64_t *row_ptr, *tok_ptr, *srp, *order;
    const uint16_t *mass;
    int64_t n_rows, n_entries, n_responses, n_order;
    int64_t total_rows, total_entries; /* of the responses in order, concatenated */
} cache_args;

/* Bounds of response i's rows; -1 with an exception if its pointers are bad. */
static int response_bounds(const cache_args *c, int64_t i, int64_t *r0, int64_t *r1) {
    if (i < 0 || i >= c->n_responses) {
        PyErr_Format(PyExc_IndexError, "nex kernel: response %lld is out of range", (long long)i);
        return -1;
    }
    *r0 = c->srp[i];
    *r1 = c->srp[i + 1];
    if (*r0 < 0 || *r1 < *r0 || *r1 > c->n_rows) goto bad;
    for (int64_t r = *r0; r <= *r1; r++)
        if (c->row_ptr[r] < 0 || c->row_ptr[r] > c->n_entries || (r > *r0 && c->row_ptr[r] < c->row_ptr[r - 1]))
            goto bad;
    return 0;
bad:
    PyErr_Format(PyExc_ValueError, "nex kernel: response %lld has row or entry pointers out of bounds", (long long)i);
    return -1;
}

/* keys, wide, n_layers, d_mlp, mass, row_ptr, tok_ptr, sample_row_ptr, order: checks every response's
   pointers and totals its rows and entries. */
static int parse_cache(cache_args *c, PyObject *keys, int wide, long long n_layers, long long d_mlp, PyObject *mass,
                       PyObject *row_ptr, PyObject *tok_ptr, PyObject *srp, PyObject *order) {
    memset(c, 0, sizeof *c);
    if (get_buf(keys, &c->b[0], 0, wide ? 8 : 4, "keys") || get_buf(mass, &c->b[1], 0, 2, "mass") ||
        get_buf(row_ptr, &c->b[2], 0, 8, "row_ptr") || get_buf(tok_ptr, &c->b[3], 0, 8, "token_row_ptr") ||
        get_buf(srp, &c->b[4], 0, 8, "sample_row_ptr") || get_buf(order, &c->b[5], 0, 8, "order"))
        return -1;
    c->s.keys = c->b[0].view.buf;
    c->s.wide = wide;
    c->s.n_layers = n_layers;
    c->s.d_mlp = d_mlp;
    c->s.n_neurons = wide ? n_layers * d_mlp : REF_TABLE;
    c->n_entries = wide ? LEN(c->b[0], uint64_t) : LEN(c->b[0], uint32_t);
    c->mass = PTR(c->b[1], uint16_t);
    c->row_ptr = PTR(c->b[2], int64_t);
    c->tok_ptr = PTR(c->b[3], int64_t);
    c->srp = PTR(c->b[4], int64_t);
    c->order = PTR(c->b[5], int64_t);
    c->n_rows = LEN(c->b[2], int64_t) - 1;
    c->n_responses = LEN(c->b[4], int64_t) - 1;
    c->n_order = LEN(c->b[5], int64_t);
    if (LEN(c->b[1], uint16_t) != c->n_entries || LEN(c->b[3], int64_t) != c->n_rows + 1 || c->n_rows < 0 ||
        c->n_responses < 0 || (wide && (n_layers <= 0 || d_mlp <= 0))) {
        PyErr_SetString(PyExc_ValueError, "nex kernel: inconsistent cache array lengths or key scheme");
        return -1;
    }
    for (int64_t k = 0; k < c->n_order; k++) {
        int64_t r0, r1;
        if (response_bounds(c, c->order[k], &r0, &r1)) return -1;
        c->total_rows += r1 - r0;
        c->total_entries += c->row_ptr[r1] - c->row_ptr[r0];
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* scan_rows */

/* Whether the row [e0, e1) with `tokens` tokens is kept; *clean: its keys are all ref22 keys inside the
   table and its masses need no sanitising, so its entries need no per-entry checks. */
static inline int row_status(const scheme_t *s, const uint16_t *mass, int64_t e0, int64_t e1, int64_t tokens,
                             int *clean) {
    *clean = 0;
    if (tokens <= 0 || e1 <= e0) return 0;
    if (!s->wide) { /* one vectorisable pass: largest key and largest mass bits */
        const uint32_t *keys = (const uint32_t *)s->keys;
        uint32_t kmax = 0;
        uint16_t hmax = 0;
        for (int64_t e = e0; e < e1; e++) {
            kmax = keys[e] > kmax ? keys[e] : kmax;
            hmax = mass[e] > hmax ? mass[e] : hmax;
        }
        if (kmax < REF_TABLE && hmax < F16_BAD) {
            *clean = 1;
            return hmax > 0;
        }
    }
    int64_t n_keep = 0;
    uint16_t top = 0;
    for (int64_t e = e0; e < e1; e++) {
        int64_t d = dense_index(s, e);
        if (d == OUT_OF_RANGE) return 0;
        if (d >= 0) {
            n_keep++;
            uint16_t h = clean_bits(mass[e]);
            top = h > top ? h : top;
        }
    }
    return n_keep > 0 && top > 0;
}

/* Record, for each entry of one kept row (kept-row position j, stamp base b), the kept row that
   introduced its neuron in this response (j itself for a neuron met for the first time; NOT_KEPT for
   dropped entries), and count the neurons the row introduces (a key repeated within a row counts once).
   Branch-free: whether an entry is new is unpredictable. */
static inline int32_t first_row(const scheme_t *s, uint16_t *table, uint16_t b, uint16_t j, int64_t e0, int64_t e1,
                                int clean, uint16_t *first) {
    const uint16_t stamp = (uint16_t)(b + j);
    int32_t fresh = 0;
    if (clean) {
        const uint32_t *keys = (const uint32_t *)s->keys;
        for (int64_t e = e0; e < e1; e++) {
            if (e + 12 < e1) __builtin_prefetch(&table[ref_slot(keys[e + 12])], 1); /* the keys say where next */
            const uint32_t slot = ref_slot(keys[e]);
            const uint16_t v = table[slot];
            const uint16_t is_new = v < b, mask = (uint16_t)-is_new;
            const uint16_t nv = (uint16_t)((stamp & mask) | (v & ~mask));
            table[slot] = nv;
            first[e - e0] = (uint16_t)(nv - b);
            fresh += is_new;
        }
        return fresh;
    }
    for (int64_t e = e0; e < e1; e++) {
        int64_t d = dense_index(s, e);
        if (d < 0) {
            first[e - e0] = NOT_KEPT;
            continue;
        }
        const int64_t slot = map_slot(s, d);
        const uint16_t v = table[slot];
        const int is_new = v < b;
        const uint16_t nv = is_new ? stamp : v;
        table[slot] = nv;
        first[e - e0] = (uint16_t)(nv - b);
        fresh += is_new;
    }
    return fresh;
}

static int get_firsts(PyObject *obj, unsigned long base, buf_t *b, firsts_t *f, const scheme_t *s) {
    if (get_buf(obj, b, 1, 2, "first-row table")) return -1;
    f->table = PTR(*b, uint16_t);
    f->size = LEN(*b, uint16_t);
    f->base = (uint32_t)base;
    if (f->size < s->n_neurons || base == 0 || base > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "nex kernel: the first-row table is too small for the key scheme, or bad base");
        return -1;
    }
    return 0;
}

static PyObject *scan_rows(PyObject *self, PyObject *args) {
    PyObject *keys, *mass, *row_ptr, *tok_ptr, *srp, *order, *table_o, *kept_o, *new_o, *nkept_o, *first_o;
    int wide;
    long long n_layers, d_mlp;
    unsigned long base;
    if (!PyArg_ParseTuple(args, "OiLLOOOOOOkOOOO", &keys, &wide, &n_layers, &d_mlp, &mass, &row_ptr, &tok_ptr, &srp,
                          &order, &table_o, &base, &kept_o, &new_o, &nkept_o, &first_o))
        return NULL;
    cache_args c;
    buf_t out[5];
    memset(out, 0, sizeof out);
    firsts_t firsts;
    PyObject *ret = NULL;
    if (parse_cache(&c, keys, wide, n_layers, d_mlp, mass, row_ptr, tok_ptr, srp, order) ||
        get_firsts(table_o, base, &out[0], &firsts, &c.s) || get_buf(kept_o, &out[1], 1, 1, "kept") ||
        get_buf(new_o, &out[2], 1, 4, "n_new") || get_buf(nkept_o, &out[3], 1, 8, "n_kept") ||
        get_buf(first_o, &out[4], 1, 2, "first") || check_len(&out[1], c.total_rows, 1, "kept") ||
        check_len(&out[2], c.total_rows, 4, "n_new") || check_len(&out[3], c.n_order, 8, "n_kept") ||
        check_len(&out[4], c.total_entries, 2, "first"))
        goto done;
    for (int64_t k = 0; k < c.n_order; k++)
        if (c.srp[c.order[k] + 1] - c.srp[c.order[k]] > (int64_t)MAX_ROWS) {
            PyErr_Format(PyExc_ValueError, "nex kernel: response %lld has more than %u rows",
                         (long long)c.order[k], MAX_ROWS);
            goto done;
        }
    uint8_t *kept = PTR(out[1], uint8_t);
    int32_t *n_new = PTR(out[2], int32_t);
    uint16_t *first = PTR(out[4], uint16_t);
    int64_t *n_kept = PTR(out[3], int64_t);
    Py_BEGIN_ALLOW_THREADS;
    int64_t pos = 0, epos = 0;
    for (int64_t k = 0; k < c.n_order; k++) {
        int64_t i = c.order[k], r0 = c.srp[i], r1 = c.srp[i + 1], nr = r1 - r0;
        int64_t e_base = c.row_ptr[r0], ne = c.row_ptr[r1] - e_base;
        memset(kept + pos, 0, (size_t)nr);
        memset(n_new + pos, 0, (size_t)nr * sizeof(int32_t));
        int64_t j = 0;
        uint16_t b = nr >= 3 ? next_base(&firsts, nr) : 0;
        for (int64_t r = r0; r < r1; r++) {
            int64_t e0 = c.row_ptr[r], e1 = c.row_ptr[r + 1];
            uint16_t *f = first + epos + (e0 - e_base);
            int clean;
            if (nr < 3 || !row_status(&c.s, c.mass, e0, e1, c.tok_ptr[r + 1] - c.tok_ptr[r], &clean)) {
                memset(f, 0xFF, (size_t)(e1 - e0) * sizeof(uint16_t)); /* NOT_KEPT */
                continue;
            }
            n_new[pos + (r - r0)] = first_row(&c.s, firsts.table, b, (uint16_t)j, e0, e1, clean, f);
            kept[pos + (r - r0)] = clean ? 1 : 2;
            j++;
        }
        n_kept[k] = j;
        pos += nr;
        epos += ne;
    }
    Py_END_ALLOW_THREADS;
    ret = PyLong_FromUnsignedLong(firsts.base);
done:
    release_all(c.b, 6);
    release_all(out, 5);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* credit */

/* The k-th smallest of t[0..n) (0 <= k < n), partially reordering t (quickselect, median-of-3 pivots). */
static double kth_smallest(double *t, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (hi - lo > 16) {
        int64_t mid = lo + (hi - lo) / 2;
        /* order t[lo], t[mid], t[hi]; the middle one is the pivot */
        if (t[mid] < t[lo]) { double x = t[mid]; t[mid] = t[lo]; t[lo] = x; }
        if (t[hi] < t[lo]) { double x = t[hi]; t[hi] = t[lo]; t[lo] = x; }
        if (t[hi] < t[mid]) { double x = t[hi]; t[hi] = t[mid]; t[mid] = x; }
        double pivot = t[mid];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (t[i] < pivot) i++;
            while (pivot < t[j]) j--;
            if (i <= j) {
                double x = t[i]; t[i] = t[j]; t[j] = x;
                i++, j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return t[k];
    }
    for (int64_t i = lo + 1; i <= hi; i++) { /* insertion sort of the short rest */
        double x = t[i];
        int64_t j = i - 1;
        while (j >= lo && x < t[j]) t[j + 1] = t[j], j--;
        t[j + 1] = x;
    }
    return t[k];
}

/* numpy's median of t[0..n) (n > 0, no NaN), reordering t: the mean of the two middle values. */
static double median_inplace(double *t, int64_t n) {
    double hi = kth_smallest(t, n, n / 2);
    if (n % 2) return (hi + hi) / 2;
    double lo = t[0]; /* after the selection t[0..n/2) holds the n/2 smallest: the lower middle is their largest */
    for (int64_t i = 1; i < n / 2; i++) lo = t[i] > lo ? t[i] : lo;
    return (lo + hi) / 2;
}

/* numpy's median of t[0..n) (n > 0, no NaN) taken in float32, as the reference takes the median of the
 * reuse values (docs/algorithm.md, step 6): each value is rounded to float32 and, for an even count, the
 * two middle ones are added and halved in float32. Reorders t. */
static double median_float32(double *t, int64_t n) {
    for (int64_t i = 0; i < n; i++) t[i] = (double)(float)t[i];
    double hi = kth_smallest(t, n, n / 2);
    if (n % 2) return hi;
    double lo = t[0];
    for (int64_t i = 1; i < n / 2; i++) lo = t[i] > lo ? t[i] : lo;
    volatile float sum = (float)lo + (float)hi; /* rounded to float32 before halving, as numpy's mean does */
    return (double)(sum * 0.5f);
}

/* numpy's median of v[0..n) (n > 0, no NaN), using tmp[0..n). */
static double median_of(const double *v, int64_t n, double *tmp) {
    memcpy(tmp, v, (size_t)n * sizeof(double));
    return median_inplace(tmp, n);
}

typedef struct {
    int64_t a, b, s; /* E rows [a, b), X rows [b, s) (kept-row positions) */
    double scale;
    int kind; /* 0 skipped, 1 effective, 2 redundant */
} cycle_t;

typedef struct {
    int64_t *rows;      /* cache row of each kept row */
    int32_t *row_new;   /* neurons introduced per kept row */
    uint8_t *clean_row; /* kept row needs no per-entry checks (scan_rows' kept == 1) */
    double *tmp;        /* sort buffer */
    double *cons;       /* consolidation per cycle */
    double *reuse;      /* reuse per cycle (NaN: undefined) */
    cycle_t *cycles;
    int64_t cap;
    int64_t *add_index; /* a cycle's credit: neurons, and the entries whose mass they get */
    int32_t *add_entry;
    int64_t cap_adds;
} scratch_t;

static void scratch_free(scratch_t *w) {
    free(w->rows), free(w->row_new), free(w->clean_row), free(w->tmp), free(w->cons), free(w->reuse);
    free(w->cycles), free(w->add_index), free(w->add_entry);
    memset(w, 0, sizeof *w);
}

#define GROW(ptr, n)                                         \
    do {                                                     \
        void *p_ = realloc((ptr), (size_t)(n) * sizeof *(ptr)); \
        if (!p_) return -1;                                  \
        (ptr) = p_;                                          \
    } while (0)

/* Room for a response of `rows` kept rows and `entries` entries; -1 when out of memory. */
static int scratch_fit(scratch_t *w, int64_t rows, int64_t entries) {
    if (rows > w->cap) {
        GROW(w->rows, rows);
        GROW(w->row_new, rows);
        GROW(w->clean_row, rows);
        GROW(w->tmp, rows);
        GROW(w->cons, rows);
        GROW(w->reuse, rows);
        GROW(w->cycles, rows);
        w->cap = rows;
    }
    if (entries > INT32_MAX) return -1; /* a response this large is beyond the kernels (offsets are int32) */
    if (entries > w->cap_adds) {
        GROW(w->add_index, entries);
        GROW(w->add_entry, entries);
        w->cap_adds = entries;
    }
    return 0;
}

/* Mass of a clean row (n entries) in units of 2**-24, in all and on entries whose first row is in
   [lo, lo + span). A plain loop the compiler vectorises; with GCC on x86-64 it is also built for AVX2,
   picked at load time where the processor has it. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
__attribute__((target_clones("avx2", "default")))
#endif
static void row_units(const uint16_t *mass, const uint16_t *f, int64_t n, uint32_t lo, uint32_t span, uint64_t *xu,
                      uint64_t *iu) {
    uint64_t x = 0, in = 0;
    for (int64_t e = 0; e < n; e++) {
        uint32_t h = mass[e], exp = h >> 10, nz = exp != 0;
        uint64_t u = (uint64_t)((h & 0x3FFu) | (nz << 10)) << (exp - nz);
        x += u;
        in += (uint32_t)f[e] - lo < span ? u : 0;
    }
    *xu += x;
    *iu += in;
}

/* Reuse of a cycle: the share of its X rows' mass on neurons its E rows introduced (NaN when the X
   rows carry no mass). first: the response's entries' introducing kept rows (-1: dropped). */
static double cycle_reuse(const cache_args *c, const scratch_t *w, const cycle_t *cy, const uint16_t *first,
                          int64_t e_base) {
    const uint16_t *mass = c->mass;
    const uint32_t lo = (uint32_t)cy->a, span = (uint32_t)(cy->b - cy->a);
    /* exact integer sums (units of 2**-24) while they cannot overflow, else float64 */
    const int64_t x0 = c->row_ptr[w->rows[cy->b]], x1 = c->row_ptr[w->rows[cy->s - 1] + 1];
    double x_mass = 0.0, inside = 0.0;
    if (x1 - x0 < ((int64_t)1 << 22)) {
        uint64_t xu = 0, iu = 0;
        for (int64_t q = cy->b; q < cy->s; q++) {
            const int64_t r = w->rows[q], e0 = c->row_ptr[r], e1 = c->row_ptr[r + 1];
            const uint16_t *f = first + (e0 - e_base);
            if (w->clean_row[q]) {
                row_units(mass + e0, f, e1 - e0, lo, span, &xu, &iu);
                continue;
            }
            for (int64_t e = e0; e < e1; e++) {
                if (f[e - e0] == NOT_KEPT) continue;
                uint64_t u = half_units(clean_bits(mass[e]));
                xu += u;
                iu += (uint32_t)f[e - e0] - lo < span ? u : 0;
            }
        }
        x_mass = (double)xu * UNIT;
        inside = (double)iu * UNIT;
    } else {
        for (int64_t q = cy->b; q < cy->s; q++) {
            const int64_t r = w->rows[q], e0 = c->row_ptr[r], e1 = c->row_ptr[r + 1];
            const uint16_t *f = first + (e0 - e_base);
            for (int64_t e = e0; e < e1; e++) {
                if (f[e - e0] == NOT_KEPT) continue;
                double v = half_value(clean_bits(mass[e]));
                x_mass += v;
                inside += (uint32_t)f[e - e0] - lo < span ? v : 0.0;
            }
        }
    }
    return x_mass > 0 ? inside / (x_mass + NEX_EPS) : NAN;
}

/* Add mass * scale of every neuron the cycle's E rows introduced to acc, in entry order (acc indexed by
   dense neuron index), and widen bound to cover them: ref22, {largest layer, largest unit}; wide,
   {0, largest index}, so that finding the credited neurons afterwards reads only that part of the
   accumulators (marking each neuron instead was measured 15% slower). The adds are gathered first so
   that the loop doing them has no branches and its cache misses overlap. */
static void add_credit(const cache_args *c, scratch_t *w, const cycle_t *cy, const uint16_t *first, int64_t e_base,
                       float *acc, int64_t *bound) {
    int64_t n = 0;
    int32_t *entry = w->add_entry; /* offsets from e_base */
    int64_t *index = w->add_index;
    const uint16_t *mass = c->mass + e_base;
    const double scale = cy->scale;
    for (int64_t q = cy->a; q < cy->b; q++) {
        const int64_t r = w->rows[q], e0 = c->row_ptr[r] - e_base, e1 = c->row_ptr[r + 1] - e_base;
        for (int64_t e = e0; e < e1; e++) {
            entry[n] = (int32_t)e;
            n += first[e] == (uint16_t)q;
        }
    }
    int64_t hi = bound[0], lo = bound[1];
    if (c->s.wide) {
        for (int64_t t = 0; t < n; t++) {
            index[t] = dense_index(&c->s, e_base + entry[t]);
            lo = index[t] > lo ? index[t] : lo;
        }
    } else { /* introducing entries are never dropped ones, so a ref22 key is its own index */
        const uint32_t *keys = (const uint32_t *)c->s.keys + e_base;
        for (int64_t t = 0; t < n; t++) {
            const uint32_t k = keys[entry[t]];
            index[t] = k;
            hi = (int64_t)(k >> 16) > hi ? (int64_t)(k >> 16) : hi;
            lo = (int64_t)(k & 0xFFFFu) > lo ? (int64_t)(k & 0xFFFFu) : lo;
        }
    }
    bound[0] = hi, bound[1] = lo;
    for (int64_t t = 0; t < n; t++) {
        if (t + 16 < n) __builtin_prefetch(&acc[index[t + 16]], 1);
        const int64_t d = index[t];
        acc[d] = acc[d] + (float)(half_value(clean_bits(mass[entry[t]])) * scale);
    }
}

/* One used response (n kept rows): its cycles, their reuse and kind, and their credit. flag: the
   response's entries' first rows from scan_rows. Returns -1 when out of memory. */
static int credit_response(const cache_args *c, scratch_t *w, int64_t r0, int64_t r1, const uint8_t *kept,
                           const int32_t *n_new, const uint16_t *first, const uint8_t *labels,
                           const double *slopes, int64_t n, float *eff, float *red, int64_t *bound, int64_t *n_eff,
                           int64_t *n_red) {
    int64_t e_base = c->row_ptr[r0];
    if (scratch_fit(w, n, c->row_ptr[r1] - e_base)) return -1;
    int64_t j = 0;
    for (int64_t r = r0; r < r1; r++)
        if (kept[r - r0]) w->rows[j] = r, w->row_new[j] = n_new[r - r0], w->clean_row[j] = kept[r - r0] == 1, j++;

    /* cycles: an E run followed by an X run */
    int64_t n_cyc = 0;
    for (int64_t a = 0; a < n;) {
        int64_t b = a;
        while (b < n && labels[b] == labels[a]) b++;
        if (labels[a] && b < n) {
            int64_t s = b;
            while (s < n && labels[s] == labels[b]) s++;
            w->cycles[n_cyc++] = (cycle_t){a, b, s, 0.0, 0};
        }
        a = b;
    }
    if (n_cyc == 0) return 0;
    double m = median_of(slopes, n, w->tmp);
    int64_t n_def = 0;
    for (int64_t k = 0; k < n_cyc; k++) {
        cycle_t *cy = &w->cycles[k];
        double se = median_of(slopes + cy->a, cy->b - cy->a, w->tmp);
        double sx = median_of(slopes + cy->b, cy->s - cy->b, w->tmp);
        double strength = se - m, cn = 0.0, reuse = NAN;
        if (se > 0) {
            cn = 1.0 - sx / (se + NEX_EPS);
            cn = cn < 0.0 ? 0.0 : (cn > 1.0 ? 1.0 : cn);
        }
        int64_t intro = 0;
        for (int64_t q = cy->a; q < cy->b; q++) intro += w->row_new[q];
        if (strength > 0 && intro > 0) reuse = cycle_reuse(c, w, cy, first, e_base);
        w->cons[k] = cn;
        w->reuse[k] = reuse;
        n_def += !isnan(reuse);
    }
    if (n_def == 0) return 0;
    int64_t q = 0;
    for (int64_t k = 0; k < n_cyc; k++)
        if (!isnan(w->reuse[k])) w->tmp[q++] = w->reuse[k];
    double med = median_float32(w->tmp, n_def);
    for (int64_t k = 0; k < n_cyc; k++) {
        cycle_t *cy = &w->cycles[k];
        double reuse = w->reuse[k], cn = w->cons[k];
        if (isnan(reuse)) continue;
        double progress = reuse - med;
        int is_eff = progress > 0 && cn > 0;
        int is_red = progress != 0 && !is_eff;
        double sc = is_eff ? progress * cn : fabs(progress);
        if (!(is_eff || is_red) || !(sc > 0)) continue;
        cy->scale = sc;
        if (is_eff) {
            add_credit(c, w, cy, first, e_base, eff, bound);
            *n_eff += 1;
        } else {
            add_credit(c, w, cy, first, e_base, red, bound);
            *n_red += 1;
        }
    }
    return 0;
}

static PyObject *credit(PyObject *self, PyObject *args) {
    PyObject *keys, *mass, *row_ptr, *tok_ptr, *srp, *order, *kept_o, *new_o, *first_o, *labels_o, *slopes_o, *eff_o,
        *red_o, *bound_o;
    int wide;
    long long n_layers, d_mlp;
    if (!PyArg_ParseTuple(args, "OiLLOOOOOOOOOOOOO", &keys, &wide, &n_layers, &d_mlp, &mass, &row_ptr, &tok_ptr, &srp,
                          &order, &kept_o, &new_o, &first_o, &labels_o, &slopes_o, &eff_o, &red_o, &bound_o))
        return NULL;
    cache_args c;
    buf_t in[8];
    memset(in, 0, sizeof in);
    scratch_t w;
    memset(&w, 0, sizeof w);
    PyObject *ret = NULL;
    if (parse_cache(&c, keys, wide, n_layers, d_mlp, mass, row_ptr, tok_ptr, srp, order) ||
        get_buf(kept_o, &in[0], 0, 1, "kept") || get_buf(new_o, &in[1], 0, 4, "n_new") ||
        get_buf(first_o, &in[2], 0, 2, "first") || get_buf(labels_o, &in[3], 0, 1, "labels") ||
        get_buf(slopes_o, &in[4], 0, 8, "slopes") || get_buf(eff_o, &in[5], 1, 4, "effective") ||
        get_buf(red_o, &in[6], 1, 4, "redundant") || get_buf(bound_o, &in[7], 1, 8, "bound") ||
        check_len(&in[0], c.total_rows, 1, "kept") ||
        check_len(&in[1], c.total_rows, 4, "n_new") || check_len(&in[2], c.total_entries, 2, "first"))
        goto done;
    const uint8_t *kept = PTR(in[0], uint8_t), *labels = PTR(in[3], uint8_t);
    const int32_t *n_new = PTR(in[1], int32_t);
    const uint16_t *first = PTR(in[2], uint16_t);
    const double *slopes = PTR(in[4], double);
    float *eff = PTR(in[5], float), *red = PTR(in[6], float);
    int64_t *bound = PTR(in[7], int64_t);
    if (LEN(in[3], uint8_t) != LEN(in[4], double) || LEN(in[5], float) < c.s.n_neurons ||
        LEN(in[6], float) < c.s.n_neurons || LEN(in[7], int64_t) != 2) {
        PyErr_SetString(PyExc_ValueError, "nex kernel: labels/slopes or accumulator lengths do not match");
        goto done;
    }
    /* the labels must cover exactly the kept rows of the used responses */
    int64_t total_kept = 0, pos = 0;
    for (int64_t k = 0; k < c.n_order; k++) {
        int64_t r0 = c.srp[c.order[k]], r1 = c.srp[c.order[k] + 1], nk = 0;
        for (int64_t r = 0; r < r1 - r0; r++) nk += kept[pos + r] != 0;
        if (r1 - r0 >= 3 && nk >= 3) total_kept += nk;
        pos += r1 - r0;
    }
    if (total_kept != LEN(in[3], uint8_t)) {
        PyErr_SetString(PyExc_ValueError, "nex kernel: labels do not match the kept rows of the used responses");
        goto done;
    }
    int64_t n_eff = 0, n_red = 0, kpos = 0, epos = 0;
    int oom = 0;
    pos = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (int64_t k = 0; k < c.n_order && !oom; k++) {
        int64_t i = c.order[k], r0 = c.srp[i], r1 = c.srp[i + 1], nk = 0;
        for (int64_t r = 0; r < r1 - r0; r++) nk += kept[pos + r] != 0;
        if (r1 - r0 >= 3 && nk >= 3) {
            oom = credit_response(&c, &w, r0, r1, kept + pos, n_new + pos, first + epos, labels + kpos, slopes + kpos,
                                  nk, eff, red, bound, &n_eff, &n_red);
            kpos += nk;
        }
        pos += r1 - r0;
        epos += c.row_ptr[r1] - c.row_ptr[r0];
    }
    Py_END_ALLOW_THREADS;
    if (oom)
        PyErr_NoMemory();
    else
        ret = Py_BuildValue("LL", (long long)n_eff, (long long)n_red);
done:
    scratch_free(&w);
    release_all(c.b, 6);
    release_all(in, 8);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* gmf */

static PyObject *gmf(PyObject *self, PyObject *args) {
    PyObject *keys_o, *mass_o, *ptr_o, *weights_o, *out_o;
    int wide;
    long long n_layers, d_mlp, start;
    if (!PyArg_ParseTuple(args, "OiLLOOLOO", &keys_o, &wide, &n_layers, &d_mlp, &mass_o, &ptr_o, &start, &weights_o,
                          &out_o))
        return NULL;
    buf_t b[5];
    memset(b, 0, sizeof b);
    PyObject *ret = NULL;
    if (get_buf(keys_o, &b[0], 0, wide ? 8 : 4, "base keys") || get_buf(mass_o, &b[1], 0, 2, "base mass") ||
        get_buf(ptr_o, &b[2], 0, 8, "base_ptr") || get_buf(weights_o, &b[3], 0, 4, "weights") ||
        get_buf(out_o, &b[4], 1, 8, "out"))
        goto done;
    scheme_t s = {b[0].view.buf, wide, n_layers, d_mlp, wide ? n_layers * d_mlp : REF_TABLE};
    int64_t n_keys = wide ? LEN(b[0], uint64_t) : LEN(b[0], uint32_t);
    const uint16_t *mass = PTR(b[1], uint16_t);
    const int64_t *ptr = PTR(b[2], int64_t);
    const float *w = PTR(b[3], float);
    double *out = PTR(b[4], double);
    int64_t n = LEN(b[2], int64_t) - 1;
    if (LEN(b[1], uint16_t) != n_keys || LEN(b[3], float) < s.n_neurons || LEN(b[4], double) != n || n < 0 ||
        (wide && (n_layers <= 0 || d_mlp <= 0))) {
        PyErr_SetString(PyExc_ValueError, "nex kernel: inconsistent base array lengths");
        goto done;
    }
    /* ptr[k] - start indexes the keys given (a window of the base arrays) */
    for (int64_t k = 0; k <= n; k++)
        if (ptr[k] - start < 0 || ptr[k] - start > n_keys || (k && ptr[k] < ptr[k - 1])) {
            PyErr_SetString(PyExc_ValueError, "nex kernel: base pointers out of bounds");
            goto done;
        }
    Py_BEGIN_ALLOW_THREADS;
    for (int64_t k = 0; k < n; k++) {
        int64_t e0 = ptr[k] - start, e1 = ptr[k + 1] - start;
        int clean;
        /* a base vector is sanitised like a row (tokens do not apply) */
        if (!row_status(&s, mass, e0, e1, 1, &clean)) {
            out[k] = NAN;
            continue;
        }
        double good = 0.0, total = 0.0;
        for (int64_t e = e0; e < e1; e++) {
            int64_t d = clean ? (int64_t)((const uint32_t *)s.keys)[e] : dense_index(&s, e);
            if (d < 0) continue;
            double mv = half_value(clean_bits(mass[e])), wv = (double)w[d];
            good += mv * (wv > 0 ? wv : 0.0);
            total += mv * fabs(wv);
        }
        out[k] = total > 0 ? good / total : 0.0;
    }
    Py_END_ALLOW_THREADS;
    ret = Py_NewRef(Py_None);
done:
    release_all(b, 5);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* phases: the phase step of docs/algorithm.md (step 3), one series at a time, as the plain path
   (nex_interp.core.phases.library_phase_labels) computes it (scikit-learn's GaussianMixture with
   k-means init and hmmlearn's Viterbi, re-done). Sums run in another order than the libraries', so every decision that a last-bit
   difference could flip is flagged "unsure" and Python hands that series to the libraries. */

#define TIE 1e-9
#define REG_COVAR 1e-6
#define VAR_FLOOR 1e-6
#define EM_TOL 1e-3
#define EM_MAX_ITER 50
#define KMEANS_MAX_ITER 300
#define KMEANS_TOL 1e-4
#define LOG_2PI 1.8378770664093453
#define EPS64 2.220446049250313e-16

static inline int near(double a, double b, double scale) { return fabs(a - b) <= TIE * scale; }

/* z-scores of the detrended log slopes; returns 1 if the MAD was usable (else z = r - median(r)).
   tmp: 3n doubles of scratch. */
static int robust_z(const double *slope, int64_t n, double *z, double *tmp) {
    double *x = tmp + 2 * n; /* log1p(row) */
    double xm = 0.0, ym = 0.0, denom = 0.0, num = 0.0;
    int finite = 1;
    for (int64_t j = 0; j < n; j++) {
        x[j] = log1p((double)j);
        z[j] = log1p(isnan(slope[j]) || slope[j] > 0.0 ? slope[j] : 0.0); /* y = log1p(maximum(slope, 0)) */
        finite &= isfinite(z[j]) != 0;
        xm += x[j];
        ym += z[j];
    }
    xm /= (double)n;
    ym /= (double)n;
    for (int64_t j = 0; j < n; j++) {
        double dx = x[j] - xm;
        denom += dx * dx;
        num += dx * (z[j] - ym);
    }
    if (denom > 0 && finite) {
        double b = num / denom, a = ym - b * xm;
        for (int64_t j = 0; j < n; j++) z[j] = z[j] - (a + b * x[j]);
    } else {
        double m = median_of(z, n, tmp);
        for (int64_t j = 0; j < n; j++) z[j] -= m;
    }
    double med = median_of(z, n, tmp);
    for (int64_t j = 0; j < n; j++) tmp[j] = fabs(z[j] - med);
    double mad = median_inplace(tmp, n);
    if (!isfinite(mad) || mad <= 0) {
        for (int64_t j = 0; j < n; j++) z[j] -= med;
        return 0;
    }
    for (int64_t j = 0; j < n; j++) z[j] = (z[j] - med) / (mad + NEX_EPS);
    return 1;
}

/* k-means labels (1: cluster 1) of scikit-learn's KMeans(2, n_init=1) seeded by k-means++ with the
   draws u[0..2] of RandomState(0). xc: the centred points. */
static void kmeans_labels(const double *xc, int64_t n, const double *u, uint8_t *lab, uint8_t *old, double *tmp,
                          int *unsure) {
    /* first centre: RandomState.choice(n, p=ones/n) */
    double p = 1.0 / (double)n, cum = 0.0, last;
    int64_t first = 0;
    for (int64_t j = 0; j < n; j++) cum += p; /* cdf[-1] */
    last = cum;
    cum = 0.0;
    for (int64_t j = 0; j < n; j++) {
        cum += p;
        double cdf = cum / last;
        if (cdf <= u[0]) first = j + 1;
        if (fabs(cdf - u[0]) <= TIE) *unsure = 1;
    }
    if (first > n - 1) first = n - 1;
    double c0 = xc[first], pot = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double d = ((-2.0 * (c0 * xc[j])) + c0 * c0) + xc[j] * xc[j];
        tmp[j] = d > 0 ? d : 0.0; /* closest */
        pot += tmp[j];
    }
    int64_t cand[2];
    double pots[2];
    for (int t = 0; t < 2; t++) {
        double rv = u[1 + t] * pot, run = 0.0;
        int64_t cnt = 0;
        for (int64_t j = 0; j < n; j++) {
            run += tmp[j];
            cnt += run < rv;
            if (fabs(run - rv) <= TIE * (fabs(rv) > 1e-300 ? fabs(rv) : 1e-300)) *unsure = 1;
        }
        cand[t] = cnt < n - 1 ? cnt : n - 1;
        double cc = xc[cand[t]], s = 0.0;
        for (int64_t j = 0; j < n; j++) {
            double d = ((-2.0 * (cc * xc[j])) + cc * cc) + xc[j] * xc[j];
            d = d > 0 ? d : 0.0;
            s += d < tmp[j] ? d : tmp[j];
        }
        pots[t] = s;
    }
    if (cand[0] != cand[1] && fabs(pots[1] - pots[0]) <= TIE * (fabs(pots[0]) > 1e-300 ? fabs(pots[0]) : 1e-300))
        *unsure = 1;
    double c[2] = {c0, xc[pots[1] < pots[0] ? cand[1] : cand[0]]};
    double mean = 0.0, var = 0.0, scale = 0.0;
    for (int64_t j = 0; j < n; j++) mean += xc[j];
    mean /= (double)n;
    for (int64_t j = 0; j < n; j++) {
        var += (xc[j] - mean) * (xc[j] - mean);
        scale = fabs(xc[j]) > scale ? fabs(xc[j]) : scale;
    }
    double tol = var / (double)n * KMEANS_TOL;
    scale = scale > 1e-300 ? scale : 1e-300;
    int strict = 0;
    for (int it = 0; it < KMEANS_MAX_ITER; it++) {
        int64_t cnt1 = 0;
        double s0 = 0.0, s1 = 0.0;
        int same = it > 0;
        for (int64_t j = 0; j < n; j++) {
            double d0 = c[0] * c[0] + (-2.0 * (xc[j] * c[0])), d1 = c[1] * c[1] + (-2.0 * (xc[j] * c[1]));
            if (fabs(d1 - d0) <= TIE * scale * scale) *unsure = 1;
            lab[j] = d1 < d0;
            cnt1 += lab[j];
            if (lab[j]) s1 += xc[j]; else s0 += xc[j];
            same &= lab[j] == old[j];
        }
        int64_t cnt0 = n - cnt1;
        if (cnt0 == 0 || cnt1 == 0) *unsure = 1; /* an empty cluster: the library relocates it */
        double n0 = s0 * (1.0 / (double)cnt0), n1 = s1 * (1.0 / (double)cnt1);
        double shift = (n0 - c[0]) * (n0 - c[0]) + (n1 - c[1]) * (n1 - c[1]);
        c[0] = n0, c[1] = n1;
        if (same) {
            strict = 1;
            break;
        }
        if (fabs(shift - tol) <= TIE * (tol > 1e-300 ? tol : 1e-300)) *unsure = 1;
        if (shift <= tol) break;
        memcpy(old, lab, (size_t)n);
    }
    if (!strict)
        for (int64_t j = 0; j < n; j++) {
            double d0 = c[0] * c[0] + (-2.0 * (xc[j] * c[0])), d1 = c[1] * c[1] + (-2.0 * (xc[j] * c[1]));
            if (fabs(d1 - d0) <= TIE * scale * scale) *unsure = 1;
            lab[j] = d1 < d0;
        }
}

typedef struct {
    double nk[2], mean[2], cov[2];
} mstep_t;

static mstep_t m_step(const double *x, const double *r0, const double *r1, int64_t n) {
    mstep_t m = {{0, 0}, {0, 0}, {0, 0}};
    double sx[2] = {0, 0}, sxx[2] = {0, 0};
    for (int64_t j = 0; j < n; j++) {
        m.nk[0] += r0[j], m.nk[1] += r1[j];
        sx[0] += r0[j] * x[j], sx[1] += r1[j] * x[j];
        sxx[0] += r0[j] * (x[j] * x[j]), sxx[1] += r1[j] * (x[j] * x[j]);
    }
    for (int k = 0; k < 2; k++) {
        m.nk[k] += 10 * EPS64;
        m.mean[k] = sx[k] / m.nk[k];
        m.cov[k] = sxx[k] / m.nk[k] - m.mean[k] * m.mean[k] + REG_COVAR;
    }
    return m;
}

/* E labels of one series of z-scores (n >= 3); returns 0, or 1 when unsure (the caller asks the libraries,
   which also cover a failing fit). */
static int decode(const double *x, int64_t n, double rho, const double *u, uint8_t *lab, uint8_t *scratch8,
                  double *w) {
    int unsure = 0;
    double *xc = w, *r0 = w + n, *r1 = w + 2 * n, *lat0 = w + 3 * n, *lat1 = w + 4 * n;
    double mean = 0.0, big = 0.0;
    for (int64_t j = 0; j < n; j++) mean += x[j];
    mean /= (double)n;
    for (int64_t j = 0; j < n; j++) {
        xc[j] = x[j] - mean;
        big = x[j] * x[j] > big ? x[j] * x[j] : big;
    }
    memset(scratch8, 0, (size_t)n);
    kmeans_labels(xc, n, u, lab, scratch8, r0, &unsure);
    for (int64_t j = 0; j < n; j++) r1[j] = lab[j], r0[j] = !lab[j];
    mstep_t m = m_step(x, r0, r1, n);
    double weight[2] = {m.nk[0] / (double)n, m.nk[1] / (double)n}, means[2] = {m.mean[0], m.mean[1]};
    double cov[2] = {m.cov[0], m.cov[1]}, pc[2];
    if (cov[0] <= 0.5 * REG_COVAR || cov[1] <= 0.5 * REG_COVAR || big > 1e8) unsure = 1;
    if (cov[0] <= 0.0 || cov[1] <= 0.0) return 1; /* unsure already (risky): the library decides (it raises: z > 0) */
    for (int k = 0; k < 2; k++) pc[k] = 1.0 / sqrt(cov[k]);
    double lower = -INFINITY;
    for (int it = 0; it < EM_MAX_ITER; it++) {
        double lb = 0.0, prec[2] = {pc[0] * pc[0], pc[1] * pc[1]};
        double cst[2], lin[2], lpc[2], lw[2];
        for (int k = 0; k < 2; k++) {
            cst[k] = means[k] * means[k] * prec[k];
            lin[k] = means[k] * prec[k];
            lpc[k] = log(pc[k]);
            lw[k] = log(weight[k]);
        }
        for (int64_t j = 0; j < n; j++) {
            double a = (-0.5 * (LOG_2PI + ((cst[0] - 2.0 * (x[j] * lin[0])) + (x[j] * x[j]) * prec[0])) + lpc[0]) + lw[0];
            double c = (-0.5 * (LOG_2PI + ((cst[1] - 2.0 * (x[j] * lin[1])) + (x[j] * x[j]) * prec[1])) + lpc[1]) + lw[1];
            double top = a > c ? a : c, low = a > c ? c : a, norm;
            if (a == c)
                norm = (log1p(0.0) + 0.6931471805599453) + top;
            else
                norm = log1p(exp(low - top)) + top;
            lb += norm;
            r0[j] = exp(a - norm);
            r1[j] = exp(c - norm);
        }
        lb /= (double)n;
        mstep_t mn = m_step(x, r0, r1, n);
        if (mn.cov[0] <= 0.5 * REG_COVAR || mn.cov[1] <= 0.5 * REG_COVAR || big > 1e8) unsure = 1;
        if (mn.cov[0] <= 0.0 || mn.cov[1] <= 0.0) return 1;
        double total = mn.nk[0] + mn.nk[1];
        for (int k = 0; k < 2; k++) {
            means[k] = mn.mean[k];
            cov[k] = mn.cov[k];
            weight[k] = mn.nk[k] / total;
            pc[k] = 1.0 / sqrt(cov[k]);
        }
        double change = fabs(lb - lower);
        if (fabs(change - EM_TOL) <= 1e-7 * EM_TOL) unsure = 1;
        lower = lb;
        if (change < EM_TOL) break;
    }
    /* sticky Viterbi with the fitted emissions */
    double var[2], lv[2], lt[2][2] = {{log(rho), log(1 - rho)}, {log(1 - rho), log(rho)}};
    for (int k = 0; k < 2; k++) {
        var[k] = (cov[k] > VAR_FLOOR ? cov[k] : VAR_FLOOR);
        lv[k] = LOG_2PI + log(var[k]);
    }
    for (int64_t t = 0; t < n; t++) {
        double f0 = -0.5 * (lv[0] + (x[t] - means[0]) * (x[t] - means[0]) / var[0]);
        double f1 = -0.5 * (lv[1] + (x[t] - means[1]) * (x[t] - means[1]) / var[1]);
        if (t == 0) {
            lat0[0] = log(0.5) + f0;
            lat1[0] = log(0.5) + f1;
            continue;
        }
        double p0 = lat0[t - 1], p1 = lat1[t - 1];
        double s0a = p0 + lt[0][0], s0b = p1 + lt[1][0], s1a = p0 + lt[0][1], s1b = p1 + lt[1][1];
        lat0[t] = (s0a > s0b ? s0a : s0b) + f0;
        lat1[t] = (s1a > s1b ? s1a : s1b) + f1;
    }
    double end0 = lat0[n - 1], end1 = lat1[n - 1];
    if (near(end1, end0, fabs(end0) > 1.0 ? fabs(end0) : 1.0)) unsure = 1;
    uint8_t st = end1 > end0;
    lab[n - 1] = st;
    for (int64_t t = n - 2; t >= 0; t--) {
        double v0 = lat0[t] + lt[0][st], v1 = lat1[t] + lt[1][st];
        if (near(v1, v0, fabs(v0) > 1.0 ? fabs(v0) : 1.0)) unsure = 1;
        st = v1 >= v0;
        lab[t] = st;
    }
    if (near(means[1], means[0], fabs(means[0]) > 1.0 ? fabs(means[0]) : 1.0)) unsure = 1;
    uint8_t e_state = means[1] > means[0];
    for (int64_t t = 0; t < n; t++) lab[t] = lab[t] == e_state;
    return unsure;
}

/* Min-run smoothing in place: runs are those of the labels as given; a run shorter than min_run takes
   the label of the row before it (a leading run: of the row after it), left to right. */
static void smooth_runs(uint8_t *lab, int64_t n, int64_t min_run, uint8_t *orig) {
    if (n == 0 || min_run <= 1) return;
    memcpy(orig, lab, (size_t)n);
    for (int64_t i = 0; i < n;) {
        int64_t j = i + 1;
        while (j < n && orig[j] == orig[i]) j++;
        if (j - i < min_run) {
            if (i > 0)
                memset(lab + i, lab[i - 1], (size_t)(j - i));
            else if (j < n)
                memset(lab + i, lab[j], (size_t)(j - i));
        }
        i = j;
    }
}

static PyObject *phases(PyObject *self, PyObject *args) {
    PyObject *slopes_o, *len_o, *lab_o, *status_o, *z_o;
    double rho, u[3];
    long long min_run;
    int given_z = 0; /* the input is already z-scores (tests: decode exactly these values) */
    if (!PyArg_ParseTuple(args, "OOdL(ddd)OOO|p", &slopes_o, &len_o, &rho, &min_run, &u[0], &u[1], &u[2], &lab_o,
                          &status_o, &z_o, &given_z))
        return NULL;
    buf_t b[5];
    memset(b, 0, sizeof b);
    PyObject *ret = NULL;
    double *w = NULL;
    uint8_t *w8 = NULL;
    if (get_buf(slopes_o, &b[0], 0, 8, "slopes") || get_buf(len_o, &b[1], 0, 8, "lengths") ||
        get_buf(lab_o, &b[2], 1, 1, "labels") || get_buf(status_o, &b[3], 1, 1, "status") ||
        get_buf(z_o, &b[4], 1, 8, "z"))
        goto done;
    const double *slopes = PTR(b[0], double);
    const int64_t *len = PTR(b[1], int64_t);
    int64_t n_series = LEN(b[1], int64_t), total = 0, longest = 0;
    for (int64_t k = 0; k < n_series; k++) {
        if (len[k] < 0) break;
        total += len[k];
        longest = len[k] > longest ? len[k] : longest;
    }
    if (total != LEN(b[0], double) || check_len(&b[2], total, 1, "labels") || check_len(&b[3], n_series, 1, "status") ||
        check_len(&b[4], total, 8, "z")) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "nex kernel: slopes do not match the series lengths");
        goto done;
    }
    w = malloc((size_t)(longest + 1) * 5 * sizeof(double));
    w8 = malloc((size_t)(longest + 1) * 2);
    if (!w || !w8) {
        PyErr_NoMemory();
        goto done;
    }
    uint8_t *lab = PTR(b[2], uint8_t), *status = PTR(b[3], uint8_t);
    double *z = PTR(b[4], double);
    Py_BEGIN_ALLOW_THREADS;
    int64_t off = 0;
    for (int64_t k = 0; k < n_series; k++) {
        int64_t n = len[k];
        status[k] = 0;
        if (n < 3) { /* too short for phases: all Exploit */
            memset(lab + off, 0, (size_t)n);
            memset(z + off, 0, (size_t)n * sizeof(double));
        } else if (given_z ? (memcpy(z + off, slopes + off, (size_t)n * sizeof(double)), 0)
                           : !robust_z(slopes + off, n, z + off, w)) { /* no usable MAD: E = z > 0 */
            for (int64_t j = 0; j < n; j++) lab[off + j] = z[off + j] > 0;
            smooth_runs(lab + off, n, min_run, w8);
        } else {
            if (decode(z + off, n, rho, u, lab + off, w8, w))
                status[k] = 1; /* unsure: the caller decodes z with the libraries, then smooths */
            else
                smooth_runs(lab + off, n, min_run, w8);
        }
        off += n;
    }
    Py_END_ALLOW_THREADS;
    ret = Py_NewRef(Py_None);
done:
    free(w);
    free(w8);
    release_all(b, 5);
    return ret;
}

static PyMethodDef methods[] = {
    {"scan_rows", scan_rows, METH_VARARGS, "Sanitise rows and flag the entries that introduce their neuron."},
    {"credit", credit, METH_VARARGS, "Add the credit of every response's effective and redundant cycles."},
    {"gmf", gmf, METH_VARARGS, "Good-Mass Fraction of every base vector."},
    {"phases", phases, METH_VARARGS, "Explore/exploit labels of many responses' novelty slopes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels", "Compiled inner loops of the NEX core.", -1, methods, NULL, NULL, NULL, NULL};

/* Bumped whenever a function's arguments or results change; nex_interp/core/kernel.py refuses a build
   of another ABI (an extension left over from before a `git pull`) and runs the plain path. */
#define NEX_KERNEL_ABI 6

PyMODINIT_FUNC PyInit__kernels(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "ABI", NEX_KERNEL_ABI) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
