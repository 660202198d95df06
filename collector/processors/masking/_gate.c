/*
 * Gate: which spans of a serialized OTLP ResourceSpans could need a processor's walk.
 *
 * Walking protobuf messages attribute by attribute in Python costs more than the
 * masking itself, and almost every span has nothing to mask. The gate reads the
 * serialized ResourceSpans once, in C, and says where a processor must look:
 *
 *   Gate(literals: tuple[str, ...], key_check: Callable[[str], bool], values: bool)
 *   Gate.plan(wire: bytes) -> None | True | list[True | list[int]]
 *
 *   None   nothing anywhere
 *   True   the whole ResourceSpans (its resource attributes, or bytes the gate cannot read)
 *   list   one entry per ScopeSpans, in order: True for the whole scope (its attributes),
 *          else the indices of its spans to visit (often none)
 *
 * values=True (pii_masking) mirrors masking/otlp.py: a span is visited when its name,
 * status message, an event name, or any string in its, its events' or its links'
 * attributes (arrays and key-value lists included) could hold a match (the pre-scan of
 * _scan_core.h finds a literal, a window, a sensitive JSON key or a "\u" escape), when
 * a key_check(key) is true for a key with a value under it (booleans aside), when the
 * nesting is too deep, or when it carries a tracetables.masked summary already.
 * values=False (webhook_redaction) visits a span when key_check is true for one of its
 * own attribute keys; values are not read.
 *
 * The answer may say "visit" where the walk then finds nothing (a window with no match),
 * never "skip" where the walk would change something: tests/processors/test_gate.py
 * holds a gated walk to the full walk's output.
 *
 * key_check answers are kept in a fixed table (keys up to 58 bytes), so a key repeated
 * on every span costs a hash and a compare.
 */
#include "_scan_core.h"

#include <stdint.h>

#define KEY_SLOTS 4096
#define KEY_MAX 58
#define MAX_DEPTH 64
#define SUMMARY_KEY "tracetables.masked"

typedef struct {
    uint32_t hash;
    uint8_t len;
    uint8_t state; /* 0 empty, 1 no, 2 yes */
    char key[KEY_MAX];
} KeySlot;

typedef struct {
    PyObject_HEAD
    PyObject *literal_tuple;
    PyObject *key_check;
    int values;
    Literals literals;
    KeySlot *slots;
} Gate;

enum { CLEAN = 0, VISIT = 1, FAIL = -1, MALFORMED = -2 };

/* ---- protobuf wire reading ---------------------------------------------------------- */

typedef struct {
    const unsigned char *p, *end;
} Buf;

static int varint(Buf *b, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) return -1;
        unsigned char c = *b->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) { *out = v; return 0; }
    }
    return -1;
}

/* The next field: its number, wire type, and for length-delimited fields its bytes.
 * 1 when a field was read, 0 at the end, -1 on bytes no parser would accept. */
static int next_field(Buf *b, uint32_t *field, int *wt, Buf *sub) {
    if (b->p >= b->end) return 0;
    uint64_t tag, len;
    if (varint(b, &tag) < 0) return -1;
    *field = (uint32_t)(tag >> 3);
    *wt = (int)(tag & 7);
    switch (*wt) {
    case 0: return varint(b, &len) < 0 ? -1 : 1;
    case 1: if (b->end - b->p < 8) return -1; b->p += 8; return 1;
    case 5: if (b->end - b->p < 4) return -1; b->p += 4; return 1;
    case 2:
        if (varint(b, &len) < 0 || len > (uint64_t)(b->end - b->p)) return -1;
        sub->p = b->p;
        sub->end = b->p + len;
        b->p += len;
        return 1;
    default: return -1; /* groups are not in OTLP */
    }
}

/* ---- keys and texts ------------------------------------------------------------------ */

static uint32_t fnv1a(const char *s, Py_ssize_t n) {
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* 1 when key_check(key) is true, 0 when false, -1 on error. */
static int check_key(void *ctx, const char *key, Py_ssize_t n) {
    Gate *g = (Gate *)ctx;
    uint32_t h = fnv1a(key, n);
    KeySlot *slot = &g->slots[h & (KEY_SLOTS - 1)];
    if (slot->state && slot->hash == h && slot->len == n && memcmp(slot->key, key, (size_t)n) == 0)
        return slot->state == 2;
    PyObject *text = PyUnicode_DecodeUTF8(key, n, "surrogatepass");
    if (!text) {
        PyErr_Clear();
        return 1; /* not text a parser accepts: let the walk decide */
    }
    PyObject *answer = PyObject_CallOneArg(g->key_check, text);
    Py_DECREF(text);
    if (!answer) return -1;
    int yes = PyObject_IsTrue(answer);
    Py_DECREF(answer);
    if (yes < 0) return -1;
    if (n <= KEY_MAX) {
        slot->hash = h;
        slot->len = (uint8_t)n;
        slot->state = yes ? 2 : 1;
        memcpy(slot->key, key, (size_t)n);
    }
    return yes;
}

static int text_needs(Gate *g, Buf s) {
    Sink sink = {NULL, check_key, g, 0};
    int rc = scan_core(PyUnicode_1BYTE_KIND, s.p, s.end - s.p, &g->literals, &sink);
    return rc == SCAN_ERROR ? FAIL : rc == SCAN_FOUND ? VISIT : CLEAN;
}

/* ---- the walk ------------------------------------------------------------------------ */

static int key_value(Gate *g, Buf kv, int sensitive, int depth, int top);

/* masking/otlp.py OtlpMasker.value */
static int any_value(Gate *g, Buf v, int sensitive, int depth) {
    uint32_t f; int wt, rc; Buf sub;
    while ((rc = next_field(&v, &f, &wt, &sub)) == 1) {
        int r = CLEAN;
        if (f == 1 && wt == 2) {
            r = sensitive ? VISIT : text_needs(g, sub);
        } else if ((f == 3 && wt == 0) || (f == 4 && wt == 1) || (f == 7 && wt == 2)) {
            r = sensitive ? VISIT : CLEAN;
        } else if ((f == 5 || f == 6) && wt == 2) {
            if (depth >= MAX_DEPTH) return VISIT;
            uint32_t f2; int wt2, rc2; Buf item;
            while ((rc2 = next_field(&sub, &f2, &wt2, &item)) == 1) {
                if (f2 != 1 || wt2 != 2) continue;
                r = f == 5 ? any_value(g, item, sensitive, depth + 1) : key_value(g, item, sensitive, depth + 1, 0);
                if (r != CLEAN) return r;
            }
            if (rc2 < 0) return MALFORMED;
        }
        if (r != CLEAN) return r;
    }
    return rc < 0 ? MALFORMED : CLEAN;
}

/* One KeyValue: ``top`` for an attribute list's own entries (where the summary lives). */
static int key_value(Gate *g, Buf kv, int sensitive, int depth, int top) {
    uint32_t f; int wt, rc; Buf sub, key = {NULL, NULL};
    int keys = 0;
    Buf scan = kv;
    while ((rc = next_field(&scan, &f, &wt, &sub)) == 1)
        if (f == 1 && wt == 2) { key = sub; keys++; }
    if (rc < 0) return MALFORMED;
    if (keys > 1) return VISIT; /* which key a parser keeps is the walk's business */
    Py_ssize_t n = key.p ? key.end - key.p : 0;
    const char *k = key.p ? (const char *)key.p : "";
    if (!g->values) {
        int yes = check_key(g, k, n);
        return yes < 0 ? FAIL : yes ? VISIT : CLEAN;
    }
    if (top && n == (Py_ssize_t)strlen(SUMMARY_KEY) && memcmp(k, SUMMARY_KEY, (size_t)n) == 0) return VISIT;
    if (!sensitive) {
        int yes = check_key(g, k, n);
        if (yes < 0) return FAIL;
        sensitive = yes;
    }
    while ((rc = next_field(&kv, &f, &wt, &sub)) == 1) {
        if (f != 2 || wt != 2) continue;
        int r = any_value(g, sub, sensitive, depth);
        if (r != CLEAN) return r;
    }
    return rc < 0 ? MALFORMED : CLEAN;
}

/* Every field ``attr_field`` of message ``m`` is a KeyValue of an attribute list. */
static int attributes(Gate *g, Buf m, uint32_t attr_field) {
    uint32_t f; int wt, rc; Buf sub;
    while ((rc = next_field(&m, &f, &wt, &sub)) == 1) {
        if (f != attr_field || wt != 2) continue;
        int r = key_value(g, sub, 0, 0, 1);
        if (r != CLEAN) return r;
    }
    return rc < 0 ? MALFORMED : CLEAN;
}

/* Event: name 2, attributes 3. Link: attributes 4. Status: message 2. */
static int span(Gate *g, Buf s) {
    uint32_t f; int wt, rc; Buf sub;
    while ((rc = next_field(&s, &f, &wt, &sub)) == 1) {
        if (wt != 2) continue;
        int r = CLEAN;
        if (f == 9) {
            r = key_value(g, sub, 0, 0, 1);
        } else if (!g->values) {
            continue;
        } else if (f == 5) {
            r = text_needs(g, sub);
        } else if (f == 11) {
            uint32_t f2; int wt2, rc2; Buf e;
            while (r == CLEAN && (rc2 = next_field(&sub, &f2, &wt2, &e)) == 1)
                if (f2 == 2 && wt2 == 2) r = text_needs(g, e);
                else if (f2 == 3 && wt2 == 2) r = key_value(g, e, 0, 0, 1);
            if (r == CLEAN && rc2 < 0) r = MALFORMED;
        } else if (f == 13) {
            r = attributes(g, sub, 4);
        } else if (f == 15) {
            uint32_t f2; int wt2, rc2; Buf msg;
            while (r == CLEAN && (rc2 = next_field(&sub, &f2, &wt2, &msg)) == 1)
                if (f2 == 2 && wt2 == 2) r = text_needs(g, msg);
            if (r == CLEAN && rc2 < 0) r = MALFORMED;
        }
        if (r != CLEAN) return r;
    }
    return rc < 0 ? MALFORMED : CLEAN;
}

/* ScopeSpans: scope 1 (InstrumentationScope: attributes 3), spans 2. Returns True, a
 * list of span indices, or NULL with an exception; *malformed on unreadable bytes. */
static PyObject *scope_spans(Gate *g, Buf ss, int *malformed) {
    uint32_t f; int wt, rc; Buf sub;
    PyObject *visit = PyList_New(0);
    if (!visit) return NULL;
    Py_ssize_t index = 0;
    while ((rc = next_field(&ss, &f, &wt, &sub)) == 1) {
        if (wt != 2) continue;
        int r = CLEAN;
        if (f == 1 && g->values) {
            r = attributes(g, sub, 3);
            if (r == VISIT) { Py_DECREF(visit); return Py_NewRef(Py_True); }
        } else if (f == 2) {
            r = span(g, sub);
            if (r == VISIT) {
                PyObject *i = PyLong_FromSsize_t(index);
                if (!i || PyList_Append(visit, i) < 0) { Py_XDECREF(i); Py_DECREF(visit); return NULL; }
                Py_DECREF(i);
                r = CLEAN;
            }
            index++;
        }
        if (r == FAIL) { Py_DECREF(visit); return NULL; }
        if (r == MALFORMED) rc = -1;
        if (rc < 0) break;
    }
    if (rc < 0) *malformed = 1;
    return visit;
}

static PyObject *Gate_plan(Gate *g, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Buf rs = {(const unsigned char *)view.buf, (const unsigned char *)view.buf + view.len};
    PyObject *plan = PyList_New(0);
    int any = 0, malformed = 0, whole = 0, rc;
    uint32_t f; int wt; Buf sub;
    if (!plan) goto fail;
    while ((rc = next_field(&rs, &f, &wt, &sub)) == 1) {
        if (wt != 2) continue;
        if (f == 1 && g->values) {
            int r = attributes(g, sub, 1);
            if (r == FAIL) goto fail;
            if (r != CLEAN) { whole = 1; break; } /* the resource: it is in every span's summary */
        } else if (f == 2) {
            PyObject *entry = scope_spans(g, sub, &malformed);
            if (!entry) goto fail;
            any |= entry == Py_True || PyList_GET_SIZE(entry) > 0;
            int err = PyList_Append(plan, entry);
            Py_DECREF(entry);
            if (err < 0) goto fail;
            if (malformed) break;
        }
    }
    PyBuffer_Release(&view);
    if (rc < 0 || malformed || whole) { Py_DECREF(plan); Py_RETURN_TRUE; }
    if (!any) { Py_DECREF(plan); Py_RETURN_NONE; }
    return plan;
fail:
    PyBuffer_Release(&view);
    Py_XDECREF(plan);
    return NULL;
}

/* ---- the type ------------------------------------------------------------------------ */

static int Gate_init(Gate *g, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"literals", "key_check", "values", NULL};
    PyObject *lits, *check;
    int values;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!Op", names, &PyTuple_Type, &lits, &check, &values)) return -1;
    if (!PyCallable_Check(check)) {
        PyErr_SetString(PyExc_TypeError, "key_check must be callable");
        return -1;
    }
    if (prepare_literals(lits, &g->literals) < 0) return -1;
    Py_XSETREF(g->literal_tuple, Py_NewRef(lits));
    Py_XSETREF(g->key_check, Py_NewRef(check));
    g->values = values;
    if (!g->slots && !(g->slots = PyMem_Calloc(KEY_SLOTS, sizeof(KeySlot)))) {
        PyErr_NoMemory();
        return -1;
    }
    memset(g->slots, 0, KEY_SLOTS * sizeof(KeySlot));
    return 0;
}

static void Gate_dealloc(Gate *g) {
    Py_XDECREF(g->literal_tuple);
    Py_XDECREF(g->key_check);
    PyMem_Free(g->slots);
    Py_TYPE(g)->tp_free((PyObject *)g);
}

static PyObject *Gate_forget(Gate *g, PyObject *unused) {
    if (g->slots) memset(g->slots, 0, KEY_SLOTS * sizeof(KeySlot));
    Py_RETURN_NONE;
}

static PyMethodDef Gate_methods[] = {
    {"plan", (PyCFunction)Gate_plan, METH_O,
     "plan(wire) -> None | True | list[True | list[int]]: which spans of a serialized ResourceSpans to visit."},
    {"forget", (PyCFunction)Gate_forget, METH_NOARGS, "forget() -> None: drop the remembered key_check answers."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracetables.collector.processors.masking._scan.Gate",
    .tp_basicsize = sizeof(Gate),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Which spans of a serialized ResourceSpans could need a processor's walk.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Gate_init,
    .tp_dealloc = (destructor)Gate_dealloc,
    .tp_methods = Gate_methods,
};

int tracetables_add_gate(PyObject *module) {
    if (PyType_Ready(&GateType) < 0) return -1;
    return PyModule_AddObjectRef(module, "Gate", (PyObject *)&GateType);
}
