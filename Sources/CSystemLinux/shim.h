// Linux APIs that Glibc's Swift overlay does not expose: epoll, eventfd, timerfd, accept4; and
// a cache prefetch hint, which Swift has no spelling for.
// Only these headers are included: socket types come from Glibc, so accept4 is declared here
// with opaque pointers rather than by including <sys/socket.h> a second time.
#ifndef DELTACAST_CSYSTEMLINUX_SHIM_H
#define DELTACAST_CSYSTEMLINUX_SHIM_H
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
extern int accept4(int fd, void *address, unsigned int *length, int flags);
/// Asks the CPU to start loading the cache line at `address` for writing (a hint: no fault,
/// no effect on results). A fan-out walks thousands of connection objects spread over the heap;
/// loading the next ones while the current one is handled hides most of each first touch.
static inline void deltacast_prefetch(const void *address) { __builtin_prefetch(address, 1, 3); }
#endif
