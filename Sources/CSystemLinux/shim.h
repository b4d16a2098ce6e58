// Linux APIs that Glibc's Swift overlay does not expose: epoll, eventfd, timerfd, accept4.
// Only these headers are included: socket types come from Glibc, so accept4 is declared here
// with opaque pointers rather than by including <sys/socket.h> a second time.
#ifndef DELTACAST_CSYSTEMLINUX_SHIM_H
#define DELTACAST_CSYSTEMLINUX_SHIM_H
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
extern int accept4(int fd, void *address, unsigned int *length, int flags);
#endif
