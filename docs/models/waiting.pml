/*
 * The wake-up handshake of ends that share a waiting word: the members of
 * receiver groups (receiver_waiting) or the senders of a many-senders channel
 * (sender_waiting).  docs/protocol.md, "Waiting, without lost wake-ups",
 * "Shared words".
 *
 * One waker (a sender publishing N messages: each publish stores its cursor,
 * then, if the word is not 0, exchanges it to 0 and wakes every sleeper) and
 * S sharers, each of which must see every message (members of different
 * groups).  A sharer spins (looks), announces its sleep (step 2), looks again
 * (step 3), and sleeps with FUTEX_WAIT(word, expected) (step 4): the kernel
 * compares and queues in one step, and FUTEX_WAKE dequeues every sleeper.  A
 * sharer never clears the word.  Sequentially consistent memory: the fences
 * of the handshake make these accesses so (see protocol.md).
 *
 * Default: sharers announce with a token (join a value not 0 by a
 * compare-and-swap of it with itself, else store a new token).  With
 * -DFLAG every sharer stores 1: a sharer announcing after a wake-up and
 * before another sharer's FUTEX_WAIT hides that wake-up, and the other
 * sharer sleeps for ever with a message it has not seen: an invalid end state.
 *
 * Checked by tests/test_wakeups.py (2 sharers and 2 messages, and 3 and 3):
 *   spin -a waiting.pml && cc -O2 -o pan pan.c && ./pan          errors: 0
 *   spin -a -DFLAG waiting.pml && cc -O2 -o pan pan.c && ./pan   an invalid end state
 * The safety search's invalid end state is a sharer asleep, for ever, with a message
 * it has not seen.  Tokens are counted here (each new one differs from all before); the
 * code's are hashed counts, equal across processes by chance only (2^-32).
 */
#ifndef N
#define N 2
#endif
#ifndef S
#define S 2
#endif

byte pub = 0;           /* messages published */
byte word = 0;          /* the waiting word: 0, 1 or a token */
byte tokens = 1;        /* the next token (distinct from every one made before) */
bool asleep[S];         /* queued in the kernel by FUTEX_WAIT */

active proctype waker() {
    byte j;
    do
    :: pub < N ->
        pub++;                                      /* store the cursor */
        atomic {                                    /* exchange to 0, FUTEX_WAKE all */
            if
            :: word != 0 ->
                word = 0;
                for (j : 0 .. S - 1) { asleep[j] = false }
            :: else -> skip
            fi
        }
    :: else -> break
    od
}

active [S] proctype sharer() {
    byte seen = 0, expect;
    do
    :: seen == N -> break
    :: else ->
        if
        :: seen < pub -> seen = pub                 /* spin: found messages, take them */
        :: else ->
#ifdef FLAG
            word = 1; expect = 1;                   /* step 2, a flag */
#else
            atomic {                                /* step 2, a token */
                if
                :: word == 0 -> word = tokens; tokens++
                :: else -> skip
                fi;
                expect = word
            }
#endif
            if
            :: seen < pub -> seen = pub             /* step 3: progress, leave the word */
            :: else ->
                atomic {                            /* step 4: FUTEX_WAIT(word, expect) */
                    if
                    :: word == expect -> asleep[_pid - 1] = true
                    :: else -> skip
                    fi
                };
                !asleep[_pid - 1]                   /* until woken */
            fi
        fi
    od
}
