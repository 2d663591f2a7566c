/*
 * The in-process window's LSH band table and signatures, compiled; and MinHash signing.
 *
 * BandIndex holds, for every distinct text in a MemoryStore window, its MinHash
 * signature (uint32 values) and its band keys, and for every band key the texts
 * that share it (at most `cap`, BAND_TEXTS in window.py). It finds a request's near
 * duplicates in one call: the union of each text's band buckets, each candidate's
 * signature compared value by value. The same answers as the pure-Python table in
 * window.py (tests/model/test_campaign_index.py runs both side by side); only faster
 * at a full window, where every request also evicts what it displaces.
 *
 * minhash() and local_bands() compute Signer's signatures and local band keys value for value
 * (tests/model/test_campaign_index.py compares them with the array code in window.py): a
 * request's signing in one call that holds the interpreter lock throughout, where the array
 * code made a dozen NumPy calls, each a chance for another thread to take the lock.
 *
 * Memory comes from PyMem_Raw*, so tracemalloc (benchmarks/bench_campaign.py) counts it.
 * Not thread-safe by itself: DuplicateWindow serialises access under its lock.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------ a uint64 -> uint64 map */

/* Open addressing, linear probing, backward-shift deletion (no tombstones). Key and value sit
 * side by side, so a lookup at a full window (millions of slots, far beyond the CPU's caches)
 * usually reads one cache line. Key 0 marks an empty slot; a real key 0 lives in the extra slot
 * at index `cap` (`has_zero`). */
typedef struct {
    uint64_t key, val;
} Slot;

typedef struct {
    Slot *slots; /* cap + 1 of them, or NULL */
    size_t cap;  /* a power of two, or 0 */
    size_t len;
    int has_zero;
} Map;

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x;
}

/* Slots to visit when iterating (used ones by map_used). */
static inline size_t map_span(const Map *m) { return m->cap ? m->cap + 1 : 0; }

static inline int map_used(const Map *m, size_t i) { return i < m->cap ? m->slots[i].key != 0 : m->has_zero; }

static void map_free(Map *m) {
    PyMem_RawFree(m->slots);
    m->slots = NULL;
    m->cap = m->len = 0;
    m->has_zero = 0;
}

/* Index of key's slot, or -1. */
static inline Py_ssize_t map_find(const Map *m, uint64_t key) {
    if (!m->cap) return -1;
    if (key == 0) return m->has_zero ? (Py_ssize_t)m->cap : -1;
    size_t mask = m->cap - 1, i = mix64(key) & mask;
    for (;;) {
        uint64_t k = m->slots[i].key;
        if (k == key) return (Py_ssize_t)i;
        if (k == 0) return -1;
        i = (i + 1) & mask;
    }
}

static int map_resize(Map *m, size_t cap) {
    Slot *slots = PyMem_RawCalloc(cap + 1, sizeof(Slot));
    if (!slots) {
        PyErr_NoMemory();
        return -1;
    }
    size_t mask = cap - 1;
    for (size_t j = 0; j < m->cap; j++) {
        uint64_t k = m->slots[j].key;
        if (k == 0) continue;
        size_t i = mix64(k) & mask;
        while (slots[i].key) i = (i + 1) & mask;
        slots[i] = m->slots[j];
    }
    if (m->has_zero) slots[cap] = m->slots[m->cap];
    PyMem_RawFree(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

/* Slot for a key not in the map (the caller checked), growing at 70 % load; -1 on no memory. */
static Py_ssize_t map_insert_new(Map *m, uint64_t key, uint64_t val) {
    if ((m->len + 1) * 10 > m->cap * 7) {
        if (map_resize(m, m->cap ? m->cap * 2 : 64) < 0) return -1;
    }
    m->len++;
    if (key == 0) {
        m->has_zero = 1;
        m->slots[m->cap].key = 0;
        m->slots[m->cap].val = val;
        return (Py_ssize_t)m->cap;
    }
    size_t mask = m->cap - 1, i = mix64(key) & mask;
    while (m->slots[i].key) i = (i + 1) & mask;
    m->slots[i].key = key;
    m->slots[i].val = val;
    return (Py_ssize_t)i;
}

/* Empty slot i, moving later entries of its probe run back (backward-shift deletion). */
static void map_delete_at(Map *m, size_t i) {
    m->len--;
    if (i == m->cap) {
        m->has_zero = 0;
        return;
    }
    size_t mask = m->cap - 1, j = i;
    for (;;) {
        j = (j + 1) & mask;
        uint64_t k = m->slots[j].key;
        if (k == 0) break;
        size_t home = mix64(k) & mask;
        /* Entry j may fill the hole at i when its home is not cyclically in (i, j]. */
        int stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (stays) continue;
        m->slots[i] = m->slots[j];
        i = j;
    }
    m->slots[i].key = 0;
    m->slots[i].val = 0;
}

/* ------------------------------------------------------------ texts and buckets */

typedef struct {
    uint32_t nbands;
    uint32_t has_sig; /* 0: an empty form's text, in its buckets but never anyone's near copy */
    int64_t count;    /* WindowCore: observations of the text held */
    uint64_t cluster; /* WindowCore: its cluster's key */
    double first_seen; /* WindowCore: when its cluster was first seen */
    uint64_t *bands;  /* into the same block, after sig */
    uint32_t sig[];   /* width values when has_sig */
} Text;

/* A bucket of two or more texts; a bucket of one is the text key itself (tag 0 in the low bit
 * of `multi`'s map value would be fragile, so buckets live in two maps: `single` and `multi`). */
typedef struct {
    uint32_t n, cap;
    uint64_t items[];
} Bucket;

typedef struct {
    PyObject_HEAD
    Map texts;  /* text key -> Text* */
    Map single; /* band key -> the one text key in its bucket */
    Map multi;  /* band key -> Bucket* (two or more texts) */
    Py_ssize_t width; /* signature values; 0 until the first text */
    uint32_t cap;     /* texts one bucket takes at most */
    /* Candidate dedup for one text: a generation-stamped open-addressing set. */
    uint64_t *seen_keys;
    uint32_t *seen_gen;
    size_t seen_cap;
    uint32_t gen;
} BandIndex;

static void free_contents(BandIndex *self) {
    for (size_t i = 0; i < map_span(&self->texts); i++)
        if (map_used(&self->texts, i)) PyMem_RawFree((void *)(uintptr_t)self->texts.slots[i].val);
    for (size_t i = 0; i < map_span(&self->multi); i++)
        if (map_used(&self->multi, i)) PyMem_RawFree((void *)(uintptr_t)self->multi.slots[i].val);
    map_free(&self->texts);
    map_free(&self->single);
    map_free(&self->multi);
}

static int BandIndex_init(BandIndex *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"cap", NULL};
    unsigned int cap = 64;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|I", kwlist, &cap)) return -1;
    if (cap < 1) {
        PyErr_SetString(PyExc_ValueError, "cap must be at least 1");
        return -1;
    }
    free_contents(self);
    self->cap = cap;
    self->width = 0;
    return 0;
}

static void BandIndex_dealloc(BandIndex *self) {
    free_contents(self);
    PyMem_RawFree(self->seen_keys);
    PyMem_RawFree(self->seen_gen);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Read a signature buffer of uint32 values; sets width on first use. 0 on success. */
static int read_sig(BandIndex *self, PyObject *obj, Py_buffer *view) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len % 4 != 0 || view->len == 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "a signature is a non-empty run of uint32 values");
        return -1;
    }
    Py_ssize_t width = view->len / 4;
    if (self->width == 0) self->width = width;
    if (width != self->width) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "signature of %zd values in an index of %zd", width, self->width);
        return -1;
    }
    return 0;
}

/* Band keys of a tuple or list of ints into out (at most max); count or -1. */
static Py_ssize_t read_bands(PyObject *obj, uint64_t *out, Py_ssize_t max) {
    PyObject *seq = PySequence_Fast(obj, "band keys must be a sequence of ints");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > max) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "%zd band keys; at most %zd", n, max);
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = PyLong_AsUnsignedLongLongMask(items[i]);
        if (out[i] == (uint64_t)-1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return n;
}

#define MAX_BANDS 1024

static int bucket_add(BandIndex *self, uint64_t band, uint64_t text) {
    /* Buckets of one first: most band keys are in no other text. */
    Py_ssize_t s = map_find(&self->single, band);
    if (s >= 0) {
        uint64_t other = self->single.slots[s].val;
        if (other == text || self->cap < 2) return 0;
        uint32_t bcap = self->cap < 4 ? self->cap : 4;
        Bucket *b = PyMem_RawMalloc(sizeof(Bucket) + bcap * sizeof(uint64_t));
        if (!b) {
            PyErr_NoMemory();
            return -1;
        }
        b->n = 2;
        b->cap = bcap;
        b->items[0] = other;
        b->items[1] = text;
        if (map_insert_new(&self->multi, band, (uint64_t)(uintptr_t)b) < 0) {
            PyMem_RawFree(b);
            return -1;
        }
        map_delete_at(&self->single, (size_t)s);
        return 0;
    }
    s = map_find(&self->multi, band);
    if (s < 0) return map_insert_new(&self->single, band, text) < 0 ? -1 : 0;
    Bucket *b = (Bucket *)(uintptr_t)self->multi.slots[s].val;
    if (b->n >= self->cap) return 0; /* full: takes no new text */
    for (uint32_t k = 0; k < b->n; k++)
        if (b->items[k] == text) return 0;
    if (b->n == b->cap) {
        uint32_t ncap = b->cap * 2 < self->cap ? b->cap * 2 : self->cap;
        Bucket *nb = PyMem_RawRealloc(b, sizeof(Bucket) + ncap * sizeof(uint64_t));
        if (!nb) {
            PyErr_NoMemory();
            return -1;
        }
        nb->cap = ncap;
        b = nb;
        self->multi.slots[s].val = (uint64_t)(uintptr_t)b;
    }
    b->items[b->n++] = text;
    return 0;
}

static int bucket_remove(BandIndex *self, uint64_t band, uint64_t text) {
    Py_ssize_t s = map_find(&self->single, band);
    if (s >= 0) {
        if (self->single.slots[s].val == text) map_delete_at(&self->single, (size_t)s);
        return 0;
    }
    s = map_find(&self->multi, band);
    if (s < 0) return 0;
    Bucket *b = (Bucket *)(uintptr_t)self->multi.slots[s].val;
    for (uint32_t k = 0; k < b->n; k++) {
        if (b->items[k] != text) continue;
        b->items[k] = b->items[--b->n];
        if (b->n == 1) { /* back to a bucket of one */
            uint64_t last = b->items[0];
            map_delete_at(&self->multi, (size_t)s);
            PyMem_RawFree(b);
            if (map_insert_new(&self->single, band, last) < 0) return -1;
        }
        break;
    }
    return 0;
}

/* ------------------------------------------------------------ methods */

PyDoc_STRVAR(insert_doc,
"insert(key, sig, bands)\n--\n\n"
"Add a text (64-bit key) with its signature (a buffer of uint32 values, or None) and\n"
"band keys; a text already held is left as it is. A full bucket takes no new text.");

/* The held text `key`, or a new one with its signature (None: none) and band keys added to
 * its buckets; NULL with an exception set on bad input or no memory. */
static Text *text_insert(BandIndex *self, uint64_t key, PyObject *sig_obj, PyObject *bands_obj) {
    Py_ssize_t s = map_find(&self->texts, key);
    if (s >= 0) return (Text *)(uintptr_t)self->texts.slots[s].val;
    uint64_t bands[MAX_BANDS];
    Py_ssize_t nb = read_bands(bands_obj, bands, MAX_BANDS);
    if (nb < 0) return NULL;
    Py_buffer view;
    int has_sig = sig_obj != Py_None;
    if (has_sig && read_sig(self, sig_obj, &view) < 0) return NULL;
    size_t sig_bytes = has_sig ? (size_t)self->width * sizeof(uint32_t) : 0;
    size_t sig_padded = (sig_bytes + 7) & ~(size_t)7;
    Text *t = PyMem_RawMalloc(sizeof(Text) + sig_padded + (size_t)nb * sizeof(uint64_t));
    if (!t) {
        if (has_sig) PyBuffer_Release(&view);
        PyErr_NoMemory();
        return NULL;
    }
    if (has_sig) {
        memcpy(t->sig, view.buf, sig_bytes);
        PyBuffer_Release(&view);
    }
    t->has_sig = (uint32_t)has_sig;
    t->count = 0;
    t->cluster = 0;
    t->first_seen = 0.0;
    t->nbands = (uint32_t)nb;
    t->bands = (uint64_t *)((char *)t->sig + sig_padded);
    memcpy(t->bands, bands, (size_t)nb * sizeof(uint64_t));
    if (map_insert_new(&self->texts, key, (uint64_t)(uintptr_t)t) < 0) {
        PyMem_RawFree(t);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nb; i++)
        if (bucket_add(self, bands[i], key) < 0) return NULL;
    return t;
}

/* Forget text `key` (held or not) and take it out of its buckets. */
static int text_remove(BandIndex *self, uint64_t key) {
    Py_ssize_t s = map_find(&self->texts, key);
    if (s < 0) return 0;
    Text *t = (Text *)(uintptr_t)self->texts.slots[s].val;
    map_delete_at(&self->texts, (size_t)s);
    int rc = 0;
    for (uint32_t i = 0; i < t->nbands && rc == 0; i++) rc = bucket_remove(self, t->bands[i], key);
    PyMem_RawFree(t);
    return rc;
}

static PyObject *BandIndex_insert(BandIndex *self, PyObject *args) {
    unsigned long long key;
    PyObject *sig_obj, *bands_obj;
    if (!PyArg_ParseTuple(args, "KOO", &key, &sig_obj, &bands_obj)) return NULL;
    if (!text_insert(self, key, sig_obj, bands_obj)) return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(remove_doc,
"remove(key)\n--\n\n"
"Forget a text and take it out of its buckets; a key not held is ignored.");

static PyObject *BandIndex_remove(BandIndex *self, PyObject *arg) {
    uint64_t key = PyLong_AsUnsignedLongLongMask(arg);
    if (key == (uint64_t)-1 && PyErr_Occurred()) return NULL;
    if (text_remove(self, key) < 0) return NULL;
    Py_RETURN_NONE;
}

/* The texts in band's bucket: `*n` of them at the returned address (`one` holds a bucket of
 * one); NULL for a band key not held. */
static inline const uint64_t *bucket_items(const BandIndex *self, uint64_t band, uint64_t *one, uint32_t *n) {
    Py_ssize_t s = map_find(&self->single, band);
    if (s >= 0) {
        *one = self->single.slots[s].val;
        *n = 1;
        return one;
    }
    s = map_find(&self->multi, band);
    if (s < 0) return NULL;
    const Bucket *b = (const Bucket *)(uintptr_t)self->multi.slots[s].val;
    *n = b->n;
    return b->items;
}

/* Add a candidate to the per-text seen set; 1 when new. */
static inline int seen_add(BandIndex *self, uint64_t key) {
    size_t mask = self->seen_cap - 1, i = mix64(key) & mask;
    while (self->seen_gen[i] == self->gen) {
        if (self->seen_keys[i] == key) return 0;
        i = (i + 1) & mask;
    }
    self->seen_gen[i] = self->gen;
    self->seen_keys[i] = key;
    return 1;
}

static int seen_reserve(BandIndex *self, size_t most) {
    size_t need = 64;
    while (need < most * 2) need *= 2;
    if (need <= self->seen_cap) return 0;
    uint64_t *keys = PyMem_RawMalloc(need * sizeof(uint64_t));
    uint32_t *gen = PyMem_RawCalloc(need, sizeof(uint32_t));
    if (!keys || !gen) {
        PyMem_RawFree(keys);
        PyMem_RawFree(gen);
        PyErr_NoMemory();
        return -1;
    }
    PyMem_RawFree(self->seen_keys);
    PyMem_RawFree(self->seen_gen);
    self->seen_keys = keys;
    self->seen_gen = gen;
    self->seen_cap = need;
    self->gen = 0;
    return 0;
}

/* Near duplicates of one text among the held ones, added to the set `out`. */
static int near_one(BandIndex *self, uint64_t key, const uint32_t *sig, const uint64_t *bands,
                    Py_ssize_t nb, Py_ssize_t min_equal, PyObject *out) {
    if (seen_reserve(self, (size_t)nb * self->cap) < 0) return -1;
    if (++self->gen == 0) { /* wrapped: forget every stamp */
        memset(self->seen_gen, 0, self->seen_cap * sizeof(uint32_t));
        self->gen = 1;
    }
    seen_add(self, key); /* never a candidate of itself */
    Py_ssize_t width = self->width;
    for (Py_ssize_t i = 0; i < nb; i++) {
        uint32_t n;
        uint64_t one;
        const uint64_t *items = bucket_items(self, bands[i], &one, &n);
        if (!items) continue;
        for (uint32_t k = 0; k < n; k++) {
            uint64_t cand = items[k];
            if (!seen_add(self, cand)) continue;
            Py_ssize_t ts = map_find(&self->texts, cand);
            if (ts < 0) continue;
            const Text *held = (const Text *)(uintptr_t)self->texts.slots[ts].val;
            if (!held->has_sig) continue;
            const uint32_t *other = held->sig;
            Py_ssize_t equal = 0;
            for (Py_ssize_t v = 0; v < width; v++) equal += (other[v] == sig[v]);
            if (equal >= min_equal) {
                PyObject *c = PyLong_FromUnsignedLongLong(cand);
                if (!c || PySet_Add(out, c) < 0) {
                    Py_XDECREF(c);
                    return -1;
                }
                Py_DECREF(c);
            }
        }
    }
    return 0;
}

PyDoc_STRVAR(near_many_doc,
"near_many(keys, sigs, bands, min_equal)\n--\n\n"
"For each text of a request (its key, signature or None, band keys), the set of held\n"
"texts sharing a band with it whose signatures agree in at least min_equal values;\n"
"the text itself is never among them. Returns a list of sets, in order.");

static PyObject *BandIndex_near_many(BandIndex *self, PyObject *args) {
    PyObject *keys_obj, *sigs_obj, *bands_obj;
    Py_ssize_t min_equal;
    if (!PyArg_ParseTuple(args, "OOOn", &keys_obj, &sigs_obj, &bands_obj, &min_equal)) return NULL;
    PyObject *keys = PySequence_Fast(keys_obj, "keys must be a sequence");
    if (!keys) return NULL;
    PyObject *sigs = PySequence_Fast(sigs_obj, "sigs must be a sequence");
    PyObject *bandss = sigs ? PySequence_Fast(bands_obj, "bands must be a sequence") : NULL;
    PyObject *result = NULL;
    if (!bandss) goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(keys);
    if (PySequence_Fast_GET_SIZE(sigs) != n || PySequence_Fast_GET_SIZE(bandss) != n) {
        PyErr_SetString(PyExc_ValueError, "keys, sigs and bands differ in length");
        goto done;
    }
    result = PyList_New(n);
    if (!result) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *out = PySet_New(NULL);
        if (!out) goto fail;
        PyList_SET_ITEM(result, i, out);
        PyObject *sig_obj = PySequence_Fast_GET_ITEM(sigs, i);
        if (sig_obj == Py_None || self->texts.len == 0) continue;
        uint64_t key = PyLong_AsUnsignedLongLongMask(PySequence_Fast_GET_ITEM(keys, i));
        if (key == (uint64_t)-1 && PyErr_Occurred()) goto fail;
        uint64_t bands[MAX_BANDS];
        Py_ssize_t nb = read_bands(PySequence_Fast_GET_ITEM(bandss, i), bands, MAX_BANDS);
        if (nb < 0) goto fail;
        if (nb == 0) continue;
        Py_buffer view;
        if (read_sig(self, sig_obj, &view) < 0) goto fail;
        int rc = near_one(self, key, (const uint32_t *)view.buf, bands, nb, min_equal, out);
        PyBuffer_Release(&view);
        if (rc < 0) goto fail;
    }
    goto done;
fail:
    Py_CLEAR(result);
done:
    Py_XDECREF(keys);
    Py_XDECREF(sigs);
    Py_XDECREF(bandss);
    return result;
}

PyDoc_STRVAR(members_doc,
"members(bands)\n--\n\n"
"The texts in each of the given band keys' buckets, as a dict of sets (bands with\n"
"no text left out).");

static PyObject *BandIndex_members(BandIndex *self, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "band keys must be a sequence of ints");
    if (!seq) return NULL;
    PyObject *out = PyDict_New();
    if (!out) goto fail;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        uint64_t band = PyLong_AsUnsignedLongLongMask(item);
        if (band == (uint64_t)-1 && PyErr_Occurred()) goto fail;
        uint32_t count;
        uint64_t one;
        const uint64_t *items = bucket_items(self, band, &one, &count);
        if (!items) continue;
        PyObject *set = PySet_New(NULL);
        if (!set) goto fail;
        for (uint32_t k = 0; k < count; k++) {
            PyObject *c = PyLong_FromUnsignedLongLong(items[k]);
            if (!c || PySet_Add(set, c) < 0) {
                Py_XDECREF(c);
                Py_DECREF(set);
                goto fail;
            }
            Py_DECREF(c);
        }
        int rc = PyDict_SetItem(out, item, set);
        Py_DECREF(set);
        if (rc < 0) goto fail;
    }
    Py_DECREF(seq);
    return out;
fail:
    Py_DECREF(seq);
    Py_XDECREF(out);
    return NULL;
}

PyDoc_STRVAR(bucket_sizes_doc,
"bucket_sizes()\n--\n\n"
"The number of texts in each band bucket, one int per band key held.");

static PyObject *BandIndex_bucket_sizes(BandIndex *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (size_t i = 0; i < map_span(&self->single); i++) {
        if (!map_used(&self->single, i)) continue;
        PyObject *one = PyLong_FromLong(1);
        if (!one || PyList_Append(out, one) < 0) {
            Py_XDECREF(one);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(one);
    }
    for (size_t i = 0; i < map_span(&self->multi); i++) {
        if (!map_used(&self->multi, i)) continue;
        PyObject *c = PyLong_FromUnsignedLong(((Bucket *)(uintptr_t)self->multi.slots[i].val)->n);
        if (!c || PyList_Append(out, c) < 0) {
            Py_XDECREF(c);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(c);
    }
    return out;
}

PyDoc_STRVAR(signature_doc,
"signature(key)\n--\n\n"
"A held text's signature as bytes (uint32 values), or None (a key not held, or held\n"
"without a signature).");

static PyObject *BandIndex_signature(BandIndex *self, PyObject *arg) {
    uint64_t key = PyLong_AsUnsignedLongLongMask(arg);
    if (key == (uint64_t)-1 && PyErr_Occurred()) return NULL;
    Py_ssize_t s = map_find(&self->texts, key);
    if (s < 0) Py_RETURN_NONE;
    Text *t = (Text *)(uintptr_t)self->texts.slots[s].val;
    if (!t->has_sig) Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)t->sig, self->width * (Py_ssize_t)sizeof(uint32_t));
}

static PyObject *BandIndex_clear(BandIndex *self, PyObject *Py_UNUSED(ignored)) {
    free_contents(self);
    self->width = 0;
    Py_RETURN_NONE;
}

static Py_ssize_t BandIndex_len(BandIndex *self) { return (Py_ssize_t)self->texts.len; }

static PyObject *BandIndex_get_cap(BandIndex *self, void *closure) { return PyLong_FromUnsignedLong(self->cap); }

static PyObject *BandIndex_get_bands(BandIndex *self, void *closure) {
    return PyLong_FromSize_t(self->single.len + self->multi.len);
}

static PyMethodDef BandIndex_methods[] = {
    {"insert", (PyCFunction)BandIndex_insert, METH_VARARGS, insert_doc},
    {"remove", (PyCFunction)BandIndex_remove, METH_O, remove_doc},
    {"near_many", (PyCFunction)BandIndex_near_many, METH_VARARGS, near_many_doc},
    {"members", (PyCFunction)BandIndex_members, METH_O, members_doc},
    {"bucket_sizes", (PyCFunction)BandIndex_bucket_sizes, METH_NOARGS, bucket_sizes_doc},
    {"signature", (PyCFunction)BandIndex_signature, METH_O, signature_doc},
    {"clear", (PyCFunction)BandIndex_clear, METH_NOARGS, "clear()\n--\n\nForget every text."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef BandIndex_getset[] = {
    {"cap", (getter)BandIndex_get_cap, NULL, "texts one bucket takes at most", NULL},
    {"bands", (getter)BandIndex_get_bands, NULL, "band keys held (buckets with one text or more)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods BandIndex_as_sequence = {
    .sq_length = (lenfunc)BandIndex_len,
};

static PyTypeObject BandIndexType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "zhenping.model.campaign._bands.BandIndex",
    .tp_doc = PyDoc_STR("BandIndex(cap=64)\n--\n\n"
                        "Signatures and LSH band buckets of a window's distinct texts; a bucket\n"
                        "takes at most `cap` texts. len() is the number of texts held."),
    .tp_basicsize = sizeof(BandIndex),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)BandIndex_init,
    .tp_dealloc = (destructor)BandIndex_dealloc,
    .tp_methods = BandIndex_methods,
    .tp_getset = BandIndex_getset,
    .tp_as_sequence = &BandIndex_as_sequence,
};

/* ------------------------------------------------------------ the whole in-process window */

/* One observation: a comment seen at `time`, its text key, its caller key if it has one;
 * `gone` once released early (its id was retired or replaced) while still in the ring. */
typedef struct {
    double time;
    uint64_t key;
    uint64_t caller;
    uint8_t has_caller;
    uint8_t gone;
} Obs;

/* A BandIndex that also keeps the window's observations (a ring in arrival order, numbered from
 * the first ever added), each text's count, cluster and first-seen time, and the caller keys:
 * MemoryStore's state, so that eviction, additions and lookups make no Python object per comment. */
typedef struct {
    BandIndex base;
    Obs *ring;
    size_t ring_cap; /* a power of two, or 0 */
    size_t ring_start, ring_len;
    uint64_t head; /* sequence number of the oldest observation held */
    Map callers;   /* caller key -> sequence number of its observation */
} WindowCore;

static PyTypeObject HeldTextType;
static PyStructSequence_Field held_fields[] = {
    {"count", "observations of the text in the window"},
    {"cluster", "its cluster's key"},
    {"first_seen", "when its cluster was first seen, seconds since the epoch"},
    {NULL, NULL},
};
static PyStructSequence_Desc held_desc = {
    "zhenping.model.campaign._bands.HeldText", "A text's record in a WindowCore.", held_fields, 3,
};

static inline Obs *obs_at(WindowCore *w, uint64_t seq) {
    return &w->ring[(w->ring_start + (size_t)(seq - w->head)) & (w->ring_cap - 1)];
}

static int core_drop(WindowCore *w, uint64_t key) {
    Py_ssize_t s = map_find(&w->base.texts, key);
    if (s < 0) return 0;
    Text *t = (Text *)(uintptr_t)w->base.texts.slots[s].val;
    if (--t->count <= 0) return text_remove(&w->base, key);
    return 0;
}

/* Release observation `seq` (in the ring) of caller key `caller` early. */
static int core_release(WindowCore *w, uint64_t seq, uint64_t caller) {
    Obs *o = obs_at(w, seq);
    if (!o->gone) {
        o->gone = 1;
        if (core_drop(w, o->key) < 0) return -1;
    }
    Py_ssize_t s = map_find(&w->callers, caller);
    if (s >= 0 && w->callers.slots[s].val == seq) map_delete_at(&w->callers, (size_t)s);
    return 0;
}

static int core_push(WindowCore *w, double time, uint64_t key, int has_caller, uint64_t caller) {
    if (w->ring_len == w->ring_cap) {
        size_t cap = w->ring_cap ? w->ring_cap * 2 : 1024;
        Obs *ring = PyMem_RawMalloc(cap * sizeof(Obs));
        if (!ring) {
            PyErr_NoMemory();
            return -1;
        }
        for (size_t i = 0; i < w->ring_len; i++) ring[i] = w->ring[(w->ring_start + i) & (w->ring_cap - 1)];
        PyMem_RawFree(w->ring);
        w->ring = ring;
        w->ring_cap = cap;
        w->ring_start = 0;
    }
    Obs *o = &w->ring[(w->ring_start + w->ring_len) & (w->ring_cap - 1)];
    o->time = time;
    o->key = key;
    o->caller = caller;
    o->has_caller = (uint8_t)has_caller;
    o->gone = 0;
    w->ring_len++;
    return 0;
}

static void core_free_ring(WindowCore *w) {
    PyMem_RawFree(w->ring);
    w->ring = NULL;
    w->ring_cap = w->ring_start = w->ring_len = 0;
    w->head = 0;
    map_free(&w->callers);
}

static int WindowCore_init(WindowCore *self, PyObject *args, PyObject *kwds) {
    if (BandIndex_init(&self->base, args, kwds) < 0) return -1;
    core_free_ring(self);
    return 0;
}

static void WindowCore_dealloc(WindowCore *self) {
    core_free_ring(self);
    BandIndex_dealloc(&self->base);
}

PyDoc_STRVAR(core_evict_doc,
"evict(now, ttl, max_size)\n--\n\n"
"Drop the oldest observations while more than max_size are held or (ttl > 0) the oldest\n"
"is older than now - ttl; a text leaves with its last observation.");

static PyObject *WindowCore_evict(WindowCore *w, PyObject *args) {
    double now, ttl;
    Py_ssize_t max_size;
    if (!PyArg_ParseTuple(args, "ddn", &now, &ttl, &max_size)) return NULL;
    int timed = ttl > 0;
    double cutoff = now - ttl;
    size_t limit = max_size < 0 ? 0 : (size_t)max_size;
    while (w->ring_len && (w->ring_len > limit || (timed && w->ring[w->ring_start].time < cutoff))) {
        Obs o = w->ring[w->ring_start];
        w->ring_start = (w->ring_start + 1) & (w->ring_cap - 1);
        w->ring_len--;
        uint64_t seq = w->head++;
        if (!o.gone && core_drop(w, o.key) < 0) return NULL;
        if (o.has_caller) {
            Py_ssize_t s = map_find(&w->callers, o.caller);
            if (s >= 0 && w->callers.slots[s].val == seq) map_delete_at(&w->callers, (size_t)s);
        }
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(core_retire_doc,
"retire(callers)\n--\n\n"
"Release the observations of these caller keys now (their texts count one fewer).");

static PyObject *WindowCore_retire(WindowCore *w, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "callers must be a sequence of ints");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t caller = PyLong_AsUnsignedLongLongMask(PySequence_Fast_GET_ITEM(seq, i));
        if (caller == (uint64_t)-1 && PyErr_Occurred()) goto fail;
        Py_ssize_t s = map_find(&w->callers, caller);
        if (s >= 0 && core_release(w, w->callers.slots[s].val, caller) < 0) goto fail;
    }
    Py_DECREF(seq);
    Py_RETURN_NONE;
fail:
    Py_DECREF(seq);
    return NULL;
}

PyDoc_STRVAR(core_callers_doc,
"callers(keys)\n--\n\n"
"For the caller keys whose observation is held, the text key it holds (a dict).");

static PyObject *WindowCore_callers(WindowCore *w, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "keys must be a sequence of ints");
    if (!seq) return NULL;
    PyObject *out = PyDict_New();
    if (!out) goto fail;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        uint64_t caller = PyLong_AsUnsignedLongLongMask(item);
        if (caller == (uint64_t)-1 && PyErr_Occurred()) goto fail;
        Py_ssize_t s = map_find(&w->callers, caller);
        if (s < 0) continue;
        Obs *o = obs_at(w, w->callers.slots[s].val);
        if (o->gone) continue;
        PyObject *key = PyLong_FromUnsignedLongLong(o->key);
        if (!key) goto fail;
        int rc = PyDict_SetItem(out, item, key);
        Py_DECREF(key);
        if (rc < 0) goto fail;
    }
    Py_DECREF(seq);
    return out;
fail:
    Py_DECREF(seq);
    Py_XDECREF(out);
    return NULL;
}

PyDoc_STRVAR(core_add_doc,
"add(observations, now)\n--\n\n"
"Add observations, each (caller or None, text, cluster, first_seen, sig or None, bands):\n"
"a new text takes the cluster, first-seen time, signature and band keys given; a caller\n"
"key already held releases its earlier observation.");

static PyObject *WindowCore_add(WindowCore *w, PyObject *args) {
    PyObject *obs_obj;
    double now;
    if (!PyArg_ParseTuple(args, "Od", &obs_obj, &now)) return NULL;
    PyObject *obs = PySequence_Fast(obs_obj, "observations must be a sequence");
    if (!obs) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(obs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PySequence_Fast_GET_ITEM(obs, i);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 6) {
            PyErr_Format(PyExc_TypeError, "observation %zd is not a 6-tuple", i);
            goto fail;
        }
        PyObject *caller_obj = PyTuple_GET_ITEM(row, 0);
        int has_caller = caller_obj != Py_None;
        uint64_t caller = 0;
        if (has_caller) {
            caller = PyLong_AsUnsignedLongLongMask(caller_obj);
            if (caller == (uint64_t)-1 && PyErr_Occurred()) goto fail;
        }
        uint64_t text = PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(row, 1));
        if (text == (uint64_t)-1 && PyErr_Occurred()) goto fail;
        uint64_t cluster = PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(row, 2));
        if (cluster == (uint64_t)-1 && PyErr_Occurred()) goto fail;
        double first_seen = PyFloat_AsDouble(PyTuple_GET_ITEM(row, 3));
        if (first_seen == -1.0 && PyErr_Occurred()) goto fail;
        Text *t = text_insert(&w->base, text, PyTuple_GET_ITEM(row, 4), PyTuple_GET_ITEM(row, 5));
        if (!t) goto fail;
        if (t->count == 0) { /* new: a held text always counts one observation or more */
            t->cluster = cluster;
            t->first_seen = first_seen;
        }
        t->count++;
        if (core_push(w, now, text, has_caller, caller) < 0) goto fail;
        if (has_caller) {
            uint64_t seq = w->head + w->ring_len - 1;
            Py_ssize_t s = map_find(&w->callers, caller);
            /* The id's earlier observation (in this batch: ids already held were retired). */
            if (s >= 0 && core_release(w, w->callers.slots[s].val, caller) < 0) goto fail;
            s = map_find(&w->callers, caller);
            if (s >= 0)
                w->callers.slots[s].val = seq;
            else if (map_insert_new(&w->callers, caller, seq) < 0)
                goto fail;
        }
    }
    Py_DECREF(obs);
    Py_RETURN_NONE;
fail:
    Py_DECREF(obs);
    return NULL;
}

/* A dict of the held texts among `keys`: HeldText records, or (with sig) plain tuples that
 * also carry the signature as bytes (None without one). */
static PyObject *core_records(WindowCore *w, PyObject *keys_obj, int with_sig) {
    PyObject *it = PyObject_GetIter(keys_obj);
    if (!it) return NULL;
    PyObject *out = PyDict_New();
    PyObject *item;
    if (!out) goto fail;
    while ((item = PyIter_Next(it))) {
        uint64_t key = PyLong_AsUnsignedLongLongMask(item);
        if (key == (uint64_t)-1 && PyErr_Occurred()) {
            Py_DECREF(item);
            goto fail;
        }
        Py_ssize_t s = map_find(&w->base.texts, key);
        if (s < 0) {
            Py_DECREF(item);
            continue;
        }
        Text *t = (Text *)(uintptr_t)w->base.texts.slots[s].val;
        PyObject *rec = with_sig ? PyTuple_New(4) : PyStructSequence_New(&HeldTextType);
        PyObject *count = PyLong_FromLongLong(t->count);
        PyObject *cluster = PyLong_FromUnsignedLongLong(t->cluster);
        PyObject *first = PyFloat_FromDouble(t->first_seen);
        PyObject *sig = NULL;
        if (with_sig) {
            if (t->has_sig) {
                sig = PyBytes_FromStringAndSize((const char *)t->sig, w->base.width * (Py_ssize_t)sizeof(uint32_t));
            } else {
                sig = Py_None;
                Py_INCREF(sig);
            }
        }
        if (!rec || !count || !cluster || !first || (with_sig && !sig)) {
            Py_XDECREF(rec);
            Py_XDECREF(count);
            Py_XDECREF(cluster);
            Py_XDECREF(first);
            Py_XDECREF(sig);
            Py_DECREF(item);
            goto fail;
        }
        if (with_sig) {
            PyTuple_SET_ITEM(rec, 0, count);
            PyTuple_SET_ITEM(rec, 1, cluster);
            PyTuple_SET_ITEM(rec, 2, first);
            PyTuple_SET_ITEM(rec, 3, sig);
        } else {
            PyStructSequence_SET_ITEM(rec, 0, count);
            PyStructSequence_SET_ITEM(rec, 1, cluster);
            PyStructSequence_SET_ITEM(rec, 2, first);
        }
        int rc = PyDict_SetItem(out, item, rec);
        Py_DECREF(rec);
        Py_DECREF(item);
        if (rc < 0) goto fail;
    }
    if (PyErr_Occurred()) goto fail;
    Py_DECREF(it);
    return out;
fail:
    Py_DECREF(it);
    Py_XDECREF(out);
    return NULL;
}

PyDoc_STRVAR(core_held_doc,
"held(keys)\n--\n\n"
"The records (count, cluster, first_seen) of the held texts among the keys (any iterable).");

static PyObject *WindowCore_held(WindowCore *w, PyObject *arg) { return core_records(w, arg, 0); }

PyDoc_STRVAR(core_texts_doc,
"texts(keys)\n--\n\n"
"(count, cluster, first_seen, signature bytes or None) of the held texts among the keys.");

static PyObject *WindowCore_texts(WindowCore *w, PyObject *arg) { return core_records(w, arg, 1); }

static PyObject *WindowCore_clear(WindowCore *w, PyObject *Py_UNUSED(ignored)) {
    core_free_ring(w);
    free_contents(&w->base);
    w->base.width = 0;
    Py_RETURN_NONE;
}

static Py_ssize_t WindowCore_len(WindowCore *w) { return (Py_ssize_t)w->ring_len; }

static PyObject *WindowCore_get_distinct(WindowCore *w, void *closure) {
    return PyLong_FromSize_t(w->base.texts.len);
}

static PyMethodDef WindowCore_methods[] = {
    {"evict", (PyCFunction)WindowCore_evict, METH_VARARGS, core_evict_doc},
    {"retire", (PyCFunction)WindowCore_retire, METH_O, core_retire_doc},
    {"callers", (PyCFunction)WindowCore_callers, METH_O, core_callers_doc},
    {"add", (PyCFunction)WindowCore_add, METH_VARARGS, core_add_doc},
    {"held", (PyCFunction)WindowCore_held, METH_O, core_held_doc},
    {"texts", (PyCFunction)WindowCore_texts, METH_O, core_texts_doc},
    {"clear", (PyCFunction)WindowCore_clear, METH_NOARGS, "clear()\n--\n\nForget every observation and text."},
    {NULL, NULL, 0, NULL},
};

static PyObject *WindowCore_get_ids(WindowCore *w, void *closure) { return PyLong_FromSize_t(w->callers.len); }

static PyGetSetDef WindowCore_getset[] = {
    {"distinct_texts", (getter)WindowCore_get_distinct, NULL, "distinct texts held", NULL},
    {"ids_held", (getter)WindowCore_get_ids, NULL, "caller keys held", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods WindowCore_as_sequence = {
    .sq_length = (lenfunc)WindowCore_len,
};

static PyTypeObject WindowCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "zhenping.model.campaign._bands.WindowCore",
    .tp_doc = PyDoc_STR("WindowCore(cap=64)\n--\n\n"
                        "MemoryStore's state compiled: a BandIndex that also keeps the observations in\n"
                        "arrival order, each text's count, cluster and first-seen time, and the caller\n"
                        "keys. len() is the number of observations held."),
    .tp_basicsize = sizeof(WindowCore),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)WindowCore_init,
    .tp_dealloc = (destructor)WindowCore_dealloc,
    .tp_methods = WindowCore_methods,
    .tp_getset = WindowCore_getset,
    .tp_as_sequence = &WindowCore_as_sequence,
};

/* ------------------------------------------------------------ signing */

#define GRAM_BASE 0x100000001B3ULL
#define FMIX_1 0xFF51AFD7ED558CCDULL
#define FMIX_2 0xC4CEB9FE1A85EC53ULL
#define MIX_MULTIPLIER 0x9E3779B97F4A7C15ULL
#define MIX_FINAL 0xBF58476D1CE4E5B9ULL

/* A read-only buffer of `count` items of `size` bytes, or an error naming `what`. */
static int read_array(PyObject *obj, Py_buffer *view, Py_ssize_t size, Py_ssize_t count, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len != size * count) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", what, view->len, size * count);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(minhash_doc,
"minhash(forms, k, a, b)\n--\n\n"
"MinHash signatures of forms of k code points or more, as bytes (one row of len(a)\n"
"uint32 values per form): value i is the least (a[i] * h + b[i]) mod 2**32 over the\n"
"form's k-code-point shingles, h the high 32 bits of MurmurHash3's 64-bit finaliser of\n"
"a polynomial over the shingle's code points (base 0x100000001B3, modulo 2**64). The\n"
"arithmetic of Signer._sign in window.py, value for value.");

static PyObject *minhash(PyObject *module, PyObject *args) {
    PyObject *forms_obj, *a_obj, *b_obj;
    Py_ssize_t k;
    if (!PyArg_ParseTuple(args, "OnOO", &forms_obj, &k, &a_obj, &b_obj)) return NULL;
    if (k < 1) {
        PyErr_SetString(PyExc_ValueError, "k must be at least 1");
        return NULL;
    }
    PyObject *forms = PySequence_Fast(forms_obj, "forms must be a sequence of str");
    if (!forms) return NULL;
    Py_buffer av, bv;
    if (PyObject_GetBuffer(a_obj, &av, PyBUF_C_CONTIGUOUS) < 0) {
        Py_DECREF(forms);
        return NULL;
    }
    Py_ssize_t perms = av.len / 4;
    if (av.len % 4 || perms == 0 || read_array(b_obj, &bv, 4, perms, "b") < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "a must hold uint32 values");
        PyBuffer_Release(&av);
        Py_DECREF(forms);
        return NULL;
    }
    const uint32_t *a = av.buf, *b = bv.buf;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(forms);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * perms * 4);
    if (!out) goto fail;
    uint32_t *sig = (uint32_t *)PyBytes_AS_STRING(out);
    for (Py_ssize_t f = 0; f < n; f++, sig += perms) {
        PyObject *form = PySequence_Fast_GET_ITEM(forms, f);
        if (!PyUnicode_Check(form)) {
            PyErr_Format(PyExc_TypeError, "form %zd is %.50s, not str", f, Py_TYPE(form)->tp_name);
            goto fail;
        }
        Py_ssize_t len = PyUnicode_GET_LENGTH(form);
        if (len < k) {
            PyErr_Format(PyExc_ValueError, "form %zd has %zd code points, fewer than k = %zd", f, len, k);
            goto fail;
        }
        int kind = PyUnicode_KIND(form);
        const void *data = PyUnicode_DATA(form);
        for (Py_ssize_t i = 0; i < perms; i++) sig[i] = UINT32_MAX;
        for (Py_ssize_t start = 0; start + k <= len; start++) {
            uint64_t h = PyUnicode_READ(kind, data, start);
            for (Py_ssize_t j = 1; j < k; j++) h = h * GRAM_BASE + PyUnicode_READ(kind, data, start + j);
            h ^= h >> 33;
            h *= FMIX_1;
            h ^= h >> 33;
            h *= FMIX_2;
            h ^= h >> 33;
            uint32_t g = (uint32_t)(h >> 32);
            for (Py_ssize_t i = 0; i < perms; i++) {
                uint32_t v = a[i] * g + b[i];
                if (v < sig[i]) sig[i] = v;
            }
        }
    }
    PyBuffer_Release(&av);
    PyBuffer_Release(&bv);
    Py_DECREF(forms);
    return out;
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&av);
    PyBuffer_Release(&bv);
    Py_DECREF(forms);
    return NULL;
}

PyDoc_STRVAR(local_bands_doc,
"local_bands(sigs, n, perms, bands, rows, seeds)\n--\n\n"
"Local band keys of n signatures (a buffer of n rows of perms uint32 values): per band,\n"
"the band's seed mixed with its values (two values per 64-bit word when rows is even,\n"
"else one) by xor, multiply by 0x9E3779B97F4A7C15 and xor-shift 29, then finalised.\n"
"Signer._local_band_matrix's arithmetic; a list of n tuples of `bands` ints.");

static PyObject *local_bands(PyObject *module, PyObject *args) {
    PyObject *sigs_obj, *seeds_obj;
    Py_ssize_t n, perms, bands, rows;
    if (!PyArg_ParseTuple(args, "OnnnnO", &sigs_obj, &n, &perms, &bands, &rows, &seeds_obj)) return NULL;
    if (n < 0 || bands < 1 || rows < 1 || bands * rows > perms) {
        PyErr_SetString(PyExc_ValueError, "bands x rows must fit the signature and n be >= 0");
        return NULL;
    }
    Py_buffer sv, seedv;
    if (read_array(sigs_obj, &sv, 4, n * perms, "sigs") < 0) return NULL;
    if (read_array(seeds_obj, &seedv, 8, bands, "seeds") < 0) {
        PyBuffer_Release(&sv);
        return NULL;
    }
    const uint32_t *sig = sv.buf;
    const uint64_t *seeds = seedv.buf;
    PyObject *out = PyList_New(n);
    if (!out) goto done;
    for (Py_ssize_t f = 0; f < n; f++, sig += perms) {
        PyObject *keys = PyTuple_New(bands);
        if (!keys) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, f, keys);
        for (Py_ssize_t band = 0; band < bands; band++) {
            const uint32_t *v = sig + band * rows;
            uint64_t h = seeds[band];
            if (rows % 2 == 0) {
                for (Py_ssize_t r = 0; r < rows; r += 2) {
                    h ^= (uint64_t)v[r] | ((uint64_t)v[r + 1] << 32);
                    h *= MIX_MULTIPLIER;
                    h ^= h >> 29;
                }
            } else {
                for (Py_ssize_t r = 0; r < rows; r++) {
                    h ^= (uint64_t)v[r];
                    h *= MIX_MULTIPLIER;
                    h ^= h >> 29;
                }
            }
            h *= MIX_FINAL;
            h ^= h >> 32;
            PyObject *key = PyLong_FromUnsignedLongLong(h);
            if (!key) {
                Py_CLEAR(out);
                goto done;
            }
            PyTuple_SET_ITEM(keys, band, key);
        }
    }
done:
    PyBuffer_Release(&sv);
    PyBuffer_Release(&seedv);
    return out;
}

static PyMethodDef module_methods[] = {
    {"minhash", minhash, METH_VARARGS, minhash_doc},
    {"local_bands", local_bands, METH_VARARGS, local_bands_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef bands_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_bands",
    .m_doc = "The in-process window's band table and signatures, compiled (see window.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__bands(void) {
    if (PyType_Ready(&BandIndexType) < 0) return NULL;
    WindowCoreType.tp_base = &BandIndexType;
    if (PyType_Ready(&WindowCoreType) < 0) return NULL;
    if (HeldTextType.tp_name == NULL && PyStructSequence_InitType2(&HeldTextType, &held_desc) < 0) return NULL;
    PyObject *m = PyModule_Create(&bands_module);
    if (!m) return NULL;
    Py_INCREF(&BandIndexType);
    Py_INCREF(&WindowCoreType);
    Py_INCREF(&HeldTextType);
    if (PyModule_AddObject(m, "BandIndex", (PyObject *)&BandIndexType) < 0 ||
        PyModule_AddObject(m, "WindowCore", (PyObject *)&WindowCoreType) < 0 ||
        PyModule_AddObject(m, "HeldText", (PyObject *)&HeldTextType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
