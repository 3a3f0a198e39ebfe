from libc.stdint cimport uint32_t, uint64_t, int64_t

cdef extern from "layout.h" nogil:
    enum:
        CW_CACHE_LINE
        CW_HEADER_SIZE
        CW_PAGE_SIZE
        CW_LAYOUT_VERSION
        CW_SLOT_HEADER_SIZE
        CW_MANY_SLOT_HEADER_SIZE
        CW_SLOT_ALIGN
        CW_LIFECYCLE_LOCK_BYTE
        CW_TYPE_DESCRIPTION_SIZE
        CW_PLACE_SIZE
        CW_MAX_PLACES
        CW_TOPOLOGY_ONE_RECEIVER
        CW_TOPOLOGY_GROUPS
        CW_GROUP_SIZE
        CW_GROUP_NAME_SIZE
        CW_GROUPS_LOCK_BYTE
        CW_RECORDS_FIXED
        CW_RECORDS_BYTES
        CW_VAR_HEADER_SIZE
        CW_VAR_ALIGN_MASK
        CW_VAR_MIN_CAPACITY
        CW_VAR_MANY_HEADER_SIZE
        CW_VAR_SLACK_SHIFT
        CW_CLAIM_OWNER_BITS
    const uint32_t CW_VAR_MESSAGE
    const uint32_t CW_VAR_PADDING
    const uint32_t CW_VAR_VOID
    const uint32_t CW_VAR_KIND_MASK
    const uint32_t CW_GROUP_IN_USE
    const uint32_t CW_GROUP_DURABLE
    const uint32_t CW_VOID_LENGTH
    const uint64_t CW_MAGIC
    const uint64_t CW_MAX_MESSAGE_LENGTH

    ctypedef struct cw_header:
        uint64_t magic
        uint32_t version
        uint32_t header_size
        uint64_t message_length
        uint64_t capacity
        uint64_t slot_size
        uint64_t file_size
        uint64_t type_fingerprint
        uint64_t type_size
        int64_t creator_pid
        uint64_t created_ns
        uint32_t topology
        uint32_t max_senders
        uint32_t max_receivers
        uint32_t place_size
        uint32_t records
        uint64_t write_cursor
        uint64_t read_cursor
        uint32_t sender_waiting
        uint32_t receiver_waiting
        uint64_t groups_gen
        char type_description[2048]

    ctypedef struct cw_place:
        int64_t pid
        uint64_t starts
        uint64_t intent
        uint64_t group
        uint64_t hold_start
        uint64_t hold_end
        uint64_t intent_length
        uint64_t dead_claim
        uint64_t dead_length
        uint64_t generation

    ctypedef struct cw_group:
        uint64_t next
        uint64_t lock
        uint64_t epoch
        uint64_t members
        uint32_t flags
        uint32_t name_len
        char name[64]

    ctypedef struct cw_slot_header:
        uint32_t length
        uint32_t reserved

    ctypedef struct cw_var_header:
        uint32_t length
        uint32_t kind

    ctypedef struct cw_var_many_header:
        uint32_t length
        uint32_t kind
        uint64_t seq

    ctypedef struct cw_many_slot_header:
        uint32_t length
        uint32_t reserved
        uint64_t seq

    uint64_t cw_slots_offset(uint64_t max_senders, uint64_t max_receivers)
    uint64_t cw_place_offset(uint64_t index)
    uint64_t cw_slot_header_size(uint64_t max_senders)
    uint64_t cw_group_offset(uint64_t max_senders, uint64_t max_receivers, uint64_t g)
    # The record descriptor (fixed-size records): slot size and slot address.
    uint64_t cw_fixed_slot_size(uint64_t message_length, uint64_t max_senders)
    uint64_t cw_fixed_slot_offset(uint64_t slot_size, uint64_t index)
    char *cw_fixed_slot(char *slots, uint64_t slot_size, uint64_t index)
    char *cw_fixed_payload(char *slots, uint64_t slot_size, uint64_t slot_header, uint64_t index)
    # Variable-size records (byte channels).
    uint64_t cw_var_record_size(uint64_t length)
    uint64_t cw_var_header_size(uint64_t max_senders)
    uint64_t cw_var_record_size_with(uint64_t length, uint64_t header)
    uint64_t cw_var_max_length_with(uint64_t capacity, uint64_t header)
    # The claim word of a byte channel of many senders.
    uint64_t cw_claim_word(uint64_t position, uint64_t owner)
    uint64_t cw_claim_owner(uint64_t word)
    uint64_t cw_claim_owner_of(uint64_t place, uint64_t generation)
    uint64_t cw_claim_owner_place(uint64_t owner)
    uint64_t cw_claim_position(uint64_t word, uint64_t ref)
    uint64_t cw_var_capacity(uint64_t max_queued_bytes)
    uint64_t cw_var_max_length(uint64_t capacity)
    char *cw_var_record(char *ring, uint64_t index)
