// Linux APIs that Glibc's Swift overlay does not expose: epoll, eventfd, timerfd, accept4, and
// the io_uring system calls (used as a batched send; no liburing needed).
// Only these headers are included: socket types come from Glibc, so accept4 is declared here
// with opaque pointers rather than by including <sys/socket.h> a second time.
#ifndef DELTACAST_CSYSTEMLINUX_SHIM_H
#define DELTACAST_CSYSTEMLINUX_SHIM_H
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/syscall.h>
#include <linux/io_uring.h>
extern int accept4(int fd, void *address, unsigned int *length, int flags);
extern long syscall(long number, ...);

static inline int deltacast_io_uring_setup(unsigned entries, struct io_uring_params *params) {
    return (int)syscall(__NR_io_uring_setup, entries, params);
}

static inline int deltacast_io_uring_enter(int ring, unsigned submit, unsigned wait, unsigned flags) {
    return (int)syscall(__NR_io_uring_enter, ring, submit, wait, flags, (void *)0, 0);
}

// One sendmsg(fd, message, flags) as a submission queue entry; the rest of the entry zeroed.
static inline void deltacast_io_uring_prep_sendmsg(struct io_uring_sqe *entry, int fd, const void *message,
                                                   unsigned flags, unsigned long long tag) {
    __builtin_memset(entry, 0, sizeof *entry);
    entry->opcode = IORING_OP_SENDMSG;
    entry->fd = fd;
    entry->addr = (unsigned long long)(unsigned long)message;
    entry->len = 1;
    entry->msg_flags = flags;
    entry->user_data = tag;
}

// The ring indices are shared with the kernel: read with acquire, written with release.
static inline unsigned deltacast_load_acquire(const unsigned *pointer) {
    return __atomic_load_n(pointer, __ATOMIC_ACQUIRE);
}
static inline void deltacast_store_release(unsigned *pointer, unsigned value) {
    __atomic_store_n(pointer, value, __ATOMIC_RELEASE);
}
#endif
