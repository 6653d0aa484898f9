/* peermesh-sim: a deterministic simulator of many peermesh nodes.
 *
 * One process, a virtual clock in milliseconds. Every node is a pm_node core
 * (runtime/include/peermesh/node.h) driven only through its public API; the
 * simulator plays the network (TCP connections with latency, jitter,
 * retransmission delays and partitions), the resolver and the scenario
 * (crashes, leaves, joins, restarts). A run is a function of its options,
 * its seed and its number of partitions (--partitions), not of the number of
 * threads: trace_hash folds every processed event, so two runs with the same
 * seed and partitions must print the same hash.
 *
 * Parallel scheme (conservative, windowed): the hosts are split into
 * partitions, each with its own event queue, random stream, counters and
 * network state. Nothing a node does reaches another node sooner than the
 * smallest one-way latency L (--lat-min-ms), so every partition runs the
 * window [T, T + L) on its own, on whichever thread takes it; what it sends
 * to another partition waits in an outbox and joins the receiver's queue at
 * the start of the next window, in partition order. The timeline (messages
 * sent, crashes, the cut, churn, restarts, component samples) runs between
 * two windows, on one thread, as does the registration of new nodes with the
 * resolver. See README.md.
 *
 * Modules: evq (event queues), net (network model), nodes (node lifecycle,
 * draining outputs and events, resolver), scenario (timeline and faults),
 * metrics (deliveries, counters, components, report), sim (windows, threads,
 * the run), main (options). This header holds the state they share. */
#ifndef SIM_SIM_H
#define SIM_SIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "evq.h"
#include "peermesh/node.h"
#include "rng.h"

#define SIM_NONE UINT32_MAX
#define SIM_NEVER UINT64_MAX
#define SIM_LISTEN_PORT 7000
#define SIM_MESH "sim"
#define SIM_ADDR_MAX 128     /* holds any address the core emits */
#define SIM_PREV_NEIGHBORS 8 /* neighbours remembered for a restart */
#define SIM_RESOLVE_MAX 8    /* addresses in one resolver answer */
#define SIM_MSS 1460    /* TCP segment: arrivals and losses are per segment */
#define SIM_BURST 65000 /* a write travels in packets of this many bytes */
#define SIM_MAX_THREADS 16
#define SIM_MAX_PARTS 64

enum sim_scenario {
  SIM_STEADY,
  SIM_KILL30,
  SIM_PARTITION,
  SIM_CHURN,
  SIM_LOSSY,
  SIM_RESTART,
};

/* Events of a partition's queue. */
enum sim_event_kind {
  SIM_EV_TIMER = 1, /* a = node, b = timer generation */
  SIM_EV_PACKET,    /* a = packet, b = its end (or host): it arrives */
  SIM_EV_RELEASE,   /* a = end, b = its generation: the cut's hold ends */
  SIM_EV_DIAL_FAIL, /* a = end, b = its generation: nobody answered */
  SIM_EV_RESOLVE,   /* a = node */
  SIM_EV_START,     /* a = host: an initial node starts */
  /* the global timeline (sim.gq) */
  SIM_EV_SEND, /* a = message number */
  SIM_EV_KILL, /* crash a fraction of the nodes */
  SIM_EV_CUT_START,
  SIM_EV_CUT_END,
  SIM_EV_CHURN,   /* a = churn step */
  SIM_EV_RESTART, /* restart every host crashed by SIM_EV_KILL */
  SIM_EV_SAMPLE,  /* check whether the live nodes are one component */
  SIM_EV_PROGRESS,
};

/* What travels from one end of a connection to the other (and the SYN). */
enum sim_packet_kind {
  SIM_PK_DATA = 1,
  SIM_PK_FIN,      /* the sender closed or crashed: no more packets */
  SIM_PK_SYNACK,   /* a = the acceptor's end, b = its generation,
                      c = its node */
  SIM_PK_DIALFAIL, /* the dial failed (reset, or timed out at a cut) */
  SIM_PK_DRAIN,    /* a = bytes the peer took: --send-queue-limit */
  SIM_PK_SYN,      /* to a host: a = dialler's end, b = its generation,
                      c = dialler's host, d = latency, e = dialler */
};

typedef struct sim_opts {
  const char *scenario_name;
  int scenario;
  uint32_t nodes;
  uint32_t messages;
  uint64_t seed;
  uint64_t warmup_ms;
  uint64_t interval_ms;
  uint64_t window_ms;
  uint64_t drain_ms;
  uint64_t startup_ms; /* initial nodes start spread over this */
  double loss;         /* < 0: the scenario's default */
  unsigned min_n, ideal_n, max_n;
  uint32_t lat_min_ms, lat_max_ms, jitter_ms;
  uint64_t connect_timeout_ms;
  uint64_t partition_ms;
  uint64_t churn_interval_ms;
  double kill_fraction;
  uint64_t restart_after_ms; /* SIM_NEVER: half the message phase */
  size_t cache_bytes;
  size_t send_queue_limit;
  uint64_t min_timer_ms; /* re-arm delay when a deadline stays past */
  uint32_t trace_node;   /* print this node's traffic; SIM_NONE: none */
  uint32_t partitions;   /* the nodes split this way; 0: by --nodes */
  uint32_t threads;      /* run the partitions; 0: as many as useful */
  int prefault; /* fault memory in ahead (prefault.h); -1: by --nodes */
  int verbose;
} sim_opts;

/* A host is an address and a node ID; a node (below) is one incarnation of a
 * host, one pm_node from its start to its crash or leave. A restart is a new
 * node on the same host. A host and all its nodes belong to one partition. */
typedef struct sim_host {
  uint8_t id[PM_NODE_ID_LEN];
  uint32_t node;        /* current or last incarnation, SIM_NONE before */
  uint64_t planned_end; /* when its next incarnation will go, if planned */
  uint8_t side;         /* partition half (the cut) */
  uint8_t part;         /* simulation partition */
} sim_host;

/* One open end of a connection, kept with the node so that finding the
 * end of a link touches one small array. */
typedef struct sim_nconn {
  uint32_t link;
  uint32_t end;
} sim_nconn;

typedef struct sim_node {
  pm_node *core; /* NULL once gone */
  uint64_t rng;  /* state of the core's random callback */
  uint64_t start_ms;
  uint64_t end_ms;   /* planned end, SIM_NEVER when none is planned */
  uint64_t timer_at; /* time of the pending timer event, SIM_NEVER if none */
  uint32_t timer_gen;
  uint32_t host;
  uint32_t live_pos; /* index in sim.live, SIM_NONE when not registered */
  sim_nconn *conns;  /* ends open at this node */
  uint16_t nconns, conns_cap;
  uint16_t nbrs; /* neighbours, from NEIGHBOR_UP/DOWN events */
  uint8_t nprev, prev_pos;
  uint32_t prev[SIM_PREV_NEIGHBORS]; /* hosts of recent neighbours */
} sim_node;

/* A packet: a TCP segment, a FIN, or a connection set-up step. Stored in a
 * partition's slab in units of SIM_UNIT bytes, the data right after it. */
typedef struct sim_seg {
  uint64_t arrival;
  uint32_t dst, dst_gen;  /* the end it goes to; for a SYN, the host */
  uint32_t next;          /* next packet held by the cut */
  uint32_t len;           /* data bytes */
  uint32_t a, b, c, d, e; /* depend on kind */
  uint8_t kind;           /* enum sim_packet_kind */
  uint16_t units;         /* its block's size, in SIM_UNIT */
} sim_seg;

#define SIM_UNIT 64
#define SIM_SLAB_CHUNK_SHIFT 15 /* 32768 units (2 MiB) a chunk */
/* Blocks of up to a segment come from the slab, in every size; a larger
 * packet (a write of several segments) gets a malloc block of its own, its
 * index marked with SIM_SEG_BIG. Such packets come in bursts — a table's
 * worth of members each, while nodes join — and kept in the slab, the
 * burst's blocks would stay unused for the rest of the run (a third of a
 * gigabyte for 10,000 nodes); freed, the memory serves what comes next. */
#define SIM_SLAB_EXACT ((sizeof(sim_seg) + SIM_MSS + SIM_UNIT - 1) / SIM_UNIT)
#define SIM_SLAB_CLASSES (SIM_SLAB_EXACT + 1) /* indexed by units */
#define SIM_SEG_BIG 0x80000000u

/* Free blocks are kept in one stack of indices per size: taking one is not
 * a dependent load through the block (a free list would be). */
typedef struct sim_free_stack {
  uint32_t *v;
  uint32_t len, cap;
} sim_free_stack;

typedef struct sim_slab {
  uint8_t **chunks;
  uint32_t nchunks, chunks_cap;
  uint32_t used; /* units handed out of the last chunk */
  sim_free_stack free[SIM_SLAB_CLASSES];
  sim_seg **big; /* the big packets held, by index; NULL when free */
  uint32_t nbig, big_cap;
  sim_free_stack big_free; /* free indices of `big` */
} sim_slab;

enum sim_end_state { SIM_END_FREE, SIM_END_CONNECTING, SIM_END_OPEN };

/* One end of a TCP connection, owned by its node's partition. The peer end
 * is named by (part, index, generation): a freed end bumps its generation,
 * so packets still travelling to it are recognised and dropped. The end
 * keeps what its node sends in order (last_arrival), the packets the cut
 * holds for it, and the frame counter that reads what it receives. */
typedef struct sim_end {
  /* First cache line: what receiving and sending touch. */
  uint64_t last_arrival; /* of the last packet sent from here */
  uint32_t gen;
  uint32_t node;
  uint32_t link;
  uint32_t peer, peer_gen; /* SIM_NONE until the SYN-ACK (dialler) */
  uint32_t lat;            /* one-way base latency, ms */
  uint32_t frame_left; /* payload bytes of the current frame still to come */
  uint32_t frame_len;
  uint32_t peer_host;
  uint32_t dial;  /* the dial while connecting, else SIM_NONE */
  uint8_t hdr[6]; /* PM_FRAME_HEADER */
  uint8_t hdr_have;
  uint8_t frame_type;
  uint8_t flood_id_have;
  uint8_t state; /* enum sim_end_state */
  uint8_t peer_part;
  uint8_t up;       /* the node reported NEIGHBOR_UP (and not DOWN) */
  uint8_t stalled;  /* held at the cut: later packets queue behind */
  uint8_t peer_fin; /* the peer's FIN arrived: it sends nothing more */
  /* Then what is rarely needed. */
  uint32_t head, tail; /* packets held by the cut, SIM_NONE when none */
  uint32_t next_free;
  uint32_t peer_node;              /* for --trace-node and -vv */
  uint8_t flood_id[PM_MSG_ID_LEN]; /* a Flood's message ID, as it arrives */
} __attribute__((aligned(64))) sim_end;

typedef struct sim_dial {
  uint32_t next_free;
  char addr[SIM_ADDR_MAX];
} sim_dial;

typedef struct sim_msg {
  uint8_t id[PM_MSG_ID_LEN];
  uint64_t sent_at;
  uint32_t sender;
  uint32_t expected;
  uint32_t expected_same; /* sent during a cut: those on the sender's side */
  uint8_t during_cut;
  uint8_t sender_side;
} sim_msg;

typedef struct sim_churn_step {
  uint32_t victim; /* host */
  uint32_t joiner; /* host */
  uint8_t graceful;
} sim_churn_step;

typedef struct sim_counters {
  uint64_t events;
  uint64_t deliveries;     /* first deliveries to nodes that had to get it */
  uint64_t deliveries_all; /* first deliveries to any node */
  uint64_t duplicate_deliveries;
  uint64_t unknown_messages;
  uint64_t flood_frames, flood_bytes;
  uint64_t control_frames, control_bytes;
  uint64_t type_frames[128], type_bytes[128]; /* by frame type, for -v */
  uint64_t timer_events;
  uint64_t bytes_dropped;    /* sent to a closed end */
  uint64_t link_errors;      /* PM_EV_LINK_ERROR */
  uint64_t send_errors;      /* pm_node_send failures */
  uint64_t open_refused;     /* pm_node_link_open failures */
  uint64_t add_peer_refused; /* pm_node_add_peer failures (table full) */
  uint64_t dials, dial_failures, resolves;
  uint64_t timer_spins; /* deadline did not move past a handled timeout */
  uint64_t sim_errors;  /* outputs for links the simulator does not know */
  uint32_t max_neighbors_seen;
  uint64_t *lat_hist; /* by ms, the last bucket collects the rest */
  size_t lat_len;
  uint64_t *hop_hist;
  size_t hop_len;
} sim_counters;

/* Packets for another partition, written during a window (and the global
 * step after it), read by the receiver at the start of the next window. */
typedef struct sim_outbox {
  uint8_t *buf;
  size_t len, cap;
  size_t peak;    /* the most read at once since `reads` was last 0 */
  uint32_t reads; /* windows read */
} sim_outbox;

struct sim;

/* One partition: the nodes of its hosts and everything that only they
 * touch. Only its own thread uses it during a window; the global step uses
 * every partition while the threads wait. */
typedef struct sim_part {
  struct sim *s;
  uint32_t idx;
  uint64_t now;
  sim_evq q;
  sim_rng rng; /* latencies, jitter, loss, resolver answers */
  uint64_t trace;
  sim_counters c;
  uint32_t *msg_delivered; /* per message: deliveries counted in the ratio */
  uint32_t *msg_delivered_same;

  sim_end *ends;
  uint32_t ends_len, ends_cap, end_free, ends_in_use;
  sim_slab slab;
  sim_dial *dials;
  uint32_t dials_len, dials_cap, dial_free;
  uint32_t *stalled; /* end, generation: held by the cut */
  uint32_t nstalled, stalled_cap;
  uint32_t *started; /* nodes started this window, to register */
  uint32_t nstarted, started_cap;
  uint8_t *scratch; /* contiguous received bytes */
  size_t scratch_cap;

  sim_outbox *out; /* [to partition * 2 + window parity] */
  /* The node IDs of the partition's nodes' member and author tables, kept
   * once here instead of once per node (peermesh/idpool.h): a partition's
   * nodes never run at the same time. */
  pm_idpool *ids;
  pm_idpool *frames; /* and their payload caches' frames */
} sim_part;

typedef struct sim {
  const sim_opts *o;
  double loss;
  uint32_t nparts, nthreads;
  uint32_t lookahead; /* window length, ms */
  sim_part *parts;
  uint64_t now;    /* the global step's time */
  sim_heap gq;     /* the timeline */
  sim_rng rng;     /* scenario: node IDs, churn, senders, kills */
  uint64_t trace;  /* the timeline's events */
  uint64_t events; /* the timeline's events */
  uint64_t window; /* windows run; its parity picks the outboxes */

  sim_host *hosts;
  uint32_t nhosts, hosts_cap;
  sim_node *nodes;
  uint32_t nnodes, nodes_cap; /* node h is host h's first incarnation */
  uint32_t *live;             /* registered nodes, in no meaningful order */
  uint32_t nlive;
  uint8_t *delivered; /* per node, one bit per message */
  size_t bits_per_node;
  int cut; /* a partition is in force */

  sim_msg *msgs;
  uint32_t nmsgs;
  uint32_t *msg_slots; /* open addressing: message index + 1 */
  uint32_t msg_mask;
  uint64_t expected; /* deliveries that had to happen */

  /* timeline */
  uint64_t t0;       /* the message phase starts */
  uint64_t fault_at; /* for delivery_ratio_after_fault; SIM_NEVER if none */
  uint64_t heal_ref; /* heal_ms counts from here */
  uint64_t end_at;   /* the run stops after this */
  int64_t heal_ms;
  uint32_t *killed; /* hosts crashed by SIM_EV_KILL, for SIM_EV_RESTART */
  uint32_t nkilled;
  sim_churn_step *churn;
  uint32_t nchurn;

  uint32_t *uf; /* union-find scratch, one per node */
  double wall_start;

  /* threads: each window, a thread runs its own block of partitions, then
   * helps with the others' */
  pthread_t threads[SIM_MAX_THREADS];
  double busy_s[SIM_MAX_THREADS]; /* wall time running windows, for -v */
  _Atomic uint64_t *claimed;      /* per partition: the last window it ran */
  /* a barrier that spins a little before it sleeps */
  _Atomic uint32_t bar_count;
  _Atomic uint32_t bar_gen;
  pthread_mutex_t bar_mu;
  pthread_cond_t bar_cv;
  uint64_t win_end; /* the window being run ends before this */
  int done;
  double global_s; /* wall time of the global steps, for -v */
} sim;

/* ---- helpers shared by the modules (sim.c) ------------------------------ */
void *sim_xmalloc(size_t size);
void *sim_xcalloc(size_t count, size_t size);
void *sim_xrealloc(void *p, size_t size);
static inline void sim_trace_fold(uint64_t *t, uint64_t v) {
  uint64_t h = (*t ^ v) * 0x9E3779B97F4A7C15ull;
  *t = h ^ (h >> 29);
}
static inline void sim_trace(sim_part *p, uint64_t v) {
  sim_trace_fold(&p->trace, v);
}
/* Seconds of a monotonic wall clock, only for the report's wall_s. */
double sim_wall_now(void);
/* "127.a.b.c:7000" for host `h`, and its host part alone. */
void sim_host_addr(uint32_t h, char out[32]);
void sim_host_ip(uint32_t h, char out[32]);
/* The host an address names, or SIM_NONE. */
uint32_t sim_addr_host(const sim *s, const char *addr);
static inline int sim_node_alive(const sim *s, uint32_t n) {
  return n < s->nnodes && s->nodes[n].core != NULL;
}
static inline sim_part *sim_node_part(sim *s, uint32_t n) {
  return &s->parts[s->hosts[s->nodes[n].host].part];
}
/* Brings every partition's clock to the global step's time. */
void sim_global_clock(sim *s);

/* ---- net.c ------------------------------------------------------------- */
void sim_net_init(sim_part *p);
void sim_net_free(sim_part *p);
uint32_t sim_net_draw_latency(sim_part *p);
void sim_net_send(sim_part *p, uint32_t n, uint32_t link, const uint8_t *data,
                  size_t len);
void sim_net_close(sim_part *p, uint32_t n, uint32_t link);
void sim_net_dial(sim_part *p, uint32_t n, const char *addr);
void sim_net_on_packet(sim_part *p, uint32_t seg, uint32_t dst);
/* For prefetching: starts loading packet `seg`; later, its data (NULL and
 * 0 unless it is a segment of data). */
void sim_net_prefetch_packet(const sim_part *p, uint32_t seg);
const uint8_t *sim_net_packet_data(const sim_part *p, uint32_t seg,
                                   size_t *len);
void sim_net_on_release(sim_part *p, uint32_t end, uint32_t gen);
void sim_net_on_dial_fail(sim_part *p, uint32_t end, uint32_t gen);
/* Takes the packets other partitions sent to this one last window. */
void sim_net_merge(sim_part *p);
/* A process died: every end of node `n` is reset. */
void sim_net_crash(sim_part *p, uint32_t n);
/* The cut ended: held packets move again. */
void sim_net_cut_end(sim_part *p);
/* The end of node `n`'s link, or SIM_NONE. */
uint32_t sim_net_find(const sim_part *p, uint32_t n, uint32_t link);
/* The peer's end, when it is open and reports the neighbour up. */
int sim_net_peer_up(const sim *s, const sim_end *e);

/* ---- nodes.c ----------------------------------------------------------- */
/* Starts a new incarnation of host `h` as node `n` (from the host's
 * partition); with `restart`, it first learns the addresses of the previous
 * incarnation's neighbours. */
void sim_node_start(sim_part *p, uint32_t h, uint32_t n, int restart);
void sim_node_crash(sim_part *p, uint32_t n);
void sim_node_leave(sim_part *p, uint32_t n);
/* Drains node `n`'s events and outputs and re-arms its timer. Call after
 * every call into its core. */
void sim_pump(sim_part *p, uint32_t n);
void sim_on_timer(sim_part *p, uint32_t n, uint32_t gen);
void sim_on_resolve(sim_part *p, uint32_t n);
uint32_t sim_host_add(sim *s);
/* Registers the nodes the partitions started with the resolver. */
void sim_register_started(sim *s);
void sim_nodes_free(sim *s);

/* ---- scenario.c -------------------------------------------------------- */
int sim_scenario_parse(const char *name);
const char *sim_scenario_name(int scenario);
void sim_scenario_setup(sim *s);
/* Runs a timeline event at s->now, between two windows. */
void sim_scenario_event(sim *s, const sim_event *ev);

/* ---- metrics.c --------------------------------------------------------- */
void sim_metrics_init(sim *s);
void sim_metrics_free(sim *s);
/* Records a sent message; `id` from pm_node_send. */
void sim_msg_sent(sim *s, uint32_t sender, const uint8_t id[PM_MSG_ID_LEN]);
void sim_on_message(sim_part *p, uint32_t n, const pm_event *ev);
void sim_count_frames(sim_part *p, sim_end *e, const uint8_t *data, size_t len);
/* Prints the frames of a delivered segment (for --trace-node and -vv). */
void sim_debug_segment(sim_part *p, const sim_end *e, const uint8_t *data,
                       size_t len);
/* Connected components among live nodes over links both ends call up. */
uint32_t sim_components(sim *s);
/* Sum of a uint64_t counter over the partitions. */
uint64_t sim_sum_counter(const sim *s, size_t offset);
#define SIM_SUM(s, field) sim_sum_counter((s), offsetof(sim_counters, field))

#define SIM_METRICS_MAX 48

typedef struct sim_metric {
  const char *name;
  int kind; /* 0 integer, 1 real */
  double value;
} sim_metric;

typedef struct sim_result {
  const char *scenario;
  uint64_t seed;
  uint64_t trace_hash;
  sim_metric m[SIM_METRICS_MAX];
  int n;
} sim_result;

void sim_metrics_report(sim *s, sim_result *r);
void sim_result_print(const sim_result *r, uint64_t *repeat_hash);
/* The value of a metric by name; returns 0 when the run has none. */
int sim_result_get(const sim_result *r, const char *name, double *out);
/* Whether a metric name can ever appear in a report. */
int sim_metric_known(const char *name);

/* ---- sim.c ------------------------------------------------------------- */
/* Runs one simulation; fills `r`. Returns 0, or -1 on a setup error.
 * Without `teardown`, the memory is left for the process's exit to take
 * back (seconds for a big run), unless a sanitizer would call it a leak. */
int sim_run(const sim_opts *o, sim_result *r, int teardown);

#endif
