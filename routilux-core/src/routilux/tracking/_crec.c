/* The tracking recorder's per-message methods, compiled (optional).
 *
 * ``TrackerCore`` is the base class of ``routilux.tracking._hub.JobTracker``: it holds the
 * fields the hot path reads (the hub's queue ``buf``, a ``bytearray``; the hub's name index
 * ``nidx``; the job's token ``tok``, its record counter ``seq`` and the queue's bounds ``half``
 * and ``cap``, in bytes) and writes the hot records (``payload.emitted``, ``activation.started``
 * on one payload, ``activation.finished``, the finished+started pair and the queue-depth
 * samples that follow an emitted record now and then) as fixed-size packed
 * records of ``REC_SIZE`` (56) bytes at the end of ``buf``, exactly the layout of
 * tracking/_wire.py (``REC``). No Python object is made per record. The pure Python class
 * ``_hub._PyTrackerCore`` is the same thing, used when this module was not built (or
 * ROUTILUX_PURE_PYTHON=1); tests run both and compare the bytes they queue.
 *
 * Concurrency: the caller holds the job's lock (which orders one job's records); records of
 * different jobs interleave in ``buf``. A record is written whole while this thread holds the
 * GIL: nothing between reserving its bytes and filling them runs Python code or releases the
 * GIL (a ``perf_counter`` call is made before; growing the ``bytearray`` only reallocates).
 * Only the drain thread removes bytes (``take``), all of them at once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <stdint.h>
#include "structmember.h"
#include <time.h>

/* tracking/_wire.py: raw record kinds and the packed layout (checked by a test) */
#define K_STARTED 5
#define K_FINISHED 6
#define K_EMITTED 10
#define K_DEPTH 13
#define K_OBJ 14
#define K_PAIR 15
#define REC_SIZE 56
#define REC_NAME_MAX 0xFFFF   /* name indices and a pair's routine index: uint16 */
#define TOK_MAX 0xFFFFFFFF /* job tokens: uint32 */
#define ATTEMPT_MAX 0xFF  /* attempts: uint8 */
/* tracking/_hub.py: a queue-depth sample is due every _DEPTH_EVERY records of a job */
#define DEPTH_EVERY 64

/* field offsets of a packed record: "=BBHIqddqqQ" */
#define O_KIND 0
#define O_ATTEMPT 1
#define O_NAME 2
#define O_TOK 4
#define O_SEQ 8
#define O_T 16
#define O_T2 24
#define O_ASEQ 32
#define O_X 40
#define O_PID 48

static PyObject *perf_counter = NULL; /* time.perf_counter */
static PyTypeObject *deque_type = NULL; /* collections.deque */

typedef struct {
    PyObject_HEAD
    PyObject *buf;  /* the hub's queue, a bytearray (never replaced while the job runs) */
    PyObject *nidx; /* the hub's name index, a dict str -> int (only the hub adds to it) */
    PyObject *queues; /* the job's queues, a list of deques (for queue-depth samples) */
    /* the last name looked up in ``last_nidx`` and its index (names are only ever added to
     * the table, so an index found stays right; the references keep the two objects, so
     * their addresses, and a new ``nidx`` is looked up afresh) */
    PyObject *last_name;
    PyObject *last_nidx;
    Py_ssize_t last_nm;
    Py_ssize_t tok;
    Py_ssize_t seq;
    Py_ssize_t half;
    Py_ssize_t cap;
} TrackerCore;

static int
core_traverse(TrackerCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buf);
    Py_VISIT(self->nidx);
    Py_VISIT(self->queues);
    Py_VISIT(self->last_name);
    Py_VISIT(self->last_nidx);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int
core_clear(TrackerCore *self)
{
    Py_CLEAR(self->buf);
    Py_CLEAR(self->nidx);
    Py_CLEAR(self->queues);
    Py_CLEAR(self->last_name);
    Py_CLEAR(self->last_nidx);
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

static int
check_buf(TrackerCore *self)
{
    if (self->buf == NULL || !PyByteArray_CheckExact(self->buf)) {
        PyErr_SetString(PyExc_TypeError, "TrackerCore.buf must be a bytearray");
        return -1;
    }
    return 0;
}

/* The address of ``k`` new records' bytes at the end of the bytearray ``buf``, its size raised
 * by ``k * REC_SIZE``; NULL with an exception set on failure (then nothing is added). The
 * array keeps its allocation when the drain empties it (``take``) and grows by doubling, up
 * to the queue's bound plus the records being added, so after the first fill the hot path
 * writes into memory already touched. */
static char *
reserve_k(PyObject *buf, Py_ssize_t cap, Py_ssize_t k)
{
    PyByteArrayObject *b = (PyByteArrayObject *)buf;
    Py_ssize_t n = Py_SIZE(b);
    Py_ssize_t used = n + (b->ob_start - b->ob_bytes);
    Py_ssize_t size = k * REC_SIZE;
    char *p;
    if (b->ob_bytes == NULL || b->ob_alloc - used - 1 < size) {
        Py_ssize_t want = 2 * (n + size);
        if (want > cap + size) {
            want = cap + size;
        }
        if (want < n + size) {
            want = n + size;
        }
        if (want < 4096) {
            want = 4096;
        }
        /* (refused while a buffer export is alive: then the array cannot move) */
        if (PyByteArray_Resize(buf, want) < 0) {
            return NULL;
        }
        Py_SET_SIZE(b, n); /* the allocation stays */
    }
    p = b->ob_start + n;
    Py_SET_SIZE(b, n + size);
    b->ob_start[n + size] = '\0'; /* a bytearray's trailing NUL */
    return p;
}

/* One record's bytes (see ``reserve_k``). */
static char *
reserve(PyObject *buf, Py_ssize_t cap)
{
    return reserve_k(buf, cap, 1);
}

static void
fill(char *p, int kind, int attempt, Py_ssize_t name, Py_ssize_t tok, int64_t seq, double t,
     double t2, int64_t aseq, int64_t x, uint64_t pid)
{
    uint8_t k8 = (uint8_t)kind, a8 = (uint8_t)attempt;
    uint16_t n16 = (uint16_t)name;
    uint32_t t32 = (uint32_t)tok;
    memcpy(p + O_KIND, &k8, 1);
    memcpy(p + O_ATTEMPT, &a8, 1);
    memcpy(p + O_NAME, &n16, 2);
    memcpy(p + O_TOK, &t32, 4);
    memcpy(p + O_SEQ, &seq, 8);
    memcpy(p + O_T, &t, 8);
    memcpy(p + O_T2, &t2, 8);
    memcpy(p + O_ASEQ, &aseq, 8);
    memcpy(p + O_X, &x, 8);
    memcpy(p + O_PID, &pid, 8);
}

/* The index of name ``name`` in the hub's table: >= 0; -1 when it has none (not an exact str,
 * or not registered: the caller takes the object path); -2 with an exception set. */
static Py_ssize_t
name_index(TrackerCore *self, PyObject *name)
{
    PyObject *ix;
    Py_ssize_t i;
    if (name == self->last_name && self->nidx == self->last_nidx) {
        return self->last_nm;
    }
    if (!PyUnicode_CheckExact(name) || self->nidx == NULL || !PyDict_CheckExact(self->nidx)) {
        return -1;
    }
    /* an exact str key: hashing and comparing it run no Python code */
    ix = PyDict_GetItemWithError(self->nidx, name);
    if (ix == NULL) {
        return PyErr_Occurred() ? -2 : -1;
    }
    i = PyLong_AsSsize_t(ix);
    if (i == -1 && PyErr_Occurred()) {
        return -2;
    }
    if (i < 0 || i > REC_NAME_MAX) {
        return -1;
    }
    Py_INCREF(name);
    Py_XSETREF(self->last_name, name);
    Py_INCREF(self->nidx);
    Py_XSETREF(self->last_nidx, self->nidx);
    self->last_nm = i;
    return i;
}

/* ``time.perf_counter()`` as a C double. On Linux that is CLOCK_MONOTONIC in nanoseconds,
 * turned into seconds exactly as CPython does (``_PyTime_AsSecondsDouble``), so the two read
 * the same clock and compare; elsewhere it calls ``time.perf_counter``. */
static int
now(double *t)
{
#if defined(__linux__) && defined(CLOCK_MONOTONIC)
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0) {
        int64_t ns = (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
        volatile double d;
        if (ns % 1000000000 == 0) {
            d = (double)(ns / 1000000000);
        }
        else {
            d = (double)ns;
            d /= 1e9;
        }
        *t = d;
        return 0;
    }
#endif
    PyObject *f = PyObject_CallNoArgs(perf_counter);
    if (f == NULL) {
        return -1;
    }
    *t = PyFloat_AsDouble(f);
    Py_DECREF(f);
    return (*t == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static int
as_i64(PyObject *o, int64_t *out)
{
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static int
as_double(PyObject *o, double *out)
{
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    *out = v;
    return 0;
}

PyDoc_STRVAR(emitted_doc,
"emitted_fast(ri, aseq, event, payload, targets=None) -> None | int\n\n"
"Count the job's next record and queue it as ``payload.emitted`` (activation ``aseq`` of\n"
"routine ``ri`` emitted ``payload`` on ``event``, to be delivered to ``targets``), packed;\n"
"when a queue-depth sample is due, the depth of each target queue (``queues[qi]``, the\n"
"payload counted in) follows as one packed record each. Returns None when queued; else the\n"
"record's ``seq`` (already counted), for the slow path to write: the queue is past half its\n"
"bound, ``event`` has no index in the name table, or a sample is due and ``targets`` is not\n"
"a tuple of ``(ri, qi)`` tuples naming deques of ``queues``.");

/* 1 when every target of ``targets`` is a 2-tuple whose ``qi`` (an exact int) names an
 * exact deque of ``self->queues`` (a list): their lengths are then read without running
 * Python code. 0 otherwise (the slow path samples them). */
static int
depth_targets(TrackerCore *self, PyObject *targets)
{
    Py_ssize_t i, n, qi;
    PyObject *tg, *q;
    if (targets == NULL || !PyTuple_CheckExact(targets) || self->queues == NULL
        || !PyList_CheckExact(self->queues) || deque_type == NULL) {
        return 0;
    }
    n = PyTuple_GET_SIZE(targets);
    for (i = 0; i < n; i++) {
        tg = PyTuple_GET_ITEM(targets, i);
        if (!PyTuple_CheckExact(tg) || PyTuple_GET_SIZE(tg) != 2
            || !PyLong_CheckExact(PyTuple_GET_ITEM(tg, 1))) {
            return 0;
        }
        qi = PyLong_AsSsize_t(PyTuple_GET_ITEM(tg, 1));
        if (qi == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (qi < 0 || qi >= PyList_GET_SIZE(self->queues)) {
            return 0;
        }
        q = PyList_GET_ITEM(self->queues, qi);
        if (!Py_IS_TYPE(q, deque_type)) {
            return 0;
        }
    }
    return 1;
}

static PyObject *
core_emitted(TrackerCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t ri, aseq;
    Py_ssize_t seq, nm;
    double t;
    char *p;
    PyObject *targets;
    int depth;
    if (nargs != 4 && nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "emitted_fast() takes 4 or 5 arguments (ri, aseq, event, payload, "
                        "targets)");
        return NULL;
    }
    if (check_buf(self) < 0 || as_i64(args[0], &ri) < 0 || as_i64(args[1], &aseq) < 0) {
        return NULL;
    }
    targets = nargs == 5 ? args[4] : NULL;
    seq = ++self->seq;
    depth = seq % DEPTH_EVERY == 0;
    if (PyByteArray_GET_SIZE(self->buf) >= self->half || self->tok < 0 || self->tok > TOK_MAX) {
        return PyLong_FromSsize_t(seq);
    }
    nm = name_index(self, args[2]);
    if (nm == -2) {
        return NULL;
    }
    if (nm < 0) {
        return PyLong_FromSsize_t(seq);
    }
    if (now(&t) < 0) {
        return NULL;
    }
    /* Last, right before the bytes are reserved and filled: nothing from here on runs Python
     * code, so the targets and queues checked are the ones read (a name lookup above may run
     * some, with an odd name index). All the samples fit the queue's bound, or none is
     * packed: the slow path bounds each record on its own. */
    if (depth && (!depth_targets(self, targets)
                  || PyByteArray_GET_SIZE(self->buf)
                     + (1 + PyTuple_GET_SIZE(targets)) * REC_SIZE > self->cap)) {
        return PyLong_FromSsize_t(seq);
    }
    if ((p = reserve_k(self->buf, self->cap, depth ? 1 + PyTuple_GET_SIZE(targets) : 1))
        == NULL) {
        return NULL;
    }
    fill(p, K_EMITTED, 0, nm, self->tok, seq, t, 0.0, aseq, ri,
         (uint64_t)(uintptr_t)args[3]);
    if (depth) {
        /* (checked by depth_targets: exact tuples, ints in range, exact deques) */
        Py_ssize_t i, n = PyTuple_GET_SIZE(targets), qi;
        for (i = 0; i < n; i++) {
            qi = PyLong_AsSsize_t(PyTuple_GET_ITEM(PyTuple_GET_ITEM(targets, i), 1));
            p += REC_SIZE;
            fill(p, K_DEPTH, 0, 0, self->tok, seq + 1 + i, t, 0.0,
                 (int64_t)Py_SIZE(PyList_GET_ITEM(self->queues, qi)) + 1, qi, 0);
        }
        self->seq = seq + n;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(pair_doc,
"pair(ri, t1, t0, aseq, nseq, payload) -> bool\n\n"
"Queue activation ``aseq`` of routine ``ri`` finished at ``t1`` (started at ``t0``) and\n"
"activation ``nseq`` started on ``payload``, the only input of its routine's one slot, both\n"
"first attempts, as one packed ``K_PAIR`` record of two records. False (nothing counted or\n"
"queued) when the queue is past half its bound or ``ri`` or the job's token do not fit the\n"
"packed fields: the caller then writes the two records the general way.");

static PyObject *
core_pair(TrackerCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t ri, aseq, nseq;
    double t1, t0;
    char *p;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "pair() takes 6 arguments (ri, t1, t0, aseq, nseq, payload)");
        return NULL;
    }
    if (check_buf(self) < 0 || as_i64(args[0], &ri) < 0 || as_double(args[1], &t1) < 0
        || as_double(args[2], &t0) < 0 || as_i64(args[3], &aseq) < 0
        || as_i64(args[4], &nseq) < 0) {
        return NULL;
    }
    if (ri < 0 || ri > REC_NAME_MAX || self->tok < 0 || self->tok > TOK_MAX
        || PyByteArray_GET_SIZE(self->buf) >= self->half) {
        Py_RETURN_FALSE;
    }
    if ((p = reserve(self->buf, self->cap)) == NULL) {
        return NULL;
    }
    self->seq += 2;
    fill(p, K_PAIR, 0, (Py_ssize_t)ri, self->tok, self->seq, t1, t0, aseq, nseq,
         (uint64_t)(uintptr_t)args[5]);
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(started1_doc,
"started1(ri, aseq, attempt, slot, payload, t) -> bool\n\n"
"Count the job's next record and queue it as ``activation.started`` (activation ``aseq`` of\n"
"routine ``ri``, attempt ``attempt``, at ``t``, on the one payload ``payload`` of ``slot``),\n"
"packed. False (nothing counted or queued) when the queue is past half its bound or a field\n"
"does not fit (``slot`` not in the name table, ``attempt`` over 255, the job's token).");

static PyObject *
core_started1(TrackerCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t ri, aseq, attempt;
    Py_ssize_t nm;
    double t;
    char *p;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "started1() takes 6 arguments (ri, aseq, attempt, slot, payload, t)");
        return NULL;
    }
    if (check_buf(self) < 0 || as_i64(args[0], &ri) < 0 || as_i64(args[1], &aseq) < 0
        || as_i64(args[2], &attempt) < 0 || as_double(args[5], &t) < 0) {
        return NULL;
    }
    if (attempt < 0 || attempt > ATTEMPT_MAX || self->tok < 0 || self->tok > TOK_MAX
        || PyByteArray_GET_SIZE(self->buf) >= self->half) {
        Py_RETURN_FALSE;
    }
    nm = name_index(self, args[3]);
    if (nm == -2) {
        return NULL;
    }
    if (nm < 0) {
        Py_RETURN_FALSE;
    }
    if ((p = reserve(self->buf, self->cap)) == NULL) {
        return NULL;
    }
    self->seq += 1;
    fill(p, K_STARTED, (int)attempt, nm, self->tok, self->seq, t, 0.0, aseq, ri,
         (uint64_t)(uintptr_t)args[4]);
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(finished1_doc,
"finished1(ri, aseq, attempt, t1, duration) -> bool\n\n"
"Count the job's next record and queue it as ``activation.finished`` (activation ``aseq`` of\n"
"routine ``ri``, attempt ``attempt``, at ``t1`` after ``duration``), packed. False (nothing\n"
"counted or queued) when the queue is past half its bound or a field does not fit.");

static PyObject *
core_finished1(TrackerCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t ri, aseq, attempt;
    double t1, duration;
    char *p;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "finished1() takes 5 arguments (ri, aseq, attempt, t1, duration)");
        return NULL;
    }
    if (check_buf(self) < 0 || as_i64(args[0], &ri) < 0 || as_i64(args[1], &aseq) < 0
        || as_i64(args[2], &attempt) < 0 || as_double(args[3], &t1) < 0
        || as_double(args[4], &duration) < 0) {
        return NULL;
    }
    if (attempt < 0 || attempt > ATTEMPT_MAX || self->tok < 0 || self->tok > TOK_MAX
        || PyByteArray_GET_SIZE(self->buf) >= self->half) {
        Py_RETURN_FALSE;
    }
    if ((p = reserve(self->buf, self->cap)) == NULL) {
        return NULL;
    }
    self->seq += 1;
    fill(p, K_FINISHED, (int)attempt, 0, self->tok, self->seq, t1, duration, aseq, ri, 0);
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(mark_doc,
"mark(key) -> None\n\n"
"Queue a ``K_OBJ`` marker: the record is the object the hub keeps under ``key`` (the caller\n"
"stored it there first, and checked the queue's bound).");

static PyObject *
core_mark(TrackerCore *self, PyObject *key)
{
    int64_t k;
    char *p;
    if (check_buf(self) < 0 || as_i64(key, &k) < 0) {
        return NULL;
    }
    if ((p = reserve(self->buf, self->cap)) == NULL) {
        return NULL;
    }
    fill(p, K_OBJ, 0, 0, 0, 0, 0.0, 0.0, 0, 0, (uint64_t)k);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(take_doc,
"take(buf) -> bytes\n\n"
"Remove every byte of the bytearray ``buf`` (whole packed records: writers append whole\n"
"records and this is the only remover) and return them as ``bytes`` (the drain thread's\n"
"chunk). The bytearray keeps its allocation, so writers refill memory already touched.");

static PyObject *
crec_take(PyObject *Py_UNUSED(module), PyObject *buf)
{
    PyByteArrayObject *b;
    Py_ssize_t n;
    PyObject *chunk;
    if (!PyByteArray_CheckExact(buf)) {
        PyErr_SetString(PyExc_TypeError, "take() needs a bytearray");
        return NULL;
    }
    b = (PyByteArrayObject *)buf;
    n = Py_SIZE(b);
    if (n == 0) {
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    if (b->ob_exports > 0) {
        PyErr_SetString(PyExc_BufferError, "take(): the queue is exported (a memoryview)");
        return NULL;
    }
    /* (making bytes runs no Python code and starts no collection: nothing appends meanwhile) */
    chunk = PyBytes_FromStringAndSize(b->ob_start, n);
    if (chunk == NULL) {
        return NULL;
    }
    b->ob_start = b->ob_bytes;
    Py_SET_SIZE(b, 0);
    b->ob_bytes[0] = '\0';
    return chunk;
}

static PyMethodDef crec_functions[] = {
    {"take", crec_take, METH_O, take_doc},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef core_methods[] = {
    {"emitted_fast", (PyCFunction)(void (*)(void))core_emitted, METH_FASTCALL, emitted_doc},
    {"pair", (PyCFunction)(void (*)(void))core_pair, METH_FASTCALL, pair_doc},
    {"started1", (PyCFunction)(void (*)(void))core_started1, METH_FASTCALL, started1_doc},
    {"finished1", (PyCFunction)(void (*)(void))core_finished1, METH_FASTCALL, finished1_doc},
    {"mark", (PyCFunction)core_mark, METH_O, mark_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef core_members[] = {
    {"buf", T_OBJECT, offsetof(TrackerCore, buf), 0, "the hub's queue (a bytearray)"},
    {"nidx", T_OBJECT, offsetof(TrackerCore, nidx), 0, "the hub's name index (a dict)"},
    {"queues", T_OBJECT, offsetof(TrackerCore, queues), 0, "the job's queues (a list)"},
    {"tok", T_PYSSIZET, offsetof(TrackerCore, tok), 0, "the job's token"},
    {"seq", T_PYSSIZET, offsetof(TrackerCore, seq), 0, "records counted so far"},
    {"half", T_PYSSIZET, offsetof(TrackerCore, half), 0, "bytes queued before the slow path"},
    {"cap", T_PYSSIZET, offsetof(TrackerCore, cap), 0, "bytes queued before records drop"},
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
    {
        PyObject *coll = PyImport_ImportModule("collections");
        if (coll == NULL) {
            return -1;
        }
        Py_XSETREF(deque_type, (PyTypeObject *)PyObject_GetAttrString(coll, "deque"));
        Py_DECREF(coll);
        if (deque_type == NULL) {
            return -1;
        }
    }
    type = PyType_FromModuleAndSpec(module, &core_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "TrackerCore", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    if (PyModule_AddIntConstant(module, "K_STARTED", K_STARTED) < 0
        || PyModule_AddIntConstant(module, "K_FINISHED", K_FINISHED) < 0
        || PyModule_AddIntConstant(module, "K_EMITTED", K_EMITTED) < 0
        || PyModule_AddIntConstant(module, "K_DEPTH", K_DEPTH) < 0
        || PyModule_AddIntConstant(module, "K_OBJ", K_OBJ) < 0
        || PyModule_AddIntConstant(module, "K_PAIR", K_PAIR) < 0
        || PyModule_AddIntConstant(module, "REC_SIZE", REC_SIZE) < 0
        || PyModule_AddIntConstant(module, "NAME_MAX", REC_NAME_MAX) < 0
        || PyModule_AddIntConstant(module, "TOK_MAX", TOK_MAX) < 0
        || PyModule_AddIntConstant(module, "ATTEMPT_MAX", ATTEMPT_MAX) < 0
        || PyModule_AddIntConstant(module, "DEPTH_EVERY", DEPTH_EVERY) < 0) {
        return -1;
    }
    return 0;
}

/* Module state is in static variables, so one interpreter only (3.12+ would otherwise let
 * sub-interpreters share these objects). Free-threaded builds are not declared supported
 * (no Py_mod_gil slot): they re-enable the GIL for this module, which the buffer writes rely
 * on. */
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
