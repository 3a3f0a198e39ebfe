/* In C because Cython can neither fill in a type's am_send slot nor check a field before its own deallocation. */
#ifndef CYWHIP_AWAITABLE_H
#define CYWHIP_AWAITABLE_H

#include <Python.h>

/*
 * Python 3.10 added am_send to tp_as_async: `await x` (through Python 3.11), an asyncio
 * task's step and `yield from` ask it for one step of x, and it hands back what x returned
 * without raising StopIteration.  The function installed here returns 1 (PYGEN_NEXT: *result
 * is the value yielded), 0 (PYGEN_RETURN: *result is the value returned) or -1 (PYGEN_ERROR:
 * an exception is set), as an int, which is how Cython declares a function that raises.
 */
typedef int (*cw_send_t)(PyObject *self, PyObject *arg, PyObject **result);

static PyObject *cw_iternext_by_am_send(PyObject *self);

/* Before the type is first used: t's tp_as_async must exist (Cython fills it in for __await__).
 * t's tp_iternext then steps through f too (cw_iternext_by_am_send, below). */
static inline int cw_set_am_send(PyTypeObject *t, cw_send_t f)
{
    if (t->tp_as_async == NULL) {
        PyErr_Format(PyExc_SystemError, "%s has no tp_as_async to hold am_send", t->tp_name);
        return -1;
    }
    t->tp_as_async->am_send = (sendfunc)f;
    t->tp_iternext = cw_iternext_by_am_send;
    PyType_Modified(t);
    return 0;
}

/* Raise StopIteration carrying value (a tuple or an exception too, as a generator's return
 * does), without the traceback entry Cython's raise adds.  Returns NULL. */
static inline PyObject *cw_stop_with(PyObject *value)
{
    PyObject *stop;
    if (value == Py_None) {
        PyErr_SetNone(PyExc_StopIteration);
        return NULL;
    }
    stop = PyObject_CallOneArg(PyExc_StopIteration, value);
    if (stop != NULL) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
    return NULL;
}

/*
 * From Python 3.12 on, `await x` steps x through tp_iternext, not am_send: this tp_iternext
 * makes the step through the type's am_send and ends the iteration with the value returned.
 * A value of None ends it without an exception at all (the caller reads that as None).
 */
static PyObject *cw_iternext_by_am_send(PyObject *self)
{
    PyObject *result = NULL;
    PySendResult st = Py_TYPE(self)->tp_as_async->am_send(self, Py_None, &result);
    if (st == PYGEN_NEXT)
        return result;
    if (st == PYGEN_RETURN) {
        if (result != Py_None)
            cw_stop_with(result);
        Py_DECREF(result);
    }
    return NULL;
}

/* One step of iter (a coroutine or any awaited iterator) with arg: the value it yielded
 * (*yielded = 1) or returned (*yielded = 0), a new reference; NULL with an exception set. */
static inline PyObject *cw_iter_send(PyObject *iter, PyObject *arg, int *yielded)
{
    PyObject *result = NULL;
    PySendResult st = PyIter_Send(iter, arg, &result);
    if (st == PYGEN_ERROR)
        return NULL;
    *yielded = st == PYGEN_NEXT;
    return result;
}

/*
 * A coroutine never awaited warns when it is freed.  An awaitable type gets the same
 * warning from cw_set_unawaited_hook(t, offset, hook): when an object of type t is freed
 * while the int at `offset` in it is nonzero, hook(o) runs first (it warns, and raises
 * nothing); then t's own deallocation.  The check costs one load on every free, where a
 * Cython __dealloc__ would save and restore the exception state each time.
 */
typedef void (*cw_unawaited_t)(PyObject *o);

static destructor cw_base_dealloc;
static Py_ssize_t cw_unawaited_offset;
static cw_unawaited_t cw_unawaited_hook;

static void cw_dealloc_checking_unawaited(PyObject *o)
{
    if (*(int *)((char *)o + cw_unawaited_offset)) {
        PyObject *type, *value, *tb;
        *(int *)((char *)o + cw_unawaited_offset) = 0;
        PyErr_Fetch(&type, &value, &tb);
        /* Alive again for the hook, which may look at o (and drops what it takes). */
        Py_SET_REFCNT(o, 1);
        cw_unawaited_hook(o);
        Py_SET_REFCNT(o, 0);
        PyErr_Restore(type, value, tb);
    }
    cw_base_dealloc(o);
}

/* For one type of the module, before it is first used. */
static inline void cw_set_unawaited_hook(PyTypeObject *t, Py_ssize_t offset, cw_unawaited_t hook)
{
    cw_base_dealloc = t->tp_dealloc;
    cw_unawaited_offset = offset;
    cw_unawaited_hook = hook;
    t->tp_dealloc = cw_dealloc_checking_unawaited;
    PyType_Modified(t);
}

#endif
