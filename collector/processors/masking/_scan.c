/*
 * The compiled masking pre-scan: where in a text masking could possibly find something.
 *
 * Python's regular expressions cost tens of microseconds per detector on a 1 KB JSON
 * state, almost all of it spent proving that nothing is there. This scanner reads the
 * text once (the pass is in _scan_core.h) and returns, for the masker (text.py) to
 * search with the real patterns:
 *
 *   scan(text: str, literals: tuple[str, ...]) -> None | (mask, digits, ibans, emails, keys)
 *
 *   mask    bit i set when literals[i] occurs in the text (ASCII literals only)
 *   digits, ibans, emails, keys: (start, end) of each window or JSON key, see _scan_core.h
 *
 * None means all five are empty. Offsets are code point indices, as Python slices them.
 * The windows are maximal runs of the characters the patterns can consume, so a pattern
 * searched inside a window (with one character of context after it) finds exactly what
 * it finds in the whole text: tests/processors/test_masking.py holds the masker with and
 * without this scanner to the same output.
 *
 * The module also holds Gate (_gate.c), which runs the same pass over a serialized
 * ResourceSpans to say which spans could need masking at all.
 */
#include "_scan_core.h"

int tracetables_add_gate(PyObject *module); /* _gate.c */

static PyObject *scan(PyObject *self, PyObject *args) {
    PyObject *text, *lits;
    if (!PyArg_ParseTuple(args, "UO!", &text, &PyTuple_Type, &lits)) return NULL;
    Literals literals;
    if (prepare_literals(lits, &literals) < 0) return NULL;
    PyObject *lists[4] = {NULL, NULL, NULL, NULL};
    PyObject *result = NULL;
    for (int k = 0; k < 4; k++)
        if (!(lists[k] = PyList_New(0))) goto done;
    Sink sink = {lists, NULL, NULL, 0};
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int rc;
    switch (kind) {
    case PyUnicode_1BYTE_KIND: rc = scan_core(PyUnicode_1BYTE_KIND, data, n, &literals, &sink); break;
    case PyUnicode_2BYTE_KIND: rc = scan_core(PyUnicode_2BYTE_KIND, data, n, &literals, &sink); break;
    default: rc = scan_core(PyUnicode_4BYTE_KIND, data, n, &literals, &sink); break;
    }
    if (rc == SCAN_ERROR) goto done;
    if (!sink.mask && !PyList_GET_SIZE(lists[0]) && !PyList_GET_SIZE(lists[1]) && !PyList_GET_SIZE(lists[2])
        && !PyList_GET_SIZE(lists[3])) {
        result = Py_NewRef(Py_None);
    } else {
        result = Py_BuildValue("(KOOOO)", sink.mask, lists[0], lists[1], lists[2], lists[3]);
    }
done:
    for (int k = 0; k < 4; k++) Py_XDECREF(lists[k]);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(text, literals) -> None | (mask, digits, ibans, emails, keys): where masking could find something."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", "Compiled masking pre-scan.", -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__scan(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && tracetables_add_gate(m) < 0) Py_CLEAR(m);
    return m;
}
