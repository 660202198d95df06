/*
 * One pass over a string that says where masking could possibly find something.
 *
 * Python's regular expressions cost tens of microseconds per detector on a 1 KB JSON
 * state, almost all of it spent proving that nothing is there. This scanner reads the
 * text once and returns, for the masker (text.py) to search with the real patterns:
 *
 *   scan(text: str, literals: tuple[str, ...]) -> None | (mask, digits, ibans, emails, keys)
 *
 *   mask    bit i set when literals[i] occurs in the text (ASCII literals only)
 *   digits  (start, end) of each maximal run of [0-9 ().+-] holding at least 8 digits:
 *           every phone, card or SSN match lies inside one
 *   ibans   (start, end) of each maximal run of [A-Z0-9 ] at least 15 long holding two
 *           capitals followed by two digits: every IBAN match lies inside one
 *   emails  (start, end) of each maximal run of [A-Za-z0-9._%+@-] holding an '@' with
 *           something before it and a '.' after it: every email match lies inside one
 *   keys    (start, end) of the text of each "quoted string" followed by ':' (JSON
 *           object keys), when the text starts with '{' or '[' after white space
 *
 * None means all five are empty. Offsets are code point indices, as Python slices them.
 * The windows are maximal runs of the characters the patterns can consume, so a pattern
 * searched inside a window (with one character of context after it) finds exactly what
 * it finds in the whole text: tests/processors/test_masking.py holds the masker with and
 * without this scanner to the same output.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_LITERALS 62

static int is_digit(Py_UCS4 c) { return c >= '0' && c <= '9'; }
static int is_upper(Py_UCS4 c) { return c >= 'A' && c <= 'Z'; }
static int is_alnum(Py_UCS4 c) { return is_digit(c) || is_upper(c) || (c >= 'a' && c <= 'z'); }
static int in_digit_run(Py_UCS4 c) { return is_digit(c) || c == ' ' || c == '(' || c == ')' || c == '.' || c == '+' || c == '-'; }
static int in_iban_run(Py_UCS4 c) { return is_digit(c) || is_upper(c) || c == ' '; }
static int in_local(Py_UCS4 c) { return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'; }

static int add_pair(PyObject *list, Py_ssize_t a, Py_ssize_t b) {
    PyObject *pair = Py_BuildValue("(nn)", a, b);
    if (!pair) return -1;
    int rc = PyList_Append(list, pair);
    Py_DECREF(pair);
    return rc;
}

typedef struct {
    const char *s;
    Py_ssize_t n;
} Literal;

static PyObject *scan(PyObject *self, PyObject *args) {
    PyObject *text, *lits;
    if (!PyArg_ParseTuple(args, "UO!", &text, &PyTuple_Type, &lits)) return NULL;
    Py_ssize_t nlit = PyTuple_GET_SIZE(lits);
    if (nlit > MAX_LITERALS) { PyErr_SetString(PyExc_ValueError, "too many literals"); return NULL; }
    Literal literal[MAX_LITERALS];
    unsigned long long first[128] = {0};  /* first character -> literals starting with it */
    for (Py_ssize_t i = 0; i < nlit; i++) {
        PyObject *item = PyTuple_GET_ITEM(lits, i);
        if (!PyUnicode_Check(item) || !PyUnicode_IS_ASCII(item) || PyUnicode_GET_LENGTH(item) == 0) {
            PyErr_SetString(PyExc_ValueError, "literals must be non-empty ASCII strings");
            return NULL;
        }
        literal[i].s = (const char *)PyUnicode_1BYTE_DATA(item);
        literal[i].n = PyUnicode_GET_LENGTH(item);
        first[(unsigned char)literal[i].s[0] & 127] |= 1ULL << i;
    }
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    unsigned long long mask = 0;
    PyObject *digits = NULL, *ibans = NULL, *emails = NULL, *keys = NULL, *result = NULL;
    if (!(digits = PyList_New(0)) || !(ibans = PyList_New(0)) || !(emails = PyList_New(0)) || !(keys = PyList_New(0)))
        goto done;

    Py_ssize_t i = 0;
    while (i < n && (PyUnicode_READ(kind, data, i) == ' ' || PyUnicode_READ(kind, data, i) == '\t'
                     || PyUnicode_READ(kind, data, i) == '\n' || PyUnicode_READ(kind, data, i) == '\r')) i++;
    int json = i < n && (PyUnicode_READ(kind, data, i) == '{' || PyUnicode_READ(kind, data, i) == '[');

    Py_ssize_t digit_start = -1, digit_count = 0;   /* the current [0-9 ().+-] run */
    Py_ssize_t iban_start = -1; int iban_seen = 0;  /* the current [A-Z0-9 ] run */
    Py_ssize_t email_start = -1, email_at = -1;     /* the current [A-Za-z0-9._%+@-] run, its first '@' */
    int email_dot = 0;                              /* a '.' after that '@' */
    Py_ssize_t string_start = -1;                   /* inside a JSON string, after its quote */
    int escaped = 0;                                /* the previous character was a backslash */
    for (i = 0; i <= n; i++) {
        Py_UCS4 c = i < n ? PyUnicode_READ(kind, data, i) : 0;
        /* literals */
        unsigned long long todo = c < 128 ? first[c] & ~mask : 0;
        while (todo) {
            int l = __builtin_ctzll(todo);
            todo &= todo - 1;
            {
                if (i + literal[l].n > n) continue;
                Py_ssize_t k = 1;
                while (k < literal[l].n && PyUnicode_READ(kind, data, i + k) == (Py_UCS4)(unsigned char)literal[l].s[k]) k++;
                if (k == literal[l].n) mask |= 1ULL << l;
            }
        }
        /* digit runs */
        if (i < n && in_digit_run(c)) {
            if (digit_start < 0) { digit_start = i; digit_count = 0; }
            if (is_digit(c)) digit_count++;
        } else if (digit_start >= 0) {
            if (digit_count >= 8 && add_pair(digits, digit_start, i) < 0) goto done;
            digit_start = -1;
        }
        /* IBAN runs */
        if (i < n && in_iban_run(c)) {
            if (iban_start < 0) { iban_start = i; iban_seen = 0; }
            if (!iban_seen && i - iban_start >= 3 && is_digit(c) && is_digit(PyUnicode_READ(kind, data, i - 1))
                && is_upper(PyUnicode_READ(kind, data, i - 2)) && is_upper(PyUnicode_READ(kind, data, i - 3)))
                iban_seen = 1;
        } else if (iban_start >= 0) {
            if (iban_seen && i - iban_start >= 15 && add_pair(ibans, iban_start, i) < 0) goto done;
            iban_start = -1;
        }
        /* emails */
        if (i < n && (in_local(c) || c == '@')) {
            if (email_start < 0) { email_start = i; email_at = -1; email_dot = 0; }
            if (c == '@' && email_at < 0 && i > email_start) email_at = i;
            else if (c == '.' && email_at >= 0) email_dot = 1;
        } else if (email_start >= 0) {
            if (email_at >= 0 && email_dot && add_pair(emails, email_start, i) < 0) goto done;
            email_start = -1;
        }
        /* JSON keys: a string, then optional white space, then ':' */
        if (json && i < n) {
            if (escaped) {
                escaped = 0;
            } else if (string_start < 0) {
                if (c == '"') string_start = i + 1;
            } else if (c == '\\') {
                escaped = 1;
            } else if (c == '"') {
                Py_ssize_t k = i + 1;
                while (k < n) {
                    Py_UCS4 w = PyUnicode_READ(kind, data, k);
                    if (w != ' ' && w != '\t' && w != '\n' && w != '\r') break;
                    k++;
                }
                if (k < n && PyUnicode_READ(kind, data, k) == ':' && add_pair(keys, string_start, i) < 0) goto done;
                string_start = -1;
            }
        }
    }
    if (!mask && !PyList_GET_SIZE(digits) && !PyList_GET_SIZE(ibans) && !PyList_GET_SIZE(emails) && !PyList_GET_SIZE(keys)) {
        result = Py_NewRef(Py_None);
    } else {
        result = Py_BuildValue("(KOOOO)", mask, digits, ibans, emails, keys);
    }
done:
    Py_XDECREF(digits);
    Py_XDECREF(ibans);
    Py_XDECREF(emails);
    Py_XDECREF(keys);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(text, literals) -> None | (mask, digits, ibans, emails, keys): where masking could find something."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", "Compiled masking pre-scan.", -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&module); }
