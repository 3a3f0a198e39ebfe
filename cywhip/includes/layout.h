/* In C because the shared layout needs alignas and _Static_assert, which Cython cannot express. */
#ifndef CYWHIP_LAYOUT_H
#define CYWHIP_LAYOUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdalign.h>

/*
 * The one declaration of a channel's shared-memory layout.  docs/protocol.md
 * draws the same table; tests/test_layout.py checks both against each other.
 *
 *   file:  [ header page: cw_header, zero-padded to CW_HEADER_SIZE ]
 *          [ slot 0 ][ slot 1 ] ... [ slot capacity-1 ]   (padded to a page)
 *
 *   slot:   0               4               8
 *          +---------------+---------------+----------------------------+
 *          | length (u32)  | reserved (u32)| payload: message_length    |
 *          +---------------+---------------+ bytes, padded to 8         |
 *                                          +----------------------------+
 */

#define CW_CACHE_LINE 128
#define CW_HEADER_SIZE 4096
#define CW_PAGE_SIZE 4096
#define CW_MAGIC 0x5049485759574321ULL /* "!CYWHIP" + 'P', little-endian */
#define CW_LAYOUT_VERSION 2
#define CW_SLOT_HEADER_SIZE 8
#define CW_SLOT_ALIGN 8
#define CW_MAX_MESSAGE_LENGTH 0x7FFFFFF0ULL
#define CW_TYPE_DESCRIPTION_SIZE 2048

typedef struct {
    /* Geometry: written once by the creator before the file gets its name. */
    uint64_t magic;              /*   0 */
    uint32_t version;            /*   8 */
    uint32_t header_size;        /*  12 */
    uint64_t message_length;     /*  16 */
    uint64_t capacity;           /*  24  max_queued_messages */
    uint64_t slot_size;          /*  32 */
    uint64_t file_size;          /*  40 */
    uint64_t type_fingerprint;   /*  48  0: untyped bytes */
    uint64_t type_size;          /*  56  0: untyped bytes */
    int64_t creator_pid;         /*  64 */
    uint64_t created_ns;         /*  72  CLOCK_REALTIME */

    /* Written only by the sender. */
    alignas(CW_CACHE_LINE) uint64_t write_cursor;     /* 128 */
    /* Written only by the receiver. */
    alignas(CW_CACHE_LINE) uint64_t read_cursor;      /* 256 */
    /* Set by a sender about to sleep on a full ring; cleared by whoever wakes it. */
    alignas(CW_CACHE_LINE) uint32_t sender_waiting;   /* 384 */
    /* Set by a receiver about to sleep on an empty ring; cleared by whoever wakes it. */
    alignas(CW_CACHE_LINE) uint32_t receiver_waiting; /* 512 */
    /* Liveness: each end's pid; the byte at each field's offset is also the
     * byte that end holds an open-file-description lock on. */
    alignas(CW_CACHE_LINE) int64_t sender_pid;        /* 640 */
    int64_t receiver_pid;                             /* 648 */
    uint64_t sender_starts;                           /* 656 */
    uint64_t receiver_starts;                         /* 664 */
    /* Typed channels: the canonical layout description, NUL-terminated
     * (cywhip/_types.py); empty for untyped channels. */
    alignas(1024) char type_description[CW_TYPE_DESCRIPTION_SIZE]; /* 1024 */
} cw_header;

typedef struct {
    uint32_t length;
    uint32_t reserved;
} cw_slot_header;

_Static_assert(offsetof(cw_header, write_cursor) == 128, "write_cursor offset");
_Static_assert(offsetof(cw_header, read_cursor) == 256, "read_cursor offset");
_Static_assert(offsetof(cw_header, sender_waiting) == 384, "sender_waiting offset");
_Static_assert(offsetof(cw_header, receiver_waiting) == 512, "receiver_waiting offset");
_Static_assert(offsetof(cw_header, sender_pid) == 640, "sender_pid offset");
_Static_assert(offsetof(cw_header, receiver_pid) == 648, "receiver_pid offset");
_Static_assert(offsetof(cw_header, type_description) == 1024, "type_description offset");
_Static_assert(sizeof(cw_header) <= CW_HEADER_SIZE, "header fits its page");
_Static_assert(sizeof(cw_slot_header) == CW_SLOT_HEADER_SIZE, "slot header size");

#define CW_SENDER_LOCK_BYTE (offsetof(cw_header, sender_pid))
#define CW_RECEIVER_LOCK_BYTE (offsetof(cw_header, receiver_pid))
/* Held while the file is being built under its temporary name (by its creator)
 * or removed (by remove_stale(), together with both end bytes). */
#define CW_LIFECYCLE_LOCK_BYTE (offsetof(cw_header, creator_pid))

#endif
