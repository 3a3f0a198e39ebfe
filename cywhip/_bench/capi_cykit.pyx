# distutils: language = c++
# cython: language_level=3
"""The same loops as capi_loops.pyx through cykit's Cython API (cykit.ipc.ipc, its .pxd files),
for comparison: one producer and one consumer in cykit's SPMC mode, one ipc_spmc_push() or
ipc_spmc_pop() per message.

Not compiled with cywhip: cywhip._bench.capi builds it (C++, against the headers cykit ships)
when a benchmark needs it and cykit is installed.
"""
from libc.stdint cimport int64_t, uint32_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from libcpp.string cimport string
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from cykit.common cimport placement_new, placement_destroy
from cykit.ipc.ipc cimport (
    SharedMemSystem, Context, RunningMode, ProcessRole, init_producer_system, init_consumer_system,
    ipc_spmc_push, ipc_spmc_pop, detach_producer, detach_consumer,
    IPC_OK, F_IPC_BLOCK_ON_FULL, F_IPC_WAIT_CONSUMERS,
)

cdef enum:
    MAX_SIZE = 256


cdef inline int64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1_000_000_000 + ts.tv_nsec


cdef class End:
    """One end of a cykit SPMC channel, set up as cykit's own ShmProducer/ShmConsumer do."""
    cdef SharedMemSystem sys
    cdef string shm_name
    cdef string sem_name
    cdef bint producer
    cdef bint attached

    def __cinit__(self, bytes name, uint32_t block_count, uint32_t block_size, bint producer):
        cdef int rc
        self.attached = False
        self.producer = producer
        self.shm_name = b"shm_" + name
        self.sem_name = b"sem_" + name
        memset(&self.sys, 0, sizeof(SharedMemSystem))
        self.sys.shm_name = self.shm_name.c_str()
        self.sys.sem_name = self.sem_name.c_str()
        self.sys.block_count = block_count
        self.sys.block_size = block_size
        self.sys.mode = RunningMode.SPMC
        self.sys.ctx = <Context *>malloc(sizeof(Context))
        if self.sys.ctx == NULL:
            raise MemoryError()
        placement_new[Context](self.sys.ctx)
        self.sys.ctx.role = ProcessRole.Producer if producer else ProcessRole.Consumer
        self.sys.ctx.running = 1
        if producer:
            self.sys.ctx.local_flags |= F_IPC_BLOCK_ON_FULL | F_IPC_WAIT_CONSUMERS
            rc = init_producer_system(&self.sys)
        else:
            rc = init_consumer_system(&self.sys)
        if rc != 0:
            raise RuntimeError(f"cykit's init_{'producer' if producer else 'consumer'}_system failed ({rc})")
        self.attached = True

    def close(self):
        if self.attached:
            self.attached = False
            if self.producer:
                detach_producer(&self.sys)
            else:
                detach_consumer(&self.sys, 0, 0, 0)
        if self.sys.ctx != NULL:
            if self.sys.ctx.shm_obj != NULL:
                del self.sys.ctx.shm_obj
                self.sys.ctx.shm_obj = NULL
            if self.sys.ctx.sem_obj != NULL:
                del self.sys.ctx.sem_obj
                self.sys.ctx.sem_obj = NULL
            if self.sys.ctx.assemble_buf != NULL:
                free(self.sys.ctx.assemble_buf)
            placement_destroy[Context](self.sys.ctx)
            free(self.sys.ctx)
            self.sys.ctx = NULL

    def __dealloc__(self):
        self.close()

    def send_each(self, int64_t count, int size):
        """Send count messages of size bytes, one ipc_spmc_push() each."""
        cdef char buf[MAX_SIZE]
        cdef int64_t i = 0
        cdef int status = IPC_OK
        cdef void *ctx = <void *>self.sys.ctx
        if not 8 <= size <= MAX_SIZE:
            raise ValueError(f"size must be 8 to {MAX_SIZE}")
        memset(buf, 7, sizeof(buf))
        with nogil:
            while i < count:
                (<int64_t *>buf)[0] = i
                status = ipc_spmc_push(ctx, buf, <size_t>size)
                if status != IPC_OK:
                    break
                i += 1
        if status != IPC_OK:
            raise RuntimeError(f"ipc_spmc_push() returned {status}")
        return i

    def recv_each(self, int64_t count, int size):
        """Receive count messages, one ipc_spmc_pop() each, checking each one's number.

        Returns (seconds from the first message to the last, messages that were wrong).
        """
        cdef char *out
        cdef size_t n
        cdef int64_t i = 0, wrong = 0, start = 0
        cdef int status = IPC_OK
        cdef void *ctx = <void *>self.sys.ctx
        with nogil:
            while i < count:
                status = ipc_spmc_pop(ctx, &out, &n)
                if status != IPC_OK:
                    break
                if i == 0:
                    start = _now_ns()
                if n != <size_t>size or (<int64_t *>out)[0] != i:
                    wrong += 1
                i += 1
        if status != IPC_OK:
            raise RuntimeError(f"ipc_spmc_pop() returned {status}")
        return (_now_ns() - start) / 1e9, wrong
