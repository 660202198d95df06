/*
 * The one pass over a text that says where masking could possibly find something,
 * shared by scan() (_scan.c: the windows, for text.py's detectors) and the gate
 * (_gate.c: only "could anything be found?", on the UTF-8 bytes of a protobuf).
 *
 * What a text holds, for the masker to search with the real patterns:
 *
 *   literals  which of the detectors' ASCII trigger literals occur in it
 *   digits    each maximal run of [0-9 ().+-] where a phone, card or SSN match could
 *             lie (every match lies inside one): the run holds D >= 8 digits (a phone
 *             holds 8 to 15, an SSN 9, a card 13 to 19), and D >= 13 (room for a card)
 *             or it has a separator (every phone and SSN pattern has one) and D >= 9,
 *             or a '+' (international), or its first digit is a 0 at the run's start or
 *             after a space or parenthesis (a national number with exactly 8 digits
 *             starts there). So "2025-12-29" and "1735430400" are no windows.
 *   ibans     each maximal run of [A-Z0-9 ] at least 15 long holding two capitals
 *             followed by two digits: every IBAN match lies inside one
 *   emails    each maximal run of [A-Za-z0-9._%+@-] holding an '@' with something
 *             before it and a '.' after it: every email match lies inside one
 *   keys      the text of each "quoted string" followed by ':' (JSON object keys), when
 *             the text starts with '{' or '[' after white space
 *
 * Every class above is ASCII, so the same pass over UTF-8 bytes (read as 1-byte
 * characters: a non-ASCII byte is in no class, as a non-ASCII character is in none)
 * finds a window exactly when the pass over the decoded text does; only the offsets
 * differ (bytes, not code points).
 */
#ifndef TRACETABLES_SCAN_CORE_H
#define TRACETABLES_SCAN_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_LITERALS 62

typedef struct {
    const char *s;
    Py_ssize_t n;
} Literal;

typedef struct {
    Literal literal[MAX_LITERALS];
    unsigned long long first[128];  /* first character -> literals starting with it */
    unsigned long long second[128]; /* second character -> literals with it second (or one long) */
    unsigned long long short_mask;  /* literals one character long */
} Literals;

/* Fill ``out`` from a tuple of non-empty ASCII str (kept alive by the caller). */
static int prepare_literals(PyObject *lits, Literals *out) {
    if (!PyTuple_Check(lits)) {
        PyErr_SetString(PyExc_TypeError, "literals must be a tuple");
        return -1;
    }
    Py_ssize_t nlit = PyTuple_GET_SIZE(lits);
    if (nlit > MAX_LITERALS) {
        PyErr_SetString(PyExc_ValueError, "too many literals");
        return -1;
    }
    memset(out->first, 0, sizeof out->first);
    memset(out->second, 0, sizeof out->second);
    out->short_mask = 0;
    for (Py_ssize_t i = 0; i < nlit; i++) {
        PyObject *item = PyTuple_GET_ITEM(lits, i);
        if (!PyUnicode_Check(item) || !PyUnicode_IS_ASCII(item) || PyUnicode_GET_LENGTH(item) == 0) {
            PyErr_SetString(PyExc_ValueError, "literals must be non-empty ASCII strings");
            return -1;
        }
        out->literal[i].s = (const char *)PyUnicode_1BYTE_DATA(item);
        out->literal[i].n = PyUnicode_GET_LENGTH(item);
        out->first[(unsigned char)out->literal[i].s[0] & 127] |= 1ULL << i;
        if (out->literal[i].n == 1) {
            out->short_mask |= 1ULL << i;
            for (int c = 0; c < 128; c++) out->second[c] |= 1ULL << i;
        } else {
            out->second[(unsigned char)out->literal[i].s[1] & 127] |= 1ULL << i;
        }
    }
    return 0;
}

/*
 * Where a pass reports.  Full mode (``lists`` set): every window and key is appended to
 * its list and the pass always reads to the end.  Quick mode (``lists`` NULL): the pass
 * stops at the first literal, window or "\u", and hands each JSON key to ``key_check``
 * (1: sensitive, 0: not, -1: error), stopping at the first sensitive one; a key written
 * with an escape counts as sensitive without asking.
 */
typedef struct {
    PyObject **lists; /* digits, ibans, emails, keys */
    int (*key_check)(void *ctx, const char *key, Py_ssize_t n);
    void *ctx;
    unsigned long long mask;
} Sink;

enum { SCAN_DONE = 0, SCAN_FOUND = 1, SCAN_ERROR = -1 };

static int sink_pair(Sink *sink, int which, Py_ssize_t a, Py_ssize_t b) {
    if (!sink->lists) return SCAN_FOUND;
    PyObject *pair = Py_BuildValue("(nn)", a, b);
    if (!pair) return SCAN_ERROR;
    int rc = PyList_Append(sink->lists[which], pair);
    Py_DECREF(pair);
    return rc < 0 ? SCAN_ERROR : SCAN_DONE;
}

static inline int sc_digit(Py_UCS4 c) { return c >= '0' && c <= '9'; }
static inline int sc_upper(Py_UCS4 c) { return c >= 'A' && c <= 'Z'; }
static inline int sc_alnum(Py_UCS4 c) { return sc_digit(c) || sc_upper(c) || (c >= 'a' && c <= 'z'); }
static inline int sc_in_digit_run(Py_UCS4 c) {
    return sc_digit(c) || c == ' ' || c == '(' || c == ')' || c == '.' || c == '+' || c == '-';
}
static inline int sc_in_iban_run(Py_UCS4 c) { return sc_digit(c) || sc_upper(c) || c == ' '; }
static inline int sc_in_local(Py_UCS4 c) {
    return sc_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}
static inline int sc_space(Py_UCS4 c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* One pass; ``kind`` is a PyUnicode kind (1 for UTF-8 bytes), a constant at each call
 * site so the compiler drops the per-character switch. */
static inline __attribute__((always_inline)) int
scan_core(int kind, const void *data, Py_ssize_t n, const Literals *lit, Sink *sink) {
#define AT(k) PyUnicode_READ(kind, data, (k))
    int rc;
    Py_ssize_t i = 0;
    while (i < n && sc_space(AT(i))) i++;
    int json = i < n && (AT(i) == '{' || AT(i) == '[');
    int quick = sink->lists == NULL;

    Py_ssize_t digit_start = -1, digit_count = 0;   /* the current [0-9 ().+-] run */
    int digit_sep = 0, digit_plus = 0, digit_zero = 0;  /* a non-digit in it, a '+', a national 0 first */
    Py_ssize_t iban_start = -1; int iban_seen = 0;  /* the current [A-Z0-9 ] run */
    Py_ssize_t email_start = -1, email_at = -1;     /* the current [A-Za-z0-9._%+@-] run, its first '@' */
    int email_dot = 0;                              /* a '.' after that '@' */
    Py_ssize_t string_start = -1;                   /* inside a JSON string, after its quote */
    int escaped = 0;                                /* the previous character was a backslash */
    int key_escaped = 0;                            /* the current JSON string has an escape */
    Py_UCS4 prev = 0;
#define END_DIGIT_RUN()                                                                                          \
    do {                                                                                                         \
        if (digit_count >= 8 && (digit_count >= 13 || (digit_sep && (digit_count >= 9 || digit_plus || digit_zero))) \
            && (rc = sink_pair(sink, 0, digit_start, i)) != SCAN_DONE)                                           \
            return rc;                                                                                           \
        digit_start = -1;                                                                                        \
    } while (0)
#define END_IBAN_RUN()                                                                                           \
    do {                                                                                                         \
        if (iban_seen && i - iban_start >= 15 && (rc = sink_pair(sink, 1, iban_start, i)) != SCAN_DONE) return rc; \
        iban_start = -1;                                                                                         \
    } while (0)
    for (i = 0; i <= n; i++) {
        Py_UCS4 c = i < n ? AT(i) : 0;
        /* literals: the candidates by first, then second character */
        unsigned long long todo = c < 128 ? lit->first[c] & ~sink->mask : 0;
        if (todo) {
            Py_UCS4 c2 = i + 1 < n ? AT(i + 1) : 0;
            todo &= c2 < 128 ? lit->second[c2] : lit->short_mask;
        }
        while (todo) {
            int l = __builtin_ctzll(todo);
            todo &= todo - 1;
            if (i + lit->literal[l].n > n) continue;
            Py_ssize_t k = 1;
            while (k < lit->literal[l].n && AT(i + k) == (Py_UCS4)(unsigned char)lit->literal[l].s[k]) k++;
            if (k == lit->literal[l].n) sink->mask |= 1ULL << l;
        }
        if (quick && (sink->mask || (c == 'u' && prev == '\\'))) return SCAN_FOUND;
        prev = c;
        if (c >= 'a' && c <= 'z') {
            /* the common character: it ends digit and IBAN runs, goes on an email run, and
             * means nothing to the JSON key reader but the end of an escape */
            if (digit_start >= 0) END_DIGIT_RUN();
            if (iban_start >= 0) END_IBAN_RUN();
            if (email_start < 0) { email_start = i; email_at = -1; email_dot = 0; }
            escaped = 0;
            continue;
        }
        /* digit runs */
        if (i < n && sc_in_digit_run(c)) {
            if (digit_start < 0) { digit_start = i; digit_count = 0; digit_sep = digit_plus = digit_zero = 0; }
            if (sc_digit(c)) {
                if (digit_count == 0)
                    digit_zero = c == '0' && (i == digit_start || AT(i - 1) == ' ' || AT(i - 1) == '(' || AT(i - 1) == ')');
                digit_count++;
            } else {
                digit_sep = 1;
                if (c == '+') digit_plus = 1;
            }
        } else if (digit_start >= 0) {
            END_DIGIT_RUN();
        }
        /* IBAN runs */
        if (i < n && sc_in_iban_run(c)) {
            if (iban_start < 0) { iban_start = i; iban_seen = 0; }
            if (!iban_seen && i - iban_start >= 3 && sc_digit(c) && sc_digit(AT(i - 1))
                && sc_upper(AT(i - 2)) && sc_upper(AT(i - 3)))
                iban_seen = 1;
        } else if (iban_start >= 0) {
            END_IBAN_RUN();
        }
        /* emails */
        if (i < n && (sc_in_local(c) || c == '@')) {
            if (email_start < 0) { email_start = i; email_at = -1; email_dot = 0; }
            if (c == '@' && email_at < 0 && i > email_start) email_at = i;
            else if (c == '.' && email_at >= 0) email_dot = 1;
        } else if (email_start >= 0) {
            if (email_at >= 0 && email_dot && (rc = sink_pair(sink, 2, email_start, i)) != SCAN_DONE) return rc;
            email_start = -1;
        }
        /* JSON keys: a string, then optional white space, then ':' */
        if (json && i < n) {
            if (escaped) {
                escaped = 0;
            } else if (string_start < 0) {
                if (c == '"') { string_start = i + 1; key_escaped = 0; }
            } else if (c == '\\') {
                escaped = key_escaped = 1;
            } else if (c == '"') {
                Py_ssize_t k = i + 1;
                while (k < n && sc_space(AT(k))) k++;
                if (k < n && AT(k) == ':') {
                    if (!quick) {
                        if ((rc = sink_pair(sink, 3, string_start, i)) != SCAN_DONE) return rc;
                    } else if (key_escaped) {
                        return SCAN_FOUND;
                    } else {
                        /* quick mode reads bytes: kind is 1 */
                        rc = sink->key_check(sink->ctx, (const char *)data + string_start, i - string_start);
                        if (rc != 0) return rc < 0 ? SCAN_ERROR : SCAN_FOUND;
                    }
                }
                string_start = -1;
            }
        }
    }
    return SCAN_DONE;
#undef END_IBAN_RUN
#undef END_DIGIT_RUN
#undef AT
}

#endif
