/*-------------------------------------------------------------------------
 * dbpool_guard.h
 *		What crosses the files of dbpool_guard: GUC values, shared state.
 *
 * IDENTIFICATION
 *		src/dbpool_guard.h
 *-------------------------------------------------------------------------
 */
#ifndef DBPOOL_GUARD_H
#define DBPOOL_GUARD_H

#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/s_lock.h"
#include "utils/timestamp.h"

#include "budgets.h"

/* Name of the one named LWLock tranche (two locks) and of the worker. */
#define DBPG_TRANCHE		"dbpool_guard"
#define DBPG_WORKER_TYPE	"dbpool_guard worker"

/* Refusals kept for dbpool_guard.rejections. */
#define DBPG_RING_SIZE		1000

/* Longest exempt_roles list; most role names in service_roles. */
#define DBPG_MAX_EXEMPT		64
#define DBPG_MAX_BOUND_ROLES	1024

typedef enum DbpgMode
{
	DBPG_MODE_ENFORCE,
	DBPG_MODE_MONITOR,
	DBPG_MODE_OFF
} DbpgMode;

/* What names a session's service. */
typedef enum DbpgServiceKey
{
	DBPG_KEY_APPLICATION_NAME,
	DBPG_KEY_ROLE
} DbpgServiceKey;

/* A session's state as last sampled by the worker. */
typedef enum DbpgState
{
	DBPG_STATE_UNKNOWN = 0,		/* not sampled yet */
	DBPG_STATE_ACTIVE,
	DBPG_STATE_WAITING,			/* active, waiting on a heavyweight lock */
	DBPG_STATE_IDLE,
	DBPG_STATE_IDLE_IN_XACT,
	DBPG_STATE_IDLE_IN_XACT_ABORTED,
	DBPG_STATE_OTHER			/* starting, fastpath, disabled */
} DbpgState;

/* The name dbpool_guard.sessions shows for a state; NULL when unknown. */
static inline const char *
dbpg_state_name(DbpgState s)
{
	switch (s)
	{
		case DBPG_STATE_ACTIVE:
			return "active";
		case DBPG_STATE_WAITING:
			return "waiting";
		case DBPG_STATE_IDLE:
			return "idle";
		case DBPG_STATE_IDLE_IN_XACT:
			return "idle in transaction";
		case DBPG_STATE_IDLE_IN_XACT_ABORTED:
			return "idle in transaction (aborted)";
		case DBPG_STATE_OTHER:
			return "other";
		case DBPG_STATE_UNKNOWN:
			break;
	}
	return NULL;
}

/* Per-bucket figures from the last sample, written only by the worker. */
typedef struct DbpgSample
{
	int32		active;
	int32		idle;
	int32		idle_in_xact;
	int32		waiting;
	int32		held;			/* holdings found for this bucket */
	TimestampTz oldest_iit_start;	/* 0 when none is idle in transaction */
} DbpgSample;

/*
 * At most one server log line per period: the backend that claims the
 * period logs, and learns how many lines were left out since the last
 * one; the others only count themselves (admission.c, log_limit_pass()).
 */
typedef struct DbpgLogLimit
{
	pg_atomic_uint64 second;	/* start of the last logged period, in s */
	pg_atomic_uint32 suppressed;	/* lines left out since */
} DbpgLogLimit;

/* What only the worker reads and writes in a bucket (worker.c). */
typedef struct DbpgBucketWorker
{
	DbpgSample	scratch;		/* the sample being taken */
	uint64		pass;			/* last sample that visited it */
	bool		warned;			/* above warning_threshold */
	int			mismatches;		/* consecutive samples held != in_use */
} DbpgBucketWorker;

/*
 * What a login may take: its cap of own slots, its burst of borrowed
 * ones, and the pool's size, as the login's own settings say.
 */
typedef struct DbpgLimits
{
	uint32		cap;
	uint32		burst;
	uint32		pool;
} DbpgLimits;

/*
 * A bucket: the slots and counters of one service, or of "*".  Named
 * buckets live in a shared hash keyed by name; the "*" bucket is part of
 * DbpgShared.  A bucket is never removed while the server runs, so a
 * pointer to it always names the same service (src/shmem.c).
 */
typedef struct DbpgBucket
{
	char		name[NAMEDATALEN];	/* hash key: must be first */
	pg_atomic_uint64 slots;		/* slots held now, and how many of them are
								 * borrowed from the burst pool (slots.c) */
	pg_atomic_uint32 peak;
	pg_atomic_uint64 admitted;
	pg_atomic_uint64 rejected;
	pg_atomic_uint64 would_reject;
	pg_atomic_uint64 terminated;	/* by dbpool_guard.terminate_sessions() */
	pg_atomic_uint64 misattributed; /* claims of this service refused trust */
	pg_atomic_uint64 last_rejected_at;	/* TimestampTz; 0 = never */
	pg_atomic_uint32 waiters;	/* logins waiting now (written under the
								 * wait lock, read without it) */
	/* the last grant pass that left a waiter of it waiting (waiting.c) */
	uint64		wait_pass;		/* under the wait lock, as the two below */
	uint32		wait_fail_cap;	/* largest cap of those waiters */
	int64		wait_fail_burst;	/* largest burst of those at their burst;
									 * -1 none */
	pg_atomic_uint64 waited;	/* admitted after waiting */
	pg_atomic_uint64 wait_timeouts; /* refused when the wait ran out */
	DbpgLogLimit refusal_log;	/* refusals and would-be refusals */
	DbpgLogLimit claim_log;		/* refused claims of the service */

	slock_t		mutex;			/* protects sample */
	DbpgSample	sample;

	DbpgBucketWorker worker;
} DbpgBucket;

/*
 * A bucket's slot word: slots in use in the low half, borrowed ones in the
 * high half, so that one compare-and-exchange moves both.  A bucket's own
 * slots in use are in_use - borrowed; borrowed <= in_use always.
 */
#define DBPG_SLOTS_IN_USE(w)	((uint32) ((w) & UINT64CONST(0xFFFFFFFF)))
#define DBPG_SLOTS_BORROWED(w)	((uint32) ((w) >> 32))
#define DBPG_SLOT_ONE			UINT64CONST(1)
#define DBPG_SLOT_BORROWED_ONE	(UINT64CONST(1) << 32)

static inline uint32
dbpg_bucket_in_use(DbpgBucket *b)
{
	return DBPG_SLOTS_IN_USE(pg_atomic_read_u64(&b->slots));
}

/* What one admitted backend holds; indexed by the backend's slot. */
typedef struct DbpgHolding
{
	slock_t		mutex;
	int			pid;			/* 0 when free */
	DbpgBucket *bucket;
	PGPROC	   *proc;
	TimestampTz proc_start;		/* MyStartTimestamp: with pid, the backend */
	TimestampTz admitted_at;
	NameData	user_name;
	uint8		state;			/* DbpgState from the last sample */
} DbpgHolding;

/* Why a login was refused (dbpool_guard.rejections.reason). */
typedef enum DbpgReason
{
	DBPG_REASON_OVER_CAP,		/* no slot it may take */
	DBPG_REASON_WAIT_TIMEOUT,	/* none came within its wait */
	DBPG_REASON_QUEUE_FULL,		/* no room to wait */
	DBPG_REASON_WAIT_CANCELLED	/* cancel_waiting_login() */
} DbpgReason;

/* One refusal (or would-be refusal in monitor mode). */
typedef struct DbpgRejection
{
	TimestampTz at;
	char		service[NAMEDATALEN];
	NameData	user_name;
	NameData	database_name;
	char		client_addr[64];	/* as pg_stat_activity shows it; "" when
									 * not over IP */
	int32		connections;
	int32		budget;
	bool		enforced;
	bool		misattributed;	/* the session had claimed another service */
	uint8		reason;			/* DbpgReason */
} DbpgRejection;

/*
 * A ring entry: seq is odd while a writer holds it, and 2 * (its number
 * + 1) once whole, so that a reader copying without a lock can tell a
 * whole entry from a torn one (shmem.c).
 */
typedef struct DbpgRingEntry
{
	pg_atomic_uint64 seq;
	DbpgRejection r;
} DbpgRingEntry;

/* Where a waiting login stands (waiting.c). */
typedef enum DbpgWaitState
{
	DBPG_WAIT_NONE = 0,			/* not waiting */
	DBPG_WAIT_QUEUED,			/* in the queue */
	DBPG_WAIT_GRANTED,			/* handed a slot, not yet taken up */
	DBPG_WAIT_CANCELLED			/* cancel_waiting_login() */
} DbpgWaitState;

/*
 * A login waiting for a slot; indexed like the holdings.  All of it is
 * under the wait lock.  The queue is one list in arrival order (ticket),
 * linked through next/prev.
 */
typedef struct DbpgWaiter
{
	int			pid;			/* 0 when not in use */
	uint8		state;			/* DbpgWaitState */
	int			prev;			/* index, -1 at either end */
	int			next;
	uint64		ticket;
	DbpgBucket *bucket;
	DbpgLimits	limits;
	uint64		seen;			/* the bucket's slot word before the grant */
	PGPROC	   *proc;
	TimestampTz since;
	NameData	user_name;
	NameData	database_name;
	char		client_addr[64];
} DbpgWaiter;

/*
 * The shared block.  Its two locks are taken only in shmem.c, through the
 * functions below: the bucket hash's, and the rejection ring's.
 */
typedef struct DbpgShared
{
	LWLock	   *lock;			/* the bucket hash */
	LWLock	   *wait_lock;		/* the waiters' queue (waiting.c) */
	int			nbuckets;		/* named buckets; under lock */
	uint64		passes;			/* samples ever taken; the worker's */
	pg_atomic_uint64 overflow;	/* admitted unguarded: table full */
	DbpgLogLimit overflow_log;
	pg_atomic_uint64 sampled_at;	/* TimestampTz of the last sample */
	DbpgBucket	deflt;			/* the shared "*" bucket */

	/* the burst pool and the waiters (slots.c, waiting.c) */
	pg_atomic_uint32 pool_lent;	/* pool slots borrowed now */
	pg_atomic_uint32 waiters;	/* logins waiting now, server-wide */
	pg_atomic_uint32 pool_waiters;	/* of which may borrow */
	int			wait_head;		/* under wait_lock; -1 when empty */
	int			wait_tail;
	uint64		next_ticket;	/* under wait_lock */
	uint64		grant_passes;	/* under wait_lock */

	/* the rejection ring, written without a lock (shmem.c) */
	pg_atomic_uint64 ring_next; /* entries ever claimed */
	pg_atomic_uint64 ring_base; /* ring_next at the last reset */
	DbpgRingEntry ring[DBPG_RING_SIZE];
} DbpgShared;

/* GUCs (dbpool_guard.c) */
extern int	dbpg_mode;
extern int	dbpg_max_services;
extern int	dbpg_sample_interval;
extern double dbpg_threshold;
extern double dbpg_warning_threshold;
extern char *dbpg_budgets_string;
extern char *dbpg_exempt_string;
extern const DbpgBudgets *dbpg_budgets;		/* NULL until set */
extern const DbpgNameList *dbpg_exempt;
extern int	dbpg_service_key;
extern char *dbpg_service_roles_string;
extern const DbpgBindings *dbpg_bindings;	/* NULL until set */
extern int32 dbpg_threshold_ppm;
extern int	dbpg_burst_pool;
extern int	dbpg_max_wait;
extern int	dbpg_max_waiters;
extern int	dbpg_max_waiters_total;

extern bool dbpg_configured_budgets_invalid(void);
extern int32 dbpg_entry_threshold(const DbpgBudgetEntry *e);
extern int32 dbpg_entry_cap(const DbpgBudgetEntry *e);
extern int	dbpg_waiters_bound(void);

/* shmem.c: the shared block, the bucket table, the holdings, the ring */
extern DbpgShared *dbpg_shared;
extern DbpgHolding *dbpg_holdings;
extern DbpgWaiter *dbpg_waiters;	/* dbpg_nholdings of them */
extern int	dbpg_nholdings;
extern void dbpg_shmem_init_hooks(void);
extern void dbpg_require_shared(void);
extern DbpgBucket *dbpg_bucket_find(const char *name);
extern DbpgBucket *dbpg_bucket_get(const char *name);
extern void dbpg_buckets_foreach(void (*fn) (DbpgBucket *b, void *arg),
								 void *arg);
extern int	dbpg_unguarded_services(const DbpgBudgets *cfg);
extern void dbpg_ring_record(DbpgRejection *r, DbpgBucket *b);
extern int	dbpg_ring_copy(DbpgRejection *out);
extern void dbpg_ring_reset(void);

/* slots.c: taking and giving back slots, the burst pool */
extern bool dbpg_slot_take(DbpgBucket *b, const DbpgLimits *lim,
						   bool may_borrow, uint64 *seen, bool *gave_back);
extern uint64 dbpg_slot_add(DbpgBucket *b);
extern bool dbpg_slot_release(DbpgBucket *b);

/* waiting.c: the waiters' queue */
typedef enum DbpgJoin
{
	DBPG_JOIN_GRANTED,			/* a slot at once (older waiters first) */
	DBPG_JOIN_WAITING,			/* in the queue: call dbpg_queue_wait() */
	DBPG_JOIN_REFUSED,			/* no slot, and not to wait */
	DBPG_JOIN_FULL_SERVICE,		/* max_waiters of its service wait */
	DBPG_JOIN_FULL_SERVER,		/* max_waiters_total wait */
	DBPG_JOIN_NO_PROCS			/* no free process slot beyond the reserved */
} DbpgJoin;

typedef enum DbpgWaitEnd
{
	DBPG_WAIT_END_GRANTED,
	DBPG_WAIT_END_TIMEOUT,
	DBPG_WAIT_END_CANCELLED
} DbpgWaitEnd;

/* What a login brings to the queue. */
typedef struct DbpgJoinRequest
{
	DbpgBucket *bucket;
	DbpgLimits	limits;
	bool		may_wait;
	const char *user_name;
	const char *database_name;
	const char *client_addr;
} DbpgJoinRequest;

extern bool dbpg_queue_take(DbpgBucket *b, const DbpgLimits *lim,
							bool may_borrow, uint64 *seen);
extern DbpgJoin dbpg_queue_join(const DbpgJoinRequest *req, uint64 *seen,
								uint64 *ticket);
extern DbpgWaitEnd dbpg_queue_wait(TimestampTz deadline, pgsocket sock,
								   uint64 *seen);
extern DbpgBucket *dbpg_queue_forget(void);
extern void dbpg_queue_release(DbpgBucket *b);

/* admission.c */
extern void dbpg_admission_init(void);
extern bool dbpg_quiet_messages;	/* while set, messages below WARNING go nowhere */

/* views.c */
extern Datum dbpg_client_addr_datum(const char *addr, bool *isnull);
extern Interval *dbpg_interval_usecs(int64 usecs);

/* worker.c */
extern void dbpg_register_worker(void);

#endif							/* DBPOOL_GUARD_H */
