/* Per-routine counters of a job, compiled (optional).
 *
 * ``StatsCore`` is the base class of ``routilux._activation.RoutineStats`` (a job's counters of
 * one routine) and of ``routilux.tracking.metrics._Totals`` (a flow's totals of one routine).
 * The pure Python class ``_activation._PyStatsCore`` is the same thing, used when this module
 * was not built (or ROUTILUX_PURE_PYTHON=1); tests run both and compare them.
 *
 The two counters Python code writes per message (``payloads_in``/``payloads_out``) are object
 * slots (``T_OBJECT_EX``), read and written as fast as ``__slots__`` attributes; the others are
 * C numbers (no int or float object each): they are written here, or by Python code on error
 * paths only. What is compiled is what runs once per activation or per job: making a job's
 * counters (``fresh``), recording a duration (``record``) and folding a forgotten job's
 * counters into its flow's totals (``fold``).
 *
 The base type is not tracked by the cyclic garbage collector (its objects hold ints, a
 * ``bytearray`` or None); its Python subclasses are (every class statement makes one that is),
 * but the collector has nothing of this struct to walk.
 *
 * Concurrency: ``record`` runs under the GIL without calling Python code or releasing it, so a
 * reader on another thread sees it whole or not at all; ``fold`` makes everything that can
 * fail (or start a garbage collection) first, then changes the counters together, and hands
 * the durations over last. Deleting a field from Python leaves it NULL: the methods refuse it
 * (AttributeError) rather than read it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "structmember.h"

/* _activation.py: _DURATION_SAMPLES doubles in the ring (checked by a test) */
#define SAMPLES 1024
#define RING_BYTES (SAMPLES * (Py_ssize_t)sizeof(double))

static PyObject *zero = NULL;  /* 0 */
static PyObject *s_extend = NULL;
static PyObject *s_append = NULL;
static PyObject *s_samples = NULL;
/* StatsCore, made once per process: the module keeps no per-interpreter state (see
 * module_slots); importing it again (after removing it from sys.modules) makes a new type, and
 * ``fold`` refuses counters of the old one. */
static PyTypeObject *stats_type = NULL;

typedef struct {
    PyObject_HEAD
    /* written by Python code on the per-message path (``stats.payloads_in += 1``): objects */
    PyObject *payloads_in;
    PyObject *payloads_out;
    PyObject *samples; /* ``_samples``: the ring (a bytearray of packed doubles) or None */
    /* written here, or by Python code on error paths only: C numbers, no object each */
    Py_ssize_t activations;
    Py_ssize_t errors;
    Py_ssize_t retries;
    Py_ssize_t skipped;
    Py_ssize_t timeouts;
    Py_ssize_t dpos; /* next byte offset to overwrite once the ring is full */
    double total;    /* seconds */
    double min;
    double max;
} StatsCore;

static void
stats_init_fields(StatsCore *s)
{
    /* (tp_alloc zeroed the C numbers) */
    s->payloads_in = Py_NewRef(zero);
    s->payloads_out = Py_NewRef(zero);
    s->samples = Py_NewRef(Py_None);
    s->min = Py_HUGE_VAL;
}

static PyObject *
stats_new(PyTypeObject *tp, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwds))
{
    StatsCore *s = (StatsCore *)tp->tp_alloc(tp, 0);
    if (s == NULL)
        return NULL;
    stats_init_fields(s);
    return (PyObject *)s;
}

static void
stats_dealloc(StatsCore *s)
{
    PyTypeObject *tp = Py_TYPE(s);
    Py_CLEAR(s->payloads_in);
    Py_CLEAR(s->payloads_out);
    Py_CLEAR(s->samples);
    tp->tp_free((PyObject *)s);
    Py_DECREF(tp);
}

static int
as_double(PyObject *o, double *out)
{
    double d = PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred())
        return -1;
    *out = d;
    return 0;
}

/* record(seconds): the same steps, in the same order, as ``_PyStatsCore.record``. */
static PyObject *
stats_record(StatsCore *s, PyObject *arg)
{
    double sec;
    PyObject *samples = s->samples;
    if (as_double(arg, &sec) < 0)
        return NULL;
    if (samples == NULL) {
        PyErr_SetString(PyExc_AttributeError, "RoutineStats._samples was deleted");
        return NULL;
    }
    if (s->activations == PY_SSIZE_T_MAX) {
        PyErr_SetString(PyExc_OverflowError, "RoutineStats: a counter overflowed");
        return NULL;
    }
    if (samples == Py_None) {
        if (s->activations) { /* the second sample: the ring is made, with the first (total) */
            double pair[2];
            PyObject *ring;
            pair[0] = s->total;
            pair[1] = sec;
            ring = PyByteArray_FromStringAndSize((const char *)pair, sizeof(pair));
            if (ring == NULL)
                return NULL;
            Py_SETREF(s->samples, ring);
        }
    }
    else if (PyByteArray_Check(samples)) {
        Py_ssize_t n = PyByteArray_GET_SIZE(samples);
        if (n < RING_BYTES) {
            if (PyByteArray_Resize(samples, n + (Py_ssize_t)sizeof(double)) < 0)
                return NULL;
            memcpy(PyByteArray_AS_STRING(samples) + n, &sec, sizeof(double));
        }
        else {
            Py_ssize_t pos = s->dpos;
            if (pos < 0 || pos > n - (Py_ssize_t)sizeof(double)) {
                PyErr_SetString(PyExc_ValueError, "RoutineStats: sample offset out of range");
                return NULL;
            }
            memcpy(PyByteArray_AS_STRING(samples) + pos, &sec, sizeof(double));
            s->dpos = (pos + (Py_ssize_t)sizeof(double)) % RING_BYTES;
        }
    }
    else {
        PyErr_SetString(PyExc_TypeError, "RoutineStats._samples must be a bytearray or None");
        return NULL;
    }
    /* (nothing above can fail once the numbers change: a reader sees all of them or none) */
    if (sec < s->min)
        s->min = sec;
    if (sec > s->max)
        s->max = sec;
    s->total += sec;
    s->activations += 1;
    Py_RETURN_NONE;
}

/* ``s``'s kept durations as one new object (NULL: an error; ``*method``: the ``target`` method
 * that takes it): a tuple of the ring's doubles in storage order for ``extend``, or its one
 * sample (``total``) for ``append`` when there is no ring yet; None (a new reference) when it
 * never ran. Everything that can fail or start a garbage collection happens here, before any
 * counter changes. */
static PyObject *
kept_samples(StatsCore *s, PyObject **method)
{
    PyObject *samples = s->samples;
    if (samples == NULL) {
        PyErr_SetString(PyExc_AttributeError, "RoutineStats._samples was deleted");
        return NULL;
    }
    if (samples == Py_None) {
        if (!s->activations)
            Py_RETURN_NONE;
        *method = s_append;
        return PyFloat_FromDouble(s->total);
    }
    if (!PyByteArray_Check(samples)) {
        PyErr_SetString(PyExc_TypeError, "RoutineStats._samples must be a bytearray or None");
        return NULL;
    }
    {
        Py_ssize_t n = PyByteArray_GET_SIZE(samples) / (Py_ssize_t)sizeof(double), i;
        PyObject *items = PyTuple_New(n);
        if (items == NULL)
            return NULL;
        for (i = 0; i < n; i++) {
            /* (re-read each time: a collection started by an allocation cannot resize the
             * ring, which only ``record`` does under the GIL, but the pointer stays valid) */
            const double *d = (const double *)PyByteArray_AS_STRING(samples);
            PyObject *f = PyFloat_FromDouble(d[i]);
            if (f == NULL) {
                Py_DECREF(items);
                return NULL;
            }
            PyTuple_SET_ITEM(items, i, f);
        }
        *method = s_extend;
        return items;
    }
}

/* Hand what ``kept_samples`` made to ``target`` (steals ``kept``). */
static int
send_samples(PyObject *target, PyObject *method, PyObject *kept)
{
    PyObject *r;
    if (kept == Py_None) {
        Py_DECREF(kept);
        return 0;
    }
    r = PyObject_CallMethodOneArg(target, method, kept);
    Py_DECREF(kept);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *
stats_samples_into(StatsCore *s, PyObject *target)
{
    PyObject *method = NULL;
    PyObject *kept = kept_samples(s, &method);
    if (kept == NULL || send_samples(target, method, kept) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ``*out = a + b`` unless that overflows (then OverflowError, ``*out`` unchanged). */
static int
add_count(Py_ssize_t a, Py_ssize_t b, Py_ssize_t *out)
{
    if ((b > 0 && a > PY_SSIZE_T_MAX - b) || (b < 0 && a < PY_SSIZE_T_MIN - b)) {
        PyErr_SetString(PyExc_OverflowError, "RoutineStats: a counter overflowed");
        return -1;
    }
    *out = a + b;
    return 0;
}

/* fold(other, samples): add ``other``'s counters to this one's, widen min/max (if ``other``
 * ran), and append ``other``'s kept durations to ``samples`` (the same steps as
 * ``_PyStatsCore.fold``). Everything that can fail is computed first; the counters then
 * change together (no Python code can run between them), and last the durations are handed
 * to ``samples`` (a deque: its ``extend``/``append`` run no Python code either). */
static int
fold_one(StatsCore *s, PyObject *other, PyObject *target)
{
    StatsCore *o;
    PyObject *pin, *pout, *kept, *method = NULL;
    Py_ssize_t acts, errs, rets, skips, touts;
    if (!PyObject_TypeCheck(other, stats_type)) {
        PyErr_SetString(PyExc_TypeError, "fold(other, samples): other must be a StatsCore");
        return -1;
    }
    o = (StatsCore *)other;
    if (s->payloads_in == NULL || s->payloads_out == NULL || o->payloads_in == NULL
        || o->payloads_out == NULL) {
        PyErr_SetString(PyExc_AttributeError, "RoutineStats: a payload counter was deleted");
        return -1;
    }
    /* the durations first: making their tuple can start a garbage collection, which can run
     * Python code; nothing read before it is reused after it */
    kept = kept_samples(o, &method);
    if (kept == NULL)
        return -1;
    if (add_count(s->activations, o->activations, &acts) < 0
        || add_count(s->errors, o->errors, &errs) < 0
        || add_count(s->retries, o->retries, &rets) < 0
        || add_count(s->skipped, o->skipped, &skips) < 0
        || add_count(s->timeouts, o->timeouts, &touts) < 0) {
        Py_DECREF(kept);
        return -1;
    }
    pin = PyNumber_Add(s->payloads_in, o->payloads_in);
    if (pin == NULL) {
        Py_DECREF(kept);
        return -1;
    }
    pout = PyNumber_Add(s->payloads_out, o->payloads_out);
    if (pout == NULL) {
        Py_DECREF(kept);
        Py_DECREF(pin);
        return -1;
    }
    /* (ints are not tracked by the collector: adding them ran no Python code; from here
     * nothing fails until the durations are handed over) */
    if (o->activations) {
        if (o->min < s->min)
            s->min = o->min;
        if (o->max > s->max)
            s->max = o->max;
    }
    s->activations = acts;
    s->errors = errs;
    s->retries = rets;
    s->skipped = skips;
    s->timeouts = touts;
    s->total += o->total;
    Py_SETREF(s->payloads_in, pin);
    Py_SETREF(s->payloads_out, pout);
    return send_samples(target, method, kept);
}

static PyObject *
stats_fold(StatsCore *s, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "fold(other, samples) takes two arguments");
        return NULL;
    }
    if (fold_one(s, args[0], args[1]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMemberDef stats_members[] = {
    {"activations", T_PYSSIZET, offsetof(StatsCore, activations), 0, NULL},
    {"errors", T_PYSSIZET, offsetof(StatsCore, errors), 0, NULL},
    {"retries", T_PYSSIZET, offsetof(StatsCore, retries), 0, NULL},
    {"skipped", T_PYSSIZET, offsetof(StatsCore, skipped), 0, NULL},
    {"timeouts", T_PYSSIZET, offsetof(StatsCore, timeouts), 0, NULL},
    {"payloads_in", T_OBJECT_EX, offsetof(StatsCore, payloads_in), 0, NULL},
    {"payloads_out", T_OBJECT_EX, offsetof(StatsCore, payloads_out), 0, NULL},
    {"total", T_DOUBLE, offsetof(StatsCore, total), 0, NULL},
    {"min", T_DOUBLE, offsetof(StatsCore, min), 0, NULL},
    {"max", T_DOUBLE, offsetof(StatsCore, max), 0, NULL},
    {"_samples", T_OBJECT_EX, offsetof(StatsCore, samples), 0, NULL},
    {"dpos", T_PYSSIZET, offsetof(StatsCore, dpos), 0, NULL},
    {NULL},
};

static PyMethodDef stats_methods[] = {
    {"record", (PyCFunction)stats_record, METH_O,
     "record(seconds): count one activation that took ``seconds``."},
    {"fold", (PyCFunction)(void (*)(void))stats_fold, METH_FASTCALL,
     "fold(other, samples): add ``other``'s counters; append its durations to ``samples``."},
    {"samples_into", (PyCFunction)stats_samples_into, METH_O,
     "samples_into(target): append the kept durations to ``target``."},
    {NULL},
};

static PyType_Slot stats_slots[] = {
    {Py_tp_new, stats_new},
    {Py_tp_dealloc, stats_dealloc},
    {Py_tp_members, stats_members},
    {Py_tp_methods, stats_methods},
    {Py_tp_doc, "Counters of one routine (the compiled base of RoutineStats and _Totals)."},
    {0, NULL},
};

static PyType_Spec stats_spec = {
    .name = "routilux._cstats.StatsCore",
    .basicsize = sizeof(StatsCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = stats_slots,
};

/* fresh(cls, n): a list of ``n`` new ``cls`` objects (a job's counters, one per routine), made
 * without calling ``cls`` (``cls`` must be a subclass of StatsCore that adds no fields). */
static PyObject *
fresh(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    PyTypeObject *tp;
    PyObject *list;
    Py_ssize_t n, i;
    if (nargs != 2 || !PyType_Check(args[0])
        || !PyType_IsSubtype((PyTypeObject *)args[0], stats_type)
        || ((PyTypeObject *)args[0])->tp_basicsize != sizeof(StatsCore)) {
        PyErr_SetString(PyExc_TypeError,
                        "fresh(cls, n): cls must be a StatsCore subclass without fields");
        return NULL;
    }
    tp = (PyTypeObject *)args[0];
    n = PyLong_AsSsize_t(args[1]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "fresh(cls, n): n must be >= 0");
        return NULL;
    }
    list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        StatsCore *s = (StatsCore *)tp->tp_alloc(tp, 0);
        if (s == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        stats_init_fields(s);
        PyList_SET_ITEM(list, i, (PyObject *)s);
    }
    return list;
}

/* fold_all(totals, stats): ``totals[i].fold(stats[i], totals[i].samples)`` for every i (a
 * forgotten job's counters, one per routine, into its flow's totals in the same order). */
static PyObject *
fold_all(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t n, i;
    if (nargs != 2 || !PyList_CheckExact(args[0]) || !PyList_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "fold_all(totals, stats) takes two lists");
        return NULL;
    }
    n = PyList_GET_SIZE(args[0]);
    if (PyList_GET_SIZE(args[1]) != n) {
        PyErr_SetString(PyExc_ValueError, "fold_all(totals, stats): the lists differ in length");
        return NULL;
    }
    for (i = 0; i < n; i++) {
        PyObject *t, *o, *target;
        int r;
        /* (a collection inside a fold can run Python code: read the lists again each time) */
        if (i >= PyList_GET_SIZE(args[0]) || i >= PyList_GET_SIZE(args[1])) {
            PyErr_SetString(PyExc_RuntimeError, "fold_all(totals, stats): a list changed");
            return NULL;
        }
        t = PyList_GET_ITEM(args[0], i);
        o = PyList_GET_ITEM(args[1], i);
        if (!PyObject_TypeCheck(t, stats_type)) {
            PyErr_SetString(PyExc_TypeError, "fold_all(totals, stats): totals must be StatsCores");
            return NULL;
        }
        Py_INCREF(t);
        Py_INCREF(o);
        target = PyObject_GetAttr(t, s_samples);
        r = target == NULL ? -1 : fold_one((StatsCore *)t, o, target);
        Py_XDECREF(target);
        Py_DECREF(o);
        Py_DECREF(t);
        if (r < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"fold_all", (PyCFunction)(void (*)(void))fold_all, METH_FASTCALL,
     "fold_all(totals, stats): fold stats[i] into totals[i] for every i."},
    {"fresh", (PyCFunction)(void (*)(void))fresh, METH_FASTCALL,
     "fresh(cls, n): a list of n new cls objects (a job's counters)."},
    {NULL},
};

static int
module_exec(PyObject *m)
{
    PyObject *tp;
    if (zero == NULL) {
        zero = PyLong_FromLong(0);
        s_extend = PyUnicode_InternFromString("extend");
        s_append = PyUnicode_InternFromString("append");
        s_samples = PyUnicode_InternFromString("samples");
        if (zero == NULL || s_extend == NULL || s_append == NULL || s_samples == NULL)
            return -1;
    }
    tp = PyType_FromModuleAndSpec(m, &stats_spec, NULL);
    if (tp == NULL)
        return -1;
    if (PyModule_AddObject(m, "StatsCore", Py_NewRef(tp)) < 0) {
        Py_DECREF(tp);
        Py_DECREF(tp);
        return -1;
    }
    Py_XSETREF(stats_type, (PyTypeObject *)tp); /* keeps the reference made above */
    if (PyModule_AddIntConstant(m, "SAMPLES", SAMPLES) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "routilux._cstats",
    .m_doc = "Per-routine counters of a job, compiled (see routilux._activation).",
    .m_size = 0,
    .m_methods = module_methods,
    .m_slots = module_slots,
};

PyMODINIT_FUNC
PyInit__cstats(void)
{
    return PyModuleDef_Init(&module_def);
}
