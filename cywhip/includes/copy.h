/* In C for fixed-size moves the compiler turns into single loads and stores. */
#ifndef CYWHIP_COPY_H
#define CYWHIP_COPY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct { char b[16]; } cw_16;

/*
 * Copy n bytes between buffers that do not overlap.  Messages of up to 64
 * bytes, the common case of one message per call, move without a call into
 * libc: two possibly overlapping moves of the size class below n, loaded
 * before either is stored.  Longer ones go through memcpy.
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
        cw_16 a, b;
        memcpy(&a, s, 16);
        memcpy(&b, s + n - 16, 16);
        memcpy(d, &a, 16);
        memcpy(d + n - 16, &b, 16);
        return;
    }
    if (n <= 64) {
        cw_16 a, b, c, e;
        memcpy(&a, s, 16);
        memcpy(&b, s + 16, 16);
        memcpy(&c, s + n - 32, 16);
        memcpy(&e, s + n - 16, 16);
        memcpy(d, &a, 16);
        memcpy(d + 16, &b, 16);
        memcpy(d + n - 32, &c, 16);
        memcpy(d + n - 16, &e, 16);
        return;
    }
    memcpy(d, s, n);
}

#endif
