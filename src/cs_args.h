/* cs_args.h: the C side of the pre-parsed entry points' argument handling
 * (update_virtual / update_physical, core/args.pxi and core/methods.pxi).
 *
 * Everything here either succeeds on an input whose meaning is certain or
 * returns 0 without raising, and the caller then takes the checked path
 * shared with the pure-Python core (connstats._addr), which decides and
 * words the error.  So these functions only ever make accepted inputs
 * cheaper: they never accept what the checked path refuses. */
#ifndef CS_ARGS_H
#define CS_ARGS_H

#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* ---- address text ------------------------------------------------------- */

/* s[0..n) as IPv4 dotted-quad text, exactly as ipaddress.IPv4Address takes a
 * str (Python >= 3.9.5): four octets of 1-3 ASCII digits, no leading zero,
 * each <= 255, separated by single dots, nothing else.  1 with raw[0..4)
 * filled, or 0 (raw may be partly written). */
static inline int cs_parse_ipv4(const char *s, Py_ssize_t n, uint8_t *raw) {
    Py_ssize_t i = 0;
    int part;
    for (part = 0; part < 4; part++) {
        Py_ssize_t start = i;
        unsigned v = 0;
        while (i < n && i - start < 3 && s[i] >= '0' && s[i] <= '9') {
            v = v * 10 + (unsigned)(s[i] - '0');
            i++;
        }
        if (i == start || v > 255 || (i - start > 1 && s[start] == '0'))
            return 0;
        raw[part] = (uint8_t)v;
        if (part < 3) {
            if (i >= n || s[i] != '.')
                return 0;
            i++;
        }
    }
    return i == n;
}

/* The characters of an exact, ASCII-only str, or NULL.  A str is immutable
 * and the caller holds it, so the pointer stays valid for the call. */
static inline const char *cs_ascii_text(PyObject *o, Py_ssize_t *n) {
    if (!PyUnicode_CheckExact(o) || !PyUnicode_IS_COMPACT_ASCII(o))
        return NULL;
    *n = PyUnicode_GET_LENGTH(o);
    return (const char *)PyUnicode_DATA(o);
}

/* An exact str holding IPv4 text (what _addr.packed_address parses with
 * ipaddress.ip_address) into raw[0..4); 1, or 0 (anything else, IPv6
 * text included: the checked path parses it). */
static inline int cs_ipv4_text(PyObject *o, uint8_t *raw) {
    Py_ssize_t n;
    const char *s = cs_ascii_text(o, &n);
    return s != NULL && n <= 15 && cs_parse_ipv4(s, n, raw);
}

/* An exact str "a.b.c.d:port" (what _addr's _parse_addrport_text accepts
 * for IPv4: the text after the last ':' all digits, any number of them,
 * its value <= 65535) into raw[0..4) and *port; 1, or 0. */
static inline int cs_ipv4_port_text(PyObject *o, uint8_t *raw, uint16_t *port) {
    Py_ssize_t n, colon, i;
    unsigned long v = 0;
    const char *s = cs_ascii_text(o, &n);
    if (s == NULL)
        return 0;
    for (colon = n - 1; colon >= 0 && s[colon] != ':'; colon--)
        ;
    if (colon < 7 || colon > 15 || colon == n - 1)
        return 0;
    for (i = colon + 1; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned long)(s[i] - '0');
        if (v > 0xFFFF)
            return 0;  /* out of range: the checked path raises */
    }
    if (!cs_parse_ipv4(s, colon, raw))
        return 0;
    *port = (uint16_t)v;
    return 1;
}

/* ---- ipaddress objects ------------------------------------------------- */

/* The member descriptors of IPv4Address._ip and IPv6Address._ip (their
 * __slots__), found at import by cs_find_ip_slot; NULL: not used. */
static PyMemberDef *cs_ip_slot[2] = {NULL, NULL};

/* The PyMemberDef behind cls.__dict__[name] if it is a plain object slot. */
static inline PyMemberDef *cs_find_ip_slot(PyObject *descr) {
    PyMemberDef *m;
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type))
        return NULL;
    m = ((PyMemberDescrObject *)descr)->d_member;
    return m->type == T_OBJECT_EX ? m : NULL;
}

static inline void cs_set_ip_slots(PyMemberDef *v4, PyMemberDef *v6) {
    cs_ip_slot[0] = v4;
    cs_ip_slot[1] = v6;
}

/* The value of an address object's _ip slot: a new reference, or NULL (not
 * set: the object was made without __init__) without an exception.  With
 * the GIL the slot is read directly; free-threaded builds go through
 * PyMember_GetOne, which takes the reference safely against a concurrent
 * write (nothing writes it, but nothing must crash if something does). */
static inline PyObject *cs_ip_value(PyObject *addr, int v6) {
    PyMemberDef *m = cs_ip_slot[v6];
    PyObject *value;
    if (m == NULL)
        return NULL;
#ifdef Py_GIL_DISABLED
    value = PyMember_GetOne((const char *)addr, m);
    if (value == NULL)
        PyErr_Clear();
    return value;
#else
    value = *(PyObject **)((char *)addr + m->offset);
    Py_XINCREF(value);
    return value;
#endif
}

/* An exact int in 0 .. 2**128 - 1 as 16 big-endian bytes; 1, or 0 without
 * an exception. */
static inline int cs_u128_be(PyObject *v, uint8_t *raw) {
    if (!PyLong_CheckExact(v))
        return 0;
#if PY_VERSION_HEX >= 0x030D0000
    {
        Py_ssize_t need = PyLong_AsNativeBytes(
            v, raw, 16,
            Py_ASNATIVEBYTES_BIG_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER |
            Py_ASNATIVEBYTES_REJECT_NEGATIVE);
        if (need < 0) {
            PyErr_Clear();
            return 0;
        }
        return need <= 16;
    }
#else
    if (_PyLong_AsByteArray((PyLongObject *)v, raw, 16, 0, 0) < 0) {
        PyErr_Clear();
        return 0;
    }
    return 1;
#endif
}

/* ---- entry points ------------------------------------------------------- */

/* Put a METH_FASTCALL | METH_KEYWORDS method `def` in place of the method
 * descriptor t.__dict__[def->ml_name] (a method Cython made), with that
 * method's docstring; *original receives the replaced descriptor (a new
 * reference), which the new method calls for anything it does not handle.
 * Done once at import, before any Python code sees the type; Cython adds
 * __reduce__ to its types the same way (the dict, then PyType_Modified). */
static inline int cs_replace_method(PyTypeObject *t, PyMethodDef *def,
                                    PyObject **original) {
    PyObject *name, *old, *descr;
    int r;
    name = PyUnicode_InternFromString(def->ml_name);
    if (name == NULL)
        return -1;
    old = PyDict_GetItemWithError(t->tp_dict, name);
    if (old == NULL || !Py_IS_TYPE(old, &PyMethodDescr_Type)) {
        Py_DECREF(name);
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_RuntimeError, "%s.%s is not a C method",
                         t->tp_name, def->ml_name);
        return -1;
    }
    def->ml_doc = ((PyMethodDescrObject *)old)->d_method->ml_doc;
    descr = PyDescr_NewMethod(t, def);
    if (descr == NULL) {
        Py_DECREF(name);
        return -1;
    }
    Py_INCREF(old);
    r = PyDict_SetItem(t->tp_dict, name, descr);
    Py_DECREF(descr);
    Py_DECREF(name);
    if (r < 0) {
        Py_DECREF(old);
        return -1;
    }
    PyType_Modified(t);
    *original = old;
    return 0;
}

/* def as a METH_FASTCALL | METH_KEYWORDS method named name, calling f (a
 * Cython `cdef object f(object self, PyObject **args, Py_ssize_t nargs,
 * PyObject *kwnames)`: the vectorcall convention, a new reference or NULL). */
typedef PyObject *(*cs_fastcall_fn)(PyObject *, PyObject **, Py_ssize_t, PyObject *);

static inline void cs_fastcall_def(PyMethodDef *def, const char *name, cs_fastcall_fn f) {
    def->ml_name = name;
    def->ml_meth = (PyCFunction)(void (*)(void))f;
    def->ml_flags = METH_FASTCALL | METH_KEYWORDS;
    def->ml_doc = NULL;
}

/* Call the replaced descriptor `original` as self's method with the
 * vectorcall arguments unchanged: Cython's own argument parsing then
 * handles, and words the errors of, every call the fast entry did not. */
static inline PyObject *cs_call_original(PyObject *original, PyObject *self,
                                         PyObject *const *args, Py_ssize_t nargs,
                                         PyObject *kwnames) {
    PyObject *bound, *result;
    bound = Py_TYPE(original)->tp_descr_get(original, self, (PyObject *)Py_TYPE(self));
    if (bound == NULL)
        return NULL;
    result = PyObject_Vectorcall(bound, args, (size_t)nargs, kwnames);
    Py_DECREF(bound);
    return result;
}

#endif /* CS_ARGS_H */
