/* In C for fixed-size moves the compiler turns into single loads and stores. */
#ifndef CYWHIP_COPY_H
#define CYWHIP_COPY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Eight bytes from p, as one eight-byte load: the empty asm keeps the compiler from merging
 * neighbouring loads into wider ones. */
static inline uint64_t cw_load8(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    __asm__("" : "+r"(v));
    return v;
}

/*
 * Copy n bytes between buffers that do not overlap.  Messages of up to 64
 * bytes, the common case of one message per call, move without a call into
 * libc, in possibly overlapping moves of at most eight bytes, up to 32 bytes
 * loaded before any of them is stored.  Longer ones go through memcpy.
 *
 * Why no wider moves: a caller often writes a message field by field just
 * before sending it.  A load is served from those stores, still on their way
 * to the cache, only if a single store covers it; a wider load waits until
 * they have all reached the cache, and behind them every store the calls
 * before made to slots the other end's core is reading.  One message per
 * call then advances at the pace of a cache line crossing between cores.
 */
static inline void cw_copy(void *dst, const void *src, size_t n)
{
    char *d = (char *)dst;
    const char *s = (const char *)src;
    if (n <= 16) {
        if (n >= 8) {
            uint64_t a, b;
            memcpy(&a, s, 8);
            memcpy(&b, s + n - 8, 8);
            memcpy(d, &a, 8);
            memcpy(d + n - 8, &b, 8);
        } else if (n >= 4) {
            uint32_t a, b;
            memcpy(&a, s, 4);
            memcpy(&b, s + n - 4, 4);
            memcpy(d, &a, 4);
            memcpy(d + n - 4, &b, 4);
        } else if (n > 0) {
            char a = s[0], b = s[n / 2], c = s[n - 1];
            d[0] = a;
            d[n / 2] = b;
            d[n - 1] = c;
        }
        return;
    }
    if (n <= 32) {
        uint64_t a = cw_load8(s), b = cw_load8(s + 8), c = cw_load8(s + n - 16), e = cw_load8(s + n - 8);
        memcpy(d, &a, 8);
        memcpy(d + 8, &b, 8);
        memcpy(d + n - 16, &c, 8);
        memcpy(d + n - 8, &e, 8);
        return;
    }
    if (n <= 64) {
        /* The first 32 bytes, then the last 32 (overlapping them when n < 64): a block's
         * loads come before its stores, and one block at a time needs few registers. */
        uint64_t a = cw_load8(s), b = cw_load8(s + 8), c = cw_load8(s + 16), e = cw_load8(s + 24);
        memcpy(d, &a, 8);
        memcpy(d + 8, &b, 8);
        memcpy(d + 16, &c, 8);
        memcpy(d + 24, &e, 8);
        a = cw_load8(s + n - 32);
        b = cw_load8(s + n - 24);
        c = cw_load8(s + n - 16);
        e = cw_load8(s + n - 8);
        memcpy(d + n - 32, &a, 8);
        memcpy(d + n - 24, &b, 8);
        memcpy(d + n - 16, &c, 8);
        memcpy(d + n - 8, &e, 8);
        return;
    }
    memcpy(d, s, n);
}

#endif
