/* Closing sockets off the event loop's thread: the FastAGI server's last step of a session.

   close_later(fd) -> bool

   Hands the descriptor ``fd`` (already out of the selector, detached from its socket
   object) to one native thread that closes it, and returns True; or closes it here and
   returns False when that thread's queue is full or could not be started. Either way the
   descriptor is closed exactly once, and the caller must not use it again.

   Why: closing a TCP socket on loopback runs the FIN's whole path in the closing thread,
   the peer's side included (~8 us alone, 20-30 us among a loaded bridge's work on a
   2-vCPU guest: ~4 % of the loop thread's time at 1,000 routed calls/s, BENCHMARKS §12).
   The thread never touches a Python object and never takes the GIL: it runs on the
   other core while the loop goes on. A descriptor stays open until the thread closes
   it, so its number cannot be reused by an accept before then.

   closed() -> int: descriptors this process closed through the thread (tests, metrics).

   After a fork the child starts afresh (its own thread on its first call): the queue
   and lock it inherited are reset, descriptors queued in the parent are the parent's
   to close. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define CAPACITY 4096 /* descriptors waiting at most; more are closed by the caller */

static int queue[CAPACITY];
static int head, count;
static int started, idle;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static atomic_ullong closed_total;
static int atfork_set;

static void *
closer(void *unused)
{
    (void)unused;
    static int batch[CAPACITY];
    for (;;) {
        pthread_mutex_lock(&lock);
        while (count == 0) {
            idle = 1;
            pthread_cond_wait(&wake, &lock);
        }
        idle = 0;
        int n = count;
        for (int i = 0; i < n; i++)
            batch[i] = queue[(head + i) % CAPACITY];
        head = (head + n) % CAPACITY;
        count = 0;
        pthread_mutex_unlock(&lock);
        for (int i = 0; i < n; i++)
            close(batch[i]);
        atomic_fetch_add(&closed_total, (unsigned long long)n);
    }
    return NULL;
}

static void
reset_in_child(void)
{
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&wake, NULL);
    head = count = started = idle = 0;
    atomic_store(&closed_total, 0);
}

/* Start the thread once (under ``lock``); 0 when it could not be. */
static int
ensure_started(void)
{
    if (started)
        return 1;
    if (!atfork_set) {
        if (pthread_atfork(NULL, NULL, reset_in_child) != 0)
            return 0;
        atfork_set = 1;
    }
    pthread_attr_t attr;
    pthread_t thread;
    if (pthread_attr_init(&attr) != 0)
        return 0;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024 + sizeof(int) * CAPACITY);
    int rc = pthread_create(&thread, &attr, closer, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return 0;
    started = 1;
    return 1;
}

static PyObject *
close_later(PyObject *module, PyObject *arg)
{
    (void)module;
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "not a file descriptor: %ld", fd);
        return NULL;
    }
    pthread_mutex_lock(&lock);
    if (count < CAPACITY && ensure_started()) {
        queue[(head + count) % CAPACITY] = (int)fd;
        count++;
        if (idle) {
            idle = 0;
            pthread_cond_signal(&wake);
        }
        pthread_mutex_unlock(&lock);
        Py_RETURN_TRUE;
    }
    pthread_mutex_unlock(&lock);
    Py_BEGIN_ALLOW_THREADS
    close((int)fd);
    Py_END_ALLOW_THREADS
    Py_RETURN_FALSE;
}

static PyObject *
closed(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromUnsignedLongLong(atomic_load(&closed_total));
}

static PyMethodDef methods[] = {
    {"close_later", close_later, METH_O,
     "close_later(fd) -> True (the closer thread closes it) or False (closed here)"},
    {"closed", closed, METH_NOARGS, "closed() -> descriptors the closer thread closed"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_closer", "Sockets closed off the event loop's thread.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__closer(void)
{
    return PyModule_Create(&module);
}
