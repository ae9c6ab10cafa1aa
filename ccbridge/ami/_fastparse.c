/* One AMI message block into a dict at C speed: the hot step of ccbridge.ami.codec (and
   of the FastAGI header's one-read path, ccbridge.agi.codec._fast_env: the same lines).

   fill(msg, block, crlf, max_fields) -> int

   ``block`` is one message without its blank line: lines ending in CR LF (``crlf``) or in
   LF. Each line is ``Key: value``, split at the first ": ", the pair set in ``msg`` (a
   dict or subclass; a repeated key keeps its last value, as dict.update does). Returns
   the number of lines, or without a complete answer:
     -1  a line has no ": " (the caller's careful path)
     -2  ``crlf`` and a bare LF in the block (the caller's mixed-line-end path)
     -3  more than ``max_fields`` lines (nothing set)
     -4  the text is not one byte a character (the caller's Python path)
   After -1 or -2 ``msg`` may hold some fields: the caller drops it.

   Asterisk repeats itself: a few hundred key names, and most short values are states,
   counts, queue and context names. Keys (interned: a handler's ``msg["Queue"]`` then
   finds the very object) and values of up to SHORT_VALUE characters come from two small
   tables of strings seen, by a hash of their bytes (slot_of), so most fields cost no
   allocation. A string whose slot holds another replaces it. Strings are immutable: sharing one
   between messages is safe. The tables live as long as the module (a few hundred kB at
   most) and are only touched with the GIL held. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define SLOT_BITS 10
#define SLOTS (1 << SLOT_BITS) /* per table */
#define SHORT_VALUE 16

static PyObject *seen_keys[SLOTS];
static PyObject *seen_values[SLOTS];

/* The slot of the string p[0:len]: its first and last 8 bytes (all of a string of up to
   16, which is what the value table holds) and its length, mixed by two multiplies. Two
   word loads instead of a byte loop: a byte-at-a-time hash was most of this module's
   time in the bridge (perf, BENCHMARKS §12). A collision costs a slot, never a wrong
   string: a hit is checked byte for byte. */
static inline size_t
slot_of(const char *p, Py_ssize_t len)
{
    uint64_t a = 0, b = 0;
    if (len >= 8) {
        memcpy(&a, p, 8);
        memcpy(&b, p + len - 8, 8);
    }
    else if (len >= 4) {
        uint32_t x, y;
        memcpy(&x, p, 4);
        memcpy(&y, p + len - 4, 4);
        a = x;
        b = y;
    }
    else {
        for (Py_ssize_t i = 0; i < len; i++)
            a = (a << 8) | (unsigned char)p[i];
    }
    /* Multiplicative hashing: a product's top bits depend on every bit of the word. */
    uint64_t h = (a * 0x9E3779B97F4A7C15ull) ^ ((b + (uint64_t)len) * 0xC2B2AE3D27D4EB4Full);
    return (size_t)(h >> (64 - SLOT_BITS));
}

/* block[start:end] from ``table``, or made (and kept there); a new reference. */
static PyObject *
seen(PyObject **table, int intern, PyObject *block, const char *s, Py_ssize_t start,
     Py_ssize_t end)
{
    Py_ssize_t len = end - start;
    PyObject **slot = &table[slot_of(s + start, len)];
    PyObject *str = *slot;
    if (str != NULL && PyUnicode_GET_LENGTH(str) == len
        && memcmp(PyUnicode_1BYTE_DATA(str), s + start, (size_t)len) == 0) {
        Py_INCREF(str);
        return str;
    }
    str = PyUnicode_Substring(block, start, end);
    if (str == NULL)
        return NULL;
    if (intern)
        PyUnicode_InternInPlace(&str);
    if (PyUnicode_KIND(str) == PyUnicode_1BYTE_KIND) { /* what memcmp above reads */
        Py_INCREF(str);
        Py_XSETREF(*slot, str);
    }
    return str;
}

static PyObject *
fill(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "fill(msg, block, crlf, max_fields)");
        return NULL;
    }
    PyObject *msg = args[0], *block = args[1];
    if (!PyDict_Check(msg) || !PyUnicode_Check(block)) {
        PyErr_SetString(PyExc_TypeError, "fill(dict, str, bool, int)");
        return NULL;
    }
    int crlf = PyObject_IsTrue(args[2]);
    if (crlf < 0)
        return NULL;
    Py_ssize_t max_fields = PyLong_AsSsize_t(args[3]);
    if (max_fields == -1 && PyErr_Occurred())
        return NULL;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(block) < 0)
        return NULL;
#endif
    if (PyUnicode_KIND(block) != PyUnicode_1BYTE_KIND)
        return PyLong_FromLong(-4);
    const char *s = (const char *)PyUnicode_1BYTE_DATA(block);
    Py_ssize_t n = PyUnicode_GET_LENGTH(block);

    /* Count the lines first: a block over the limit sets nothing. */
    Py_ssize_t lines = 1;
    for (const char *p = s; (p = memchr(p, '\n', (size_t)(s + n - p))) != NULL; p++) {
        if (crlf && (p == s || p[-1] != '\r'))
            return PyLong_FromLong(-2);
        lines++;
    }
    if (lines > max_fields)
        return PyLong_FromLong(-3);

    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i < lines; i++) {
        const char *nl = memchr(s + start, '\n', (size_t)(n - start));
        Py_ssize_t end = nl ? (Py_ssize_t)(nl - s) : n; /* the line's end, LF excluded */
        Py_ssize_t next = end + 1;
        if (nl && crlf)
            end--; /* and its CR */
        Py_ssize_t sep = -1;
        for (Py_ssize_t j = start; j + 1 < end; j++) {
            if (s[j] == ':' && s[j + 1] == ' ') {
                sep = j;
                break;
            }
        }
        if (sep < 0)
            return PyLong_FromLong(-1);
        PyObject *key = seen(seen_keys, 1, block, s, start, sep);
        if (key == NULL)
            return NULL;
        PyObject *value = end - (sep + 2) <= SHORT_VALUE
                              ? seen(seen_values, 0, block, s, sep + 2, end)
                              : PyUnicode_Substring(block, sep + 2, end);
        if (value == NULL) {
            Py_DECREF(key);
            return NULL;
        }
        int rc = PyDict_SetItem(msg, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0)
            return NULL;
        start = next;
    }
    return PyLong_FromSsize_t(lines);
}

static PyMethodDef methods[] = {
    {"fill", (PyCFunction)(void (*)(void))fill, METH_FASTCALL,
     "fill(msg, block, crlf, max_fields) -> lines, or -1..-4 (see the module's source)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastparse", "AMI message blocks into dicts at C speed.", -1, methods,
};

PyMODINIT_FUNC
PyInit__fastparse(void)
{
    return PyModule_Create(&module);
}
