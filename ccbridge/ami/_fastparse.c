/* One AMI message block into a dict at C speed: the hot step of ccbridge.ami.codec.

   fill(msg, block, crlf, max_fields) -> int

   ``block`` is one message without its blank line: lines ending in CR LF (``crlf``) or in
   LF. Each line is ``Key: value``, split at the first ": ", the key interned (Asterisk
   sends a few hundred names; a handler's ``msg["Queue"]`` then finds the same object),
   the pair set in ``msg`` (a dict or subclass; a repeated key keeps its last value, as
   dict.update does). Returns the number of lines, or without a complete answer:
     -1  a line has no ": " (the caller's careful path)
     -2  ``crlf`` and a bare LF in the block (the caller's mixed-line-end path)
     -3  more than ``max_fields`` lines (nothing set)
     -4  the text is not one byte a character (the caller's Python path)
   After -1 or -2 ``msg`` may hold some fields: the caller drops it. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

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
        Py_ssize_t end = nl ? (Py_ssize_t)(nl - s) : n;  /* the line's end, LF excluded */
        Py_ssize_t next = end + 1;
        if (nl && crlf)
            end--;  /* CR excluded */
        Py_ssize_t sep = -1;
        for (Py_ssize_t j = start; j + 1 < end; j++) {
            if (s[j] == ':' && s[j + 1] == ' ') {
                sep = j;
                break;
            }
        }
        if (sep < 0)
            return PyLong_FromLong(-1);
        PyObject *key = PyUnicode_Substring(block, start, sep);
        if (key == NULL)
            return NULL;
        PyUnicode_InternInPlace(&key);
        PyObject *value = PyUnicode_Substring(block, sep + 2, end);
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
