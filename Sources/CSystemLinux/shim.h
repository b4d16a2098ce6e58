// Linux APIs that Glibc's Swift overlay does not expose: epoll, eventfd, timerfd, accept4.
#ifndef DELTACAST_CSYSTEMLINUX_SHIM_H
#define DELTACAST_CSYSTEMLINUX_SHIM_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#endif
