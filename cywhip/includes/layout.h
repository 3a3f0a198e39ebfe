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
 *          [ places: max_senders sender places, then max_receivers receiver
 *            places, CW_PLACE_SIZE bytes each, padded to a page ]
 *          [ slot 0 ][ slot 1 ] ... [ slot capacity-1 ]   (padded to a page)
 *
 *   The slots start at header_size = CW_HEADER_SIZE
 *       + round_up((max_senders + max_receivers) * CW_PLACE_SIZE, CW_PAGE_SIZE).
 *
 *   place:  0               8               16              24         48     80   128
 *          +---------------+---------------+---------------+------------+------+----+
 *          | pid (i64)     | starts (u64)  | intent (u64)  | groups     | bytes| .. |
 *          +---------------+---------------+---------------+------------+------+----+
 *          The place's first byte is also the byte its end holds an
 *          open-file-description lock on: the kernel drops it when the end dies.
 *          intent: a sender of a many-senders channel, c + 1 while it claims
 *          or fills sequence c, else 0 (unused on one-sender channels).
 *          Receiver places of a channel with groups (max_receivers > 1) also hold
 *          from 24 on: group (u64: epoch << 32 | group index + 1, 0 none),
 *          hold_start (u64: first claimed message not yet taken + 1, 0 none),
 *          hold_end (u64: end of the claim).
 *          Sender places of a byte channel of many senders also hold from 48 on:
 *          intent_length (u64: bytes of the intent's claim), dead_claim (u64:
 *          position + 1 of a dead predecessor's committed claim, 0 none),
 *          dead_length (u64: its bytes), generation (u64: senders S0 counted).
 *
 *   groups (max_receivers > 1 only): max_receivers entries of CW_GROUP_SIZE
 *          bytes right after the places (before the page padding):
 *           0       8       16      24        32      36        40         104  128
 *          +-------+-------+-------+---------+-------+---------+----------+----+
 *          | next  | lock  | epoch | members | flags | name_len| name[64] | .. |
 *          +-------+-------+-------+---------+-------+---------+----------+----+
 *
 *   slot (one sender, max_senders == 1):
 *           0               4               8
 *          +---------------+---------------+----------------------------+
 *          | length (u32)  | reserved (u32)| payload: message_length    |
 *          +---------------+---------------+ bytes, padded to 8         |
 *                                          +----------------------------+
 *
 *   slot (many senders, max_senders > 1):
 *           0               4               8               16
 *          +---------------+---------------+---------------+------------+
 *          | length (u32)  | reserved (u32)| seq (u64)     | payload    |
 *          +---------------+---------------+---------------+------------+
 *          seq: c + 1 once message c is published in this slot.
 */

#define CW_CACHE_LINE 128
#define CW_HEADER_SIZE 4096
#define CW_PAGE_SIZE 4096
#define CW_MAGIC 0x5049485759574321ULL /* "!CYWHIP" + 'P', little-endian */
#define CW_LAYOUT_VERSION 6
#define CW_SLOT_HEADER_SIZE 8
/* The slot header of a many-senders channel: length, reserved, seq. */
#define CW_MANY_SLOT_HEADER_SIZE 16
/* A many-senders slot published with this length holds no message: its
 * sender claimed the slot, then could not build the message (its serializer
 * raised).  Receivers step over it. */
#define CW_VOID_LENGTH 0xFFFFFFFFU
#define CW_SLOT_ALIGN 8
#define CW_MAX_MESSAGE_LENGTH 0x7FFFFFF0ULL
#define CW_TYPE_DESCRIPTION_SIZE 2048
#define CW_PLACE_SIZE 128
/* Places of one side at most (max_senders, max_receivers). */
#define CW_MAX_PLACES 4096

/* Topologies: what the places mean and which protocol the ring runs. */
/* One receiver, and one sender or max_senders > 1 of them. */
#define CW_TOPOLOGY_ONE_RECEIVER 1
/* Receiver groups: max_receivers > 1 member places and as many group entries. */
#define CW_TOPOLOGY_GROUPS 2

/* What the ring holds (cw_header.records). */
/* Slots of message_length bytes: cursors count messages (cw_fixed_*). */
#define CW_RECORDS_FIXED 0
/* A byte ring of variable-size records: cursors count bytes (cw_var_*). */
#define CW_RECORDS_BYTES 1

#define CW_GROUP_SIZE 128
#define CW_GROUP_NAME_SIZE 64
/* Group flags. */
#define CW_GROUP_IN_USE 1U
#define CW_GROUP_DURABLE 2U
/* The byte of the groups lock, held while groups are created, joined, left or removed. */
#define CW_GROUPS_LOCK_BYTE 96

typedef struct {
    /* Geometry: written once by the creator before the file gets its name. */
    uint64_t magic;              /*   0 */
    uint32_t version;            /*   8 */
    uint32_t header_size;        /*  12  where the slots start */
    uint64_t message_length;     /*  16 */
    uint64_t capacity;           /*  24  max_queued_messages */
    uint64_t slot_size;          /*  32 */
    uint64_t file_size;          /*  40 */
    uint64_t type_fingerprint;   /*  48  0: untyped bytes */
    uint64_t type_size;          /*  56  0: untyped bytes */
    int64_t creator_pid;         /*  64  also the lifecycle lock byte */
    uint64_t created_ns;         /*  72  CLOCK_REALTIME */
    uint32_t topology;           /*  80  CW_TOPOLOGY_* */
    uint32_t max_senders;        /*  84  sender places */
    uint32_t max_receivers;      /*  88  receiver places */
    uint32_t place_size;         /*  92  CW_PLACE_SIZE */
    uint32_t groups_lock_pad;    /*  96  unused: its byte is the groups lock's (CW_GROUPS_LOCK_BYTE) */
    uint32_t records;            /* 100  CW_RECORDS_*: slots of message_length, or a byte ring */

    /* Written only by the sender. */
    alignas(CW_CACHE_LINE) uint64_t write_cursor;     /* 128 */
    /* Written only by the receiver. */
    alignas(CW_CACHE_LINE) uint64_t read_cursor;      /* 256 */
    /* Set by a sender about to sleep on a full ring; cleared by whoever wakes it. */
    alignas(CW_CACHE_LINE) uint32_t sender_waiting;   /* 384 */
    /* Set by a receiver about to sleep on an empty ring; cleared by whoever wakes it. */
    alignas(CW_CACHE_LINE) uint32_t receiver_waiting; /* 512 */
    /* Channels with groups: odd while a group is being created (a sequence lock
     * for senders computing how far they may write); written under the groups lock. */
    alignas(CW_CACHE_LINE) uint64_t groups_gen;       /* 640 */
    /* Typed channels: the canonical layout description, NUL-terminated
     * (cywhip/_types.py); empty for untyped channels. */
    alignas(1024) char type_description[CW_TYPE_DESCRIPTION_SIZE]; /* 1024 */
} cw_header;

/* One end's place: written only by the end that holds its lock byte. */
typedef struct {
    alignas(CW_CACHE_LINE) int64_t pid;  /*   0  0 after a clean close; the lock byte */
    uint64_t starts;                     /*   8  ends that have held this place */
    uint64_t intent;                     /*  16  many senders: c + 1 while claiming or filling c */
    uint64_t group;                      /*  24  groups: epoch << 32 | index + 1, 0 none */
    uint64_t hold_start;                 /*  32  groups: first claimed message not taken + 1, 0 none */
    uint64_t hold_end;                   /*  40  groups: end of the claim */
    /* Byte channels of many senders (docs/protocol.md, "Many senders on a byte ring"): the
     * intent's bytes (its position is intent), the dead claim a new sender on this place
     * keeps for the receiver (dead_claim: position + 1, 0 none; dead_length: its bytes), and
     * the generation of the place's sender (bumped by each new sender, step S0). */
    uint64_t intent_length;              /*  48 */
    uint64_t dead_claim;                 /*  56 */
    uint64_t dead_length;                /*  64 */
    uint64_t generation;                 /*  72 */
} cw_place;

/* A receiver group (channels with max_receivers > 1). */
typedef struct {
    alignas(CW_CACHE_LINE) uint64_t next; /*   0  messages below were handed to members */
    uint64_t lock;                       /*   8  member place + 1 claiming, 0 free */
    uint64_t epoch;                      /*  16  counts the group's creations in this entry */
    uint64_t members;                    /*  24  live members (a hint) */
    uint32_t flags;                      /*  32  CW_GROUP_IN_USE | CW_GROUP_DURABLE */
    uint32_t name_len;                   /*  36 */
    char name[CW_GROUP_NAME_SIZE];       /*  40  UTF-8, not NUL-terminated */
} cw_group;

typedef struct {
    uint32_t length;
    uint32_t reserved;
} cw_slot_header;

typedef struct {
    uint32_t length;
    uint32_t reserved;
    uint64_t seq;                        /*   8  c + 1 once message c is published here */
} cw_many_slot_header;

_Static_assert(offsetof(cw_header, topology) == 80, "topology offset");
_Static_assert(offsetof(cw_header, records) == 100, "records offset");
_Static_assert(offsetof(cw_header, write_cursor) == 128, "write_cursor offset");
_Static_assert(offsetof(cw_header, read_cursor) == 256, "read_cursor offset");
_Static_assert(offsetof(cw_header, sender_waiting) == 384, "sender_waiting offset");
_Static_assert(offsetof(cw_header, receiver_waiting) == 512, "receiver_waiting offset");
_Static_assert(offsetof(cw_header, type_description) == 1024, "type_description offset");
_Static_assert(sizeof(cw_header) <= CW_HEADER_SIZE, "header fits its page");
_Static_assert(sizeof(cw_place) == CW_PLACE_SIZE, "place size");
_Static_assert(sizeof(cw_slot_header) == CW_SLOT_HEADER_SIZE, "slot header size");
_Static_assert(sizeof(cw_many_slot_header) == CW_MANY_SLOT_HEADER_SIZE, "many-senders slot header size");
_Static_assert(offsetof(cw_many_slot_header, seq) == 8, "seq offset");
_Static_assert(offsetof(cw_place, intent) == 16, "intent offset");
_Static_assert(offsetof(cw_place, group) == 24, "group offset");
_Static_assert(offsetof(cw_place, hold_start) == 32, "hold_start offset");
_Static_assert(offsetof(cw_place, hold_end) == 40, "hold_end offset");
_Static_assert(offsetof(cw_place, intent_length) == 48, "intent_length offset");
_Static_assert(offsetof(cw_place, dead_claim) == 56, "dead_claim offset");
_Static_assert(offsetof(cw_place, dead_length) == 64, "dead_length offset");
_Static_assert(offsetof(cw_place, generation) == 72, "generation offset");
_Static_assert(offsetof(cw_header, groups_gen) == 640, "groups_gen offset");
_Static_assert(sizeof(cw_group) == CW_GROUP_SIZE, "group size");
_Static_assert(offsetof(cw_group, flags) == 32, "flags offset");
_Static_assert(offsetof(cw_group, name) == 40, "name offset");

/* Held while the file is being built under its temporary name (by its creator)
 * or removed (by remove_stale(), together with every place's byte). */
#define CW_LIFECYCLE_LOCK_BYTE (offsetof(cw_header, creator_pid))

/* Where the slots start for a channel with these places. */
static inline uint64_t cw_slots_offset(uint64_t max_senders, uint64_t max_receivers)
{
    uint64_t places = (max_senders + max_receivers) * CW_PLACE_SIZE
                      + (max_receivers > 1 ? max_receivers * CW_GROUP_SIZE : 0);
    return CW_HEADER_SIZE + (places + CW_PAGE_SIZE - 1) / CW_PAGE_SIZE * CW_PAGE_SIZE;
}

/* Bytes before the payload in every slot of a channel with max_senders senders. */
static inline uint64_t cw_slot_header_size(uint64_t max_senders)
{
    return max_senders > 1 ? CW_MANY_SLOT_HEADER_SIZE : CW_SLOT_HEADER_SIZE;
}

/* Offset of sender place i (receiver: i counts on after the max_senders sender places). */
static inline uint64_t cw_place_offset(uint64_t index)
{
    return CW_HEADER_SIZE + index * CW_PLACE_SIZE;
}

/* Offset of group entry g of a channel with groups. */
static inline uint64_t cw_group_offset(uint64_t max_senders, uint64_t max_receivers, uint64_t g)
{
    return CW_HEADER_SIZE + (max_senders + max_receivers) * CW_PLACE_SIZE + g * CW_GROUP_SIZE;
}

/* ---- The record descriptor: how big a slot is and where each one starts ----
 *
 * Every piece of code that sizes or addresses a slot calls these (the region sizing a file,
 * the ring, borrow()'s lease, the codecs' lent views, the Cython API through the ring, the
 * test model and the fuzzer through cywhip._testing._model).  Each record kind has its own
 * set, named by its kind; today there is one, fixed-size records (cw_fixed_*), and
 * variable-size records get theirs beside it.
 *
 * A fixed-size record: every slot is slot_size bytes, a slot header and then the payload,
 * padded to CW_SLOT_ALIGN; slot i starts i * slot_size bytes after the first.
 *
 *    0               4               8                               16
 *   +---------------+---------------+-------------------------------+----------------------+
 *   |    length     |   reserved    |   seq (many senders only)     | payload ... pad to 8 |
 *   +---------------+---------------+-------------------------------+----------------------+
 *   |<-- cw_slot_header (8) ------->|
 *   |<-- cw_many_slot_header (16) --------------------------------->|
 */

/* Bytes per slot of a channel of messages of at most message_length bytes. */
static inline uint64_t cw_fixed_slot_size(uint64_t message_length, uint64_t max_senders)
{
    return cw_slot_header_size(max_senders)
           + (message_length + CW_SLOT_ALIGN - 1) / CW_SLOT_ALIGN * CW_SLOT_ALIGN;
}

/* Offset of slot index from the first slot. */
static inline uint64_t cw_fixed_slot_offset(uint64_t slot_size, uint64_t index)
{
    return index * slot_size;
}

/* Slot index (its header), from the first slot's address. */
static inline char *cw_fixed_slot(char *slots, uint64_t slot_size, uint64_t index)
{
    return slots + cw_fixed_slot_offset(slot_size, index);
}

/* The payload of slot index. */
static inline char *cw_fixed_payload(char *slots, uint64_t slot_size, uint64_t slot_header, uint64_t index)
{
    return cw_fixed_slot(slots, slot_size, index) + slot_header;
}

/* ---- Variable-size records (byte channels, CW_RECORDS_BYTES) ----
 *
 * The ring is capacity bytes (a multiple of CW_SLOT_ALIGN); cursors count bytes, and a record
 * starts at every multiple of 8 the sender reached.  A record is contiguous: where the next one
 * would cross the ring's end, a padding record fills the ring to its end and the record starts
 * at index 0.  The cursor's unit is one byte: the fixed descriptor's slot size is 1 and its slot
 * header is this record header, so cw_fixed_payload(slots, 1, CW_VAR_HEADER_SIZE, index) is the
 * payload of the record at byte index.
 *
 *    0               4               8
 *   +---------------+---------------+----------------------------------+
 *   |    length     |     kind      | payload: length bytes, pad to 8  |
 *   +---------------+---------------+----------------------------------+
 *   kind CW_VAR_MESSAGE: a message of length bytes; the record takes cw_var_record_size(length).
 *   kind CW_VAR_PADDING: fills the ring from its index to the end; length = capacity - index.
 */
#define CW_VAR_HEADER_SIZE 8
/* A byte channel's cursors and record indexes are multiples of CW_SLOT_ALIGN: these bits are 0. */
#define CW_VAR_ALIGN_MASK (CW_SLOT_ALIGN - 1)
#define CW_VAR_MESSAGE 0U
#define CW_VAR_PADDING 1U
/* The smallest byte ring: room for a record of 24 bytes of payload and its padding. */
#define CW_VAR_MIN_CAPACITY 64

typedef struct {
    uint32_t length;
    uint32_t kind;
} cw_var_header;

_Static_assert(sizeof(cw_var_header) == CW_VAR_HEADER_SIZE, "record header size");

/* Byte channels of many senders (max_senders > 1): a record header of 16 bytes, whose seq,
 * the record's byte cursor + 1, is stored last (release): it publishes the record.
 *
 *    0               4               8                               16
 *   +---------------+---------------+-------------------------------+----------------------+
 *   |    length     |     kind      |   seq (cursor + 1)            | payload ... pad to 8 |
 *   +---------------+---------------+-------------------------------+----------------------+
 *   kind's low 16 bits: CW_VAR_MESSAGE, CW_VAR_PADDING or CW_VAR_VOID; its high 16 bits, the
 *   slack of a message: 8-byte units its record holds after the payload's padding (0 or 1: a
 *   message sent shorter than the room claimed for it, 8 bytes short).
 *   kind CW_VAR_VOID: a claim published without a message (slack 0), or the room a shorter
 *   message left of its claim (slack 1); length = the record's bytes, header included.
 *   No record starts 8 bytes before the ring's end (a 16-byte header cannot pad them): both
 *   ends step over those 8 bytes (an implicit padding). */
#define CW_VAR_MANY_HEADER_SIZE 16
#define CW_VAR_VOID 2U
#define CW_VAR_KIND_MASK 0xFFFFU
#define CW_VAR_SLACK_SHIFT 16

typedef struct {
    uint32_t length;
    uint32_t kind;
    uint64_t seq;
} cw_var_many_header;

_Static_assert(sizeof(cw_var_many_header) == CW_VAR_MANY_HEADER_SIZE, "many-senders record header size");
_Static_assert(offsetof(cw_var_many_header, seq) == 8, "record seq offset");

/* The record header's bytes of a byte channel of max_senders senders. */
static inline uint64_t cw_var_header_size(uint64_t max_senders)
{
    return max_senders > 1 ? CW_VAR_MANY_HEADER_SIZE : CW_VAR_HEADER_SIZE;
}

/* Bytes a record of a message of length bytes takes in a ring whose headers are header bytes. */
static inline uint64_t cw_var_record_size_with(uint64_t length, uint64_t header)
{
    return header + (length + CW_SLOT_ALIGN - 1) / CW_SLOT_ALIGN * CW_SLOT_ALIGN;
}

/* Bytes a record of a message of length bytes takes in the ring (one sender). */
static inline uint64_t cw_var_record_size(uint64_t length)
{
    return cw_var_record_size_with(length, CW_VAR_HEADER_SIZE);
}

/* ---- The claim word of a byte channel of many senders (header write_cursor) ----
 *
 *   bits 63..24: the claim cursor / 8, modulo 2^40 (the cursor modulo 2^43 bytes);
 *   bits 23..0:  its owner: 0 when free, else (generation mod 2^11) << 13 | (place + 1) of
 *                the sender holding the claim bit.
 * The full cursor is rebuilt from a cursor known to be at most 2^43 bytes below it (the read
 * cursor: the claim cursor is at most capacity past it). */
#define CW_CLAIM_OWNER_BITS 24
#define CW_CLAIM_OWNER_MASK ((1ULL << CW_CLAIM_OWNER_BITS) - 1)
#define CW_CLAIM_PLACE_BITS 13
#define CW_CLAIM_PLACE_MASK ((1ULL << CW_CLAIM_PLACE_BITS) - 1)
#define CW_CLAIM_GEN_MASK ((1ULL << (CW_CLAIM_OWNER_BITS - CW_CLAIM_PLACE_BITS)) - 1)
#define CW_CLAIM_UNIT_MASK ((1ULL << (64 - CW_CLAIM_OWNER_BITS)) - 1)

/* The claim word of cursor position (a multiple of 8) held by owner (0: free). */
static inline uint64_t cw_claim_word(uint64_t position, uint64_t owner)
{
    return ((position >> 3) << CW_CLAIM_OWNER_BITS) | owner;
}

/* The owner of a claim word: 0, or cw_claim_owner_of() of the sender holding its bit. */
static inline uint64_t cw_claim_owner(uint64_t word)
{
    return word & CW_CLAIM_OWNER_MASK;
}

/* The owner word of sender place (0-based) in its generation. */
static inline uint64_t cw_claim_owner_of(uint64_t place, uint64_t generation)
{
    return ((generation & CW_CLAIM_GEN_MASK) << CW_CLAIM_PLACE_BITS) | (place + 1);
}

/* The sender place (0-based) of an owner (not 0); may be out of range in a corrupt word. */
static inline uint64_t cw_claim_owner_place(uint64_t owner)
{
    return (owner & CW_CLAIM_PLACE_MASK) - 1;
}

/* The claim cursor of a claim word: the least cursor >= ref (a multiple of 8) with the
 * word's position bits. */
static inline uint64_t cw_claim_position(uint64_t word, uint64_t ref)
{
    uint64_t units = word >> CW_CLAIM_OWNER_BITS;
    return ref + (((units - (ref >> 3)) & CW_CLAIM_UNIT_MASK) << 3);
}

/* The ring's bytes for a channel asked for max_queued_bytes. */
static inline uint64_t cw_var_capacity(uint64_t max_queued_bytes)
{
    uint64_t c = (max_queued_bytes + CW_SLOT_ALIGN - 1) / CW_SLOT_ALIGN * CW_SLOT_ALIGN;
    return c < CW_VAR_MIN_CAPACITY ? CW_VAR_MIN_CAPACITY : c;
}

/* The longest message a ring of capacity bytes accepts: a record of half the ring, so that a
 * record and the padding before it (shorter than the record) always fit in an empty ring. */
static inline uint64_t cw_var_max_length_with(uint64_t capacity, uint64_t header)
{
    uint64_t n = capacity / 2 - header;
    return n > CW_MAX_MESSAGE_LENGTH ? CW_MAX_MESSAGE_LENGTH : n;
}

/* The same, for one sender's 8-byte record headers. */
static inline uint64_t cw_var_max_length(uint64_t capacity)
{
    return cw_var_max_length_with(capacity, CW_VAR_HEADER_SIZE);
}

/* The record at byte index of the ring. */
static inline char *cw_var_record(char *ring, uint64_t index)
{
    return ring + index;
}

#endif
