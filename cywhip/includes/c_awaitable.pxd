from cpython.object cimport PyObject, PyTypeObject

cdef extern from "awaitable.h":
    ctypedef int (*cw_send_t)(PyObject *self, PyObject *arg, PyObject **result) except -1
    ctypedef void (*cw_unawaited_t)(PyObject *o) noexcept
    int cw_set_am_send(PyTypeObject *t, cw_send_t f) except -1
    object cw_iter_send(object it, object arg, int *yielded)
    void cw_set_unawaited_hook(PyTypeObject *t, Py_ssize_t offset, cw_unawaited_t hook) noexcept
