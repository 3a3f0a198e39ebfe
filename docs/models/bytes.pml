/*
 * bytes.pml -- byte channels, one sender and one receiver (docs/protocol.md, section "Byte
 * channels", steps B1-B7), with a crash of either end before or after every step and a new
 * end taking over its place: a new sender starts from write_cursor, a new receiver from
 * read_cursor.  The wake-up handshake around the messages is that of "Waiting, without lost
 * wake-ups" (W2 announce, W3 look again, W4 FUTEX_WAIT, W5 clear the word), so the lifecycle
 * includes a sender restarting while the receiver sleeps and a receiver restarting while the
 * sender sleeps for room.
 *
 * Shared memory                              model (lengths in bytes, positions in units of 8 bytes)
 *   header write_cursor, read_cursor         wc, rc            (byte positions / 8)
 *   header sender_waiting, receiver_waiting  sw, rw
 *   the ring: CAP units of 8 bytes           cell[u]           one unit: a record header
 *                                                              HDR(length, kind), or a payload
 *                                                              unit holding its message's number
 *   FUTEX_WAIT queue                         sasleep, rasleep
 *   place locks                              salive, ralive    (false from the instant of death)
 *
 * A record header is one 8-byte word (length u32, kind u32), stored and loaded in one step.
 * Each payload unit is one store and one load: a message of 9..16 bytes is two stores, so a
 * receiver reading it while a sender overwrites it would see two message numbers (torn).
 * Memory is sequentially consistent: the model keeps every ordering the steps rely on (the
 * release of a cursor store and the acquire of its load: everything stored before the
 * release is seen by whoever loads the cursor; the full fences of the handshake).
 *
 * A crash: the killer sets salive (ralive) false, which at once sends the end through its
 * `unless` escape: it executes no further step of that incarnation; its FUTEX_WAIT is gone,
 * its waiting word stays as it was.  A new end of the same kind then takes the place.
 * Every crash is followed by a new end, so all NM messages are eventually published.
 *
 * The message numbers are ghosts: the sender's next message is the number of messages
 * published so far, plus one (so a new sender sends again, perhaps with another length, the
 * message a dead sender wrote but did not publish).  Each message picks its length among
 * LEN1 and LEN2 (5: a record of 2 units, its payload padded; message_length, 16 by default:
 * 3 units, the largest record); a ring of 6 units then needs padding records of 1 and 2 units.
 *
 * Properties:
 *   (a) no torn message, nothing stale: every unit of a payload holds the number of the
 *       message expected (asserted at each load), the header's length is the one that
 *       message was published with, and a header is read only where a header was written
 *       for that very position (gen[]: the absolute position it was written for; a padding
 *       record is therefore read as padding only, and a message never as padding);
 *   (b) order, no gap, no duplicate but the documented one: a receiver expects the message
 *       after the last one released (read_cursor), and each message it builds is that
 *       one; so the only message seen twice is one read and not released by a receiver
 *       that died (delivered again to the next); every message is delivered (at the end);
 *   (c) the checks of B5 and B6 (and the sender's of B1) never fail on a sound channel:
 *       each is asserted (in the product a failure is ChannelCorruptError);
 *   (d) nobody waits forever: the safety search finds no invalid end state (an end asleep
 *       with the other done, or both asleep); the -DNP search (no progress labels) finds
 *       no cycle at all, so every run ends, and ends validly.  A message of message_length
 *       bytes fits an empty ring wherever the write index is (else the sender sleeps for
 *       ever: see the mutant BIG_MESSAGE).
 *
 * Variants (each must pass):
 *   RESERVE       the sender's records come from reserve(n): B1-B2 for n bytes, then it may
 *                 publish fewer (truncate), or abandon the claim (an exception: nothing sent,
 *                 its private write index back where the claim began).
 *   CORRUPT_PAD   another process rewrites the length of one padding header once, anywhere
 *                 and at any moment: the receiver's check of B6 catches it (it stops with
 *                 ChannelCorruptError: a valid end), and (a) holds until then.
 *
 * Mutants (each must fail; check.sh requires it):
 *   EARLY_PUBLISH   B4 before B3's header store: the receiver reads a stale header.
 *   PUBLISH_FIRST   B4 before B3's payload stores: the receiver reads a stale payload.
 *   NO_PAD_RECORD   no padding record: a record crossing the end wraps around the ring (the
 *                   receiver's contiguity check of B6 fails on a sound channel).
 *   ROOM_NO_PAD     B1 counts the record but not the padding before it: the sender
 *                   overwrites a message not yet read.
 *   RELEASE_EARLY   B7's release before the payload is read: the sender overwrites it.
 *   NO_PAD_CHECK    (with CORRUPT_PAD) the receiver steps over a padding record without
 *                   checking its length (against the ring's end and against write_cursor):
 *                   a rewritten length sends it into stale bytes.
 *   BIG_MESSAGE     message_length = capacity - 8: a largest record fits an empty ring only at
 *                   index 0; elsewhere the sender would sleep for ever on an empty ring (the
 *                   assertion of (d) at B1 catches it first).
 *   NO_RECHECK      the sender sleeps without looking again after announcing (W3): a
 *                   release between its look and its announcement wakes nobody.
 *   NO_RECHECK_R    the same for the receiver, with a publish.
 *   NO_ATTACH_WAKE  a new end does not wake the other end when it takes the place: a
 *                   receiver that released and died before its wake leaves the sender asleep
 *                   on room that exists, and the new receiver, on an empty ring, asleep too
 *                   (a sender that published and died before its wake: the receiver asleep
 *                   on a message that is there).
 */

#ifndef CAP
#define CAP 6                   /* ring units of 8 bytes: 48 bytes */
#endif
#define CAPB (CAP * 8)
#ifndef NM
#define NM 3                    /* messages, over all senders */
#endif
#ifndef MAXCRASH
#define MAXCRASH 2              /* crashes in one run (of either end) */
#endif
#ifdef BIG_MESSAGE
#define ML (CAPB - 8)           /* mutant: message_length up to capacity - 8 */
#else
#define ML (CAPB / 2 - 8)       /* message_length: capacity / 2 - 8 */
#endif
#ifndef LEN1
#define LEN1 5
#endif
#ifndef LEN2
#define LEN2 ML
#endif

#define UNITS(n) (((n) + 7) / 8)          /* round_up(n, 8) / 8 */
#define HDR(ln, kind) (128 + (ln) * 2 + (kind))
#define HLEN(v) (((v) - 128) / 2)
#define HKIND(v) (((v) - 128) % 2)

byte wc;                /* write_cursor / 8 */
byte rc;                /* read_cursor / 8 */
byte sw;                /* sender_waiting */
byte rw;                /* receiver_waiting */
bool sasleep;           /* the sender is queued in FUTEX_WAIT(sender_waiting, 1) */
bool rasleep;           /* the receiver is queued in FUTEX_WAIT(receiver_waiting, 1) */
byte cell[CAP];         /* the ring */
bool salive, ralive;    /* place locks held */

/* ghosts */
byte gen[CAP];          /* absolute position + 1 a header at this unit was written for; 0: payload */
byte plen[NM + 2];      /* the length message m was last written with */
byte npub;              /* messages published (covered by write_cursor) */
byte relm;              /* messages released (covered by read_cursor) */
byte ndel;              /* the highest message delivered */
byte crashes;
bool rstop;             /* the receiver stopped on ChannelCorruptError */
bool corrupted;         /* CORRUPT_PAD: a padding length was rewritten */
bool sdone, rdone;      /* the end closed cleanly (its place is not taken again) */
byte abandons;          /* RESERVE: claims abandoned (one at most, so that every run ends) */

/* A check of the product: on a sound channel it never fails; a failure is ChannelCorruptError. */
#ifdef CORRUPT_PAD
#define CHECK(c) if :: !(c) -> assert(corrupted); goto corrupt :: else -> skip fi
#else
#define CHECK(c) assert(c)
#endif

/* The wake of the other end (send step 4, receive step 5): load the word (after the publish
 * order), exchange it to 0, FUTEX_WAKE if that returned not 0.  Three steps. */
#define WAKE(word, asleep) \
    if \
    :: word != 0 -> \
        atomic { old = word; word = 0 }; \
        if \
        :: old != 0 -> atomic { asleep = false; old = 0 } \
        :: else -> skip \
        fi \
    :: else -> skip \
    fi

/* An end taking its place wakes the other end: it stores 0 to the other end's word and
 * FUTEX_WAKEs it, whatever the word held (the end it replaces may have exchanged it to 0 and
 * died before its wake; or published and died before its load of the word, the other end
 * between its look again and its FUTEX_WAIT, which the store of 0 makes return at once). */
#if defined(NO_ATTACH_WAKE)
#define ATTACH_WAKE(word, asleep) skip
#elif defined(ATTACH_WAKE_IF_SET)
#define ATTACH_WAKE(word, asleep) WAKE(word, asleep)
#else
#define ATTACH_WAKE(word, asleep) word = 0; atomic { asleep = false }
#endif

/* W4-W5: FUTEX_WAIT(word, 1) and the sleep until a wake (SLICED: or the end of a slice). */
#ifdef SLICED
#define SLEEP(word, asleep, also) \
    atomic { if :: word == 1 -> asleep = true :: else -> skip fi }; \
    if \
    :: (!asleep || also) -> skip \
    :: atomic { asleep -> asleep = false }      /* the slice ends */ \
    fi
#else
#define SLEEP(word, asleep, also) \
    atomic { if :: word == 1 -> asleep = true :: else -> skip fi }; \
    (!asleep || also)
#endif

/* B4: store-release write_cursor (npub: the ghost count it covers), then wake. */
#define PUBLISH \
    atomic { wc = w; npub = m - 1 }; \
    wpub = w; \
    WAKE(rw, rasleep)

/* EARLY_PUBLISH, PUBLISH_FIRST: B4 for the record being written, before B3 ends. */
#define PUBLISH_AHEAD \
    atomic { wc = w + rec; npub = m }; \
    wpub = w + rec; \
    WAKE(rw, rasleep)

#define ROOM (CAP - (w - rcache) >= need)

proctype sender()
{
    byte w, wpub, rcache, i, rec, pad, need, n, k, m, old;
#ifdef RESERVE
    byte w0;
#endif
start:
    salive = true;
    {
        rcache = rc;                            /* attach: load read_cursor (acquire) */
        atomic { w = wc; m = npub + 1 };        /* load write_cursor (acquire); ghost: next message */
        assert(rcache <= w && w - rcache <= CAP);
        wpub = w;
        ATTACH_WAKE(rw, rasleep);               /* a new sender wakes a sleeping receiver */
        do
        :: m > NM -> break
        :: else ->
            if
            :: n = LEN1
            :: n = LEN2
            fi;
            rec = 1 + UNITS(n);
            i = w % CAP;
#ifdef NO_PAD_RECORD
            pad = 0;
#else
            if
            :: i + rec > CAP -> pad = CAP - i
            :: else -> pad = 0
            fi;
#endif
#ifdef ROOM_NO_PAD
            need = rec;
#else
            need = rec + pad;
#endif
            /* A batch goes on while the cached room allows; a sender about to look for
             * room publishes what it wrote first. */
            if
            :: w != wpub && ROOM -> skip
            :: w != wpub -> PUBLISH
            :: w == wpub -> skip
            fi;
            /* B1 room */
            if
            :: ROOM -> skip
            :: else ->
                do
                :: rcache = rc;                 /* reload read_cursor (acquire) */
                   assert(rcache <= w && w - rcache <= CAP);
                   assert(w != rcache || need <= CAP);  /* (d) any record fits an empty ring */
                   if
                   :: ROOM -> break
                   :: else -> skip
                   fi;
                   sw = 1;                      /* W2 announce */
#ifndef NO_RECHECK
                   rcache = rc;                 /* W3 look again (after the full fence) */
                   assert(rcache <= w && w - rcache <= CAP);
                   if
                   :: ROOM -> sw = 0; break
                   :: else -> skip
                   fi;
#endif
                   SLEEP(sw, sasleep, rstop);   /* W4 FUTEX_WAIT(sender_waiting, 1) until woken */
                   if
                   :: rstop -> goto finish      /* CORRUPT_PAD: the receiver is gone */
                   :: else -> skip
                   fi;
                   sw = 0                       /* W5, then B1 again */
                od
            fi;
#ifdef RESERVE
            w0 = w;
#endif
            /* B2 padding */
            if
            :: pad > 0 ->
                atomic { cell[i] = HDR(pad * 8, 1); gen[i] = w + 1 };
                w = w + pad
            :: else -> skip
            fi;
#ifdef RESERVE
            /* reserve(n): the payload; then commit n, truncate to LEN1, or abandon */
            if
            :: skip
            :: n > LEN1 -> n = LEN1; rec = 1 + UNITS(n)
            :: abandons < 1 -> atomic { w = w0; abandons++ }; goto next
            fi;
#endif
            /* B3 payload, then header */
#ifdef PUBLISH_FIRST
            PUBLISH_AHEAD;
#endif
            k = 1;
            do
            :: k < rec ->
                atomic { cell[(w + k) % CAP] = m; gen[(w + k) % CAP] = 0 };
                k++
            :: else -> break
            od;
#ifdef EARLY_PUBLISH
            PUBLISH_AHEAD;
#endif
            atomic { cell[w % CAP] = HDR(n, 0); gen[w % CAP] = w + 1; plen[m] = n };
            w = w + rec;                        /* private */
            m++;
#ifdef RESERVE
next:
#endif
            atomic { n = 0; k = 0; i = 0; pad = 0; need = 0; rec = 0 }
        od;
        if
        :: w != wpub -> PUBLISH
        :: else -> skip
        fi;
finish:
        atomic { sdone = true; salive = false }   /* clean close */
    } unless { !salive };
    if
    :: sdone -> goto end
    :: else -> skip
    fi;
    /* dead: a new sender takes the place */
    atomic {
        sasleep = false;
        w = 0; wpub = 0; rcache = 0; i = 0; rec = 0; pad = 0; need = 0; n = 0; k = 0; m = 0; old = 0
#ifdef RESERVE
        ; w0 = 0
#endif
    };
    goto start;
end:
    skip
}

proctype receiver()
{
    byte r, rpub, wcache, v, ln, kind, rec, k, expect, old;
start:
    ralive = true;
    {
        atomic { r = rc; expect = relm + 1 };   /* attach: load read_cursor (acquire) */
        wcache = r; rpub = r;
        ATTACH_WAKE(sw, sasleep);               /* a new receiver wakes a sleeping sender */
        do
        :: r != wcache ->
            /* B6: the header, one load */
            atomic {
                v = cell[r % CAP];
                /* (a) a header written for this very position, not stale bytes */
                assert(v >= 128 && gen[r % CAP] == r + 1)
            };
            d_step { ln = HLEN(v); kind = HKIND(v) };
            if
            :: kind == 1 ->
#ifndef NO_PAD_CHECK
                CHECK(ln == (CAP - r % CAP) * 8);
                CHECK(ln / 8 <= wcache - r);    /* published, as the record after it */
#endif
                r = r + ln / 8                 /* step over the padding */
            :: else ->
                CHECK(ln <= ML);
                rec = 1 + UNITS(ln);
                CHECK(rec <= wcache - r);
                CHECK(r % CAP + rec <= CAP);
                assert(ln == plen[expect]);    /* (a) the length it was published with */
#ifdef RELEASE_EARLY
                atomic { rc = r + rec; relm = expect };
                rpub = r + rec;
                WAKE(sw, sasleep);
#endif
                /* build the message from the payload, one load per unit */
                k = 1;
                do
                :: k < rec ->
                    v = cell[(r + k) % CAP];
                    assert(v == expect);        /* (a, b) not torn, in order, no gap */
                    k++
                :: else -> break
                od;
                atomic {                        /* delivered */
                    assert(expect <= ndel + 1);
                    if
                    :: expect > ndel -> ndel = expect
                    :: else -> skip
                    fi;
                    expect++;
                    v = 0; k = 0; ln = 0; kind = 0
                };
                r = r + rec                     /* B7 take (private) */
            fi;
            assert(r <= wcache)
        :: r != rpub ->                         /* B7 release, after any number of records */
            atomic { rc = r; relm = expect - 1 };
            rpub = r;
            WAKE(sw, sasleep)
        :: r == wcache && r == rpub ->
            if
            :: relm == NM -> break              /* ghost: everything was released */
            :: else -> skip
            fi;
            wcache = wc;                        /* B5: load write_cursor (acquire) */
            CHECK(r <= wcache && wcache - r <= CAP);
            if
            :: wcache != r -> skip
            :: else ->
                rw = 1;                         /* W2 announce */
#ifndef NO_RECHECK_R
                wcache = wc;                    /* W3 look again */
                CHECK(r <= wcache && wcache - r <= CAP);
                if
                :: wcache != r -> rw = 0
                :: else ->
#endif
                    SLEEP(rw, rasleep, false);  /* W4 FUTEX_WAIT(receiver_waiting, 1) until woken */
                    rw = 0                      /* W5, then B5 again */
#ifndef NO_RECHECK_R
                fi
#endif
            fi
        od;
        assert(ndel == NM && relm == NM);       /* (b) every message was delivered */
        atomic { rdone = true; ralive = false };
#ifdef CORRUPT_PAD
        goto end;
corrupt:
        atomic { rstop = true; rdone = true; ralive = false; sasleep = false }
#endif
    } unless { !ralive };
    if
    :: rdone -> goto end
    :: else -> skip
    fi;
    /* dead: a new receiver takes the place */
    atomic {
        rasleep = false;
        r = 0; rpub = 0; wcache = 0; v = 0; ln = 0; kind = 0; rec = 0; k = 0; expect = 0; old = 0
    };
    goto start;
end:
    skip
}

/* Kills either end, at most MAXCRASH times, each at any moment: the lock goes with the life. */
proctype killer()
{
end:
    do
    :: atomic { crashes < MAXCRASH && salive -> salive = false; crashes++ }
    :: atomic { crashes < MAXCRASH && ralive && !rstop -> ralive = false; crashes++ }
    od
}

#ifdef CORRUPT_PAD
/* Rewrites the length of one padding header, once, to another multiple of 8 in the ring. */
#define PADAT(x) (cell[x] >= 128 && HKIND(cell[x]) == 1)
#define CORRUPT(x) :: atomic { PADAT(x) -> u = x; select(l : 1 .. CAP - 1); \
    cell[u] = HDR(((HLEN(cell[u]) / 8 - 1 + l) % CAP + 1) * 8, 1); corrupted = true; u = 0; l = 0 }
proctype corrupter()
{
    byte u, l;
end:
    if
    CORRUPT(0)
    CORRUPT(1)
    CORRUPT(2)
    CORRUPT(3)
    CORRUPT(4)
    CORRUPT(5)
#if CAP > 6
    CORRUPT(6)
    CORRUPT(7)
#endif
    fi
}
#endif

init
{
    atomic {
        run sender();
        run receiver();
        run killer()
#ifdef CORRUPT_PAD
        ; run corrupter()
#endif
    }
}

/* SLICED: every run ends with everything delivered, under weak fairness (check.sh --full). */
ltl done { <> rdone }
