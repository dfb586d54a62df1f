/* The tracking recorder's per-message methods, compiled (optional).
 *
 * ``TrackerCore`` is the base class of ``routilux.tracking._hub.JobTracker``: it holds the
 * fields the hot path reads (the hub's queue ``buf``, the job's token ``tok``, its record
 * counter ``seq`` and the queue's bounds ``half`` and ``cap``) and writes the two records a
 * message costs, ``payload.emitted`` and an activation's finished+started pair, as raw records
 * of ``W`` (8) items appended to ``buf``, exactly the layout of tracking/_wire.py. The pure
 * Python class ``_hub._PyTrackerCore`` is the same thing, used when this module was not built
 * (or ROUTILUX_PURE_PYTHON=1); tests run both and compare what they queue.
 *
 * Concurrency: the caller holds the job's lock (which orders one job's records); records of
 * different jobs interleave in ``buf``. A record's eight items must stay together, so every
 * object is made before the first append, and nothing between the first and the last append
 * can run Python code or release the GIL: ints and floats are not tracked by the cyclic
 * garbage collector (making them never starts a collection), ``PyList_Append`` only grows the
 * list's array, and ``time.perf_counter`` is a C function that keeps the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "structmember.h"

/* tracking/_wire.py: raw record kinds and the pair's token packing (checked by a test) */
#define K_EMITTED 10
#define K_PAIR 15
#define PAIR_SHIFT 16
#define W 8
/* tracking/_hub.py: a queue-depth sample is due every _DEPTH_EVERY records of a job */
#define DEPTH_EVERY 64

static PyObject *perf_counter = NULL; /* time.perf_counter */
static PyObject *k_emitted = NULL;
static PyObject *k_pair = NULL;

typedef struct {
    PyObject_HEAD
    PyObject *buf; /* the hub's queue, a list (never replaced while the job runs) */
    Py_ssize_t tok;
    Py_ssize_t seq;
    Py_ssize_t half;
    Py_ssize_t cap;
} TrackerCore;

static int
core_traverse(TrackerCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buf);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int
core_clear(TrackerCore *self)
{
    Py_CLEAR(self->buf);
    return 0;
}

static void
core_dealloc(TrackerCore *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    core_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Append the eight new references in ``items`` to ``buf`` (stealing them). While the list's
 * array has room (it over-allocates as it grows, and the drain empties it), the items are
 * stored in place and the size raised once, as ``list.append`` does for one; else through
 * ``PyList_Append``, which grows it. */
static int
append8(PyObject *buf, PyObject **items)
{
    PyListObject *list = (PyListObject *)buf;
    Py_ssize_t n = PyList_GET_SIZE(buf);
    int i;
    if (list->allocated - n >= W) {
        for (i = 0; i < W; i++) {
            list->ob_item[n + i] = items[i]; /* steals the reference */
        }
        Py_SET_SIZE(list, n + W);
        return 0;
    }
    for (i = 0; i < W; i++) {
        if (PyList_Append(buf, items[i]) < 0) {
            /* out of memory: the items appended so far would tear the record; take them back */
            PyList_SetSlice(buf, n, n + i, NULL);
            for (i = 0; i < W; i++) {
                Py_DECREF(items[i]);
            }
            return -1;
        }
    }
    for (i = 0; i < W; i++) {
        Py_DECREF(items[i]);
    }
    return 0;
}

static int
make_items(PyObject **items, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        if (items[i] == NULL) {
            int j;
            for (j = 0; j < n; j++) {
                Py_XDECREF(items[j]);
            }
            return -1;
        }
    }
    return 0;
}

static int
check_buf(TrackerCore *self)
{
    if (self->buf == NULL || !PyList_CheckExact(self->buf)) {
        PyErr_SetString(PyExc_TypeError, "TrackerCore.buf must be a list");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(emitted_doc,
"emitted(ri, aseq, event, payload) -> None | int\n\n"
"Count the job's next record and queue it as ``payload.emitted`` (activation ``aseq`` of\n"
"routine ``ri`` emitted ``payload`` on ``event``), the cheap way. Returns None when queued;\n"
"else the record's ``seq`` (already counted), for the slow path to write: the queue is past\n"
"half its bound, or a queue-depth sample is due.");

static PyObject *
core_emitted(TrackerCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *items[W];
    Py_ssize_t seq;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "emitted() takes 4 arguments (ri, aseq, event, payload)");
        return NULL;
    }
    if (check_buf(self) < 0) {
        return NULL;
    }
    seq = ++self->seq;
    if (seq % DEPTH_EVERY == 0 || PyList_GET_SIZE(self->buf) >= self->half) {
        return PyLong_FromSsize_t(seq);
    }
    Py_INCREF(k_emitted);
    items[0] = k_emitted;
    items[1] = PyLong_FromSsize_t(self->tok);
    items[2] = PyLong_FromSsize_t(seq);
    items[3] = PyObject_CallNoArgs(perf_counter);
    Py_INCREF(args[0]);
    items[4] = args[0];
    Py_INCREF(args[1]);
    items[5] = args[1];
    Py_INCREF(args[2]);
    items[6] = args[2];
    items[7] = PyLong_FromVoidPtr(args[3]); /* id(payload) */
    if (make_items(items, W) < 0 || append8(self->buf, items) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(pair_doc,
"pair(ri, t1, t0, aseq, nseq, payload) -> bool\n\n"
"Queue activation ``aseq`` of routine ``ri`` finished at ``t1`` (started at ``t0``) and\n"
"activation ``nseq`` started on ``payload``, the only input of its routine's one slot, both\n"
"first attempts, as one ``K_PAIR`` raw record of two records. False (nothing counted or\n"
"queued) when the queue is past half its bound or ``ri`` does not fit the packed token: the\n"
"caller then writes the two records the general way.");

static PyObject *
core_pair(TrackerCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *items[W];
    Py_ssize_t ri, seq;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "pair() takes 6 arguments (ri, t1, t0, aseq, nseq, payload)");
        return NULL;
    }
    if (check_buf(self) < 0) {
        return NULL;
    }
    ri = PyLong_AsSsize_t(args[0]);
    if (ri == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (ri < 0 || ri >= ((Py_ssize_t)1 << PAIR_SHIFT)
        || PyList_GET_SIZE(self->buf) >= self->half) {
        Py_RETURN_FALSE;
    }
    seq = self->seq + 2;
    Py_INCREF(k_pair);
    items[0] = k_pair;
    items[1] = PyLong_FromSsize_t((self->tok << PAIR_SHIFT) | ri);
    items[2] = PyLong_FromSsize_t(seq);
    Py_INCREF(args[1]);
    items[3] = args[1];
    Py_INCREF(args[2]);
    items[4] = args[2];
    Py_INCREF(args[3]);
    items[5] = args[3];
    Py_INCREF(args[4]);
    items[6] = args[4];
    items[7] = PyLong_FromVoidPtr(args[5]); /* id(payload) */
    if (make_items(items, W) < 0 || append8(self->buf, items) < 0) {
        return NULL;
    }
    self->seq = seq;
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(take_doc,
"take(buf) -> tuple\n\n"
"Remove every item of the list ``buf`` and return them as a tuple that the cyclic garbage\n"
"collector does not track (the drain thread's chunk).\n\n"
"A chunk holds atoms (ints, floats, strings, None) and tuples of atoms, so it can never be\n"
"part of a reference cycle; ``tuple(buf)`` would be tracked, and the collector's first pass\n"
"over it would visit every item (about a sixth of tracking's cost per message). Writers only\n"
"append whole records and this is the only remover, so the items taken are whole records.");

static PyObject *
crec_take(PyObject *module, PyObject *buf)
{
    Py_ssize_t i, n;
    PyObject *chunk, **items;
    if (!PyList_CheckExact(buf)) {
        PyErr_SetString(PyExc_TypeError, "take() needs a list");
        return NULL;
    }
    n = PyList_GET_SIZE(buf);
    /* Making the tuple may run a collection, and with it other threads' appends: the list can
     * grow (and move its array) meanwhile, so its items are read only afterwards. Its first n
     * items are still the same ones (nothing else removes items). */
    chunk = PyTuple_New(n);
    if (chunk == NULL) {
        return NULL;
    }
    items = ((PyListObject *)buf)->ob_item;
    for (i = 0; i < n; i++) {
        Py_INCREF(items[i]);
        PyTuple_SET_ITEM(chunk, i, items[i]);
    }
    if (PyList_SetSlice(buf, 0, n, NULL) < 0) {
        Py_DECREF(chunk);
        return NULL;
    }
    PyObject_GC_UnTrack(chunk);
    return chunk;
}

static PyMethodDef crec_functions[] = {
    {"take", crec_take, METH_O, take_doc},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef core_methods[] = {
    {"emitted_fast", (PyCFunction)(void (*)(void))core_emitted, METH_FASTCALL, emitted_doc},
    {"pair", (PyCFunction)(void (*)(void))core_pair, METH_FASTCALL, pair_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef core_members[] = {
    {"buf", T_OBJECT, offsetof(TrackerCore, buf), 0, "the hub's queue (a list)"},
    {"tok", T_PYSSIZET, offsetof(TrackerCore, tok), 0, "the job's token"},
    {"seq", T_PYSSIZET, offsetof(TrackerCore, seq), 0, "records counted so far"},
    {"half", T_PYSSIZET, offsetof(TrackerCore, half), 0, "items queued before the slow path"},
    {"cap", T_PYSSIZET, offsetof(TrackerCore, cap), 0, "items queued before records drop"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot core_slots[] = {
    {Py_tp_doc, "The hot-path fields and methods of a job's tracker (compiled)."},
    {Py_tp_traverse, core_traverse},
    {Py_tp_clear, core_clear},
    {Py_tp_dealloc, core_dealloc},
    {Py_tp_methods, core_methods},
    {Py_tp_members, core_members},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec core_spec = {
    "routilux.tracking._crec.TrackerCore",
    sizeof(TrackerCore),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    core_slots,
};

static int
crec_exec(PyObject *module)
{
    PyObject *time_mod, *type;
    time_mod = PyImport_ImportModule("time");
    if (time_mod == NULL) {
        return -1;
    }
    Py_XSETREF(perf_counter, PyObject_GetAttrString(time_mod, "perf_counter"));
    Py_DECREF(time_mod);
    if (perf_counter == NULL) {
        return -1;
    }
    Py_XSETREF(k_emitted, PyLong_FromLong(K_EMITTED));
    Py_XSETREF(k_pair, PyLong_FromLong(K_PAIR));
    if (k_emitted == NULL || k_pair == NULL) {
        return -1;
    }
    type = PyType_FromModuleAndSpec(module, &core_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "TrackerCore", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    if (PyModule_AddIntConstant(module, "K_EMITTED", K_EMITTED) < 0
        || PyModule_AddIntConstant(module, "K_PAIR", K_PAIR) < 0
        || PyModule_AddIntConstant(module, "PAIR_SHIFT", PAIR_SHIFT) < 0
        || PyModule_AddIntConstant(module, "W", W) < 0
        || PyModule_AddIntConstant(module, "DEPTH_EVERY", DEPTH_EVERY) < 0) {
        return -1;
    }
    return 0;
}

/* Module state is in static variables, so one interpreter only (3.12+ would otherwise let
 * sub-interpreters share these objects). Free-threaded builds are not declared supported
 * (no Py_mod_gil slot): they re-enable the GIL for this module, which the list writes rely on. */
static PyModuleDef_Slot crec_slots[] = {
    {Py_mod_exec, crec_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef crec_module = {
    PyModuleDef_HEAD_INIT,
    "_crec",
    "The tracking recorder's per-message methods, compiled (see _hub.JobTracker).",
    0,
    crec_functions,
    crec_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__crec(void)
{
    return PyModuleDef_Init(&crec_module);
}
