// zlib for permessage-deflate. deflateInit2/inflateInit2 are macros: these wrappers call them.
#ifndef DELTACAST_CZLIB_SHIM_H
#define DELTACAST_CZLIB_SHIM_H
#include <zlib.h>
static inline int deltacast_deflateInit2(z_streamp s, int level, int windowBits, int memLevel) {
    return deflateInit2(s, level, Z_DEFLATED, windowBits, memLevel, Z_DEFAULT_STRATEGY);
}
static inline int deltacast_inflateInit2(z_streamp s, int windowBits) { return inflateInit2(s, windowBits); }
#endif
