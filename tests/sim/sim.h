/* peermesh-sim: a deterministic simulator of many peermesh nodes.
 *
 * One process, one thread, a virtual clock in milliseconds. Every node is a
 * pm_node core (runtime/include/peermesh/node.h) driven only through its
 * public API; the simulator plays the network (TCP connections with latency,
 * jitter, retransmission delays and partitions), the resolver and the
 * scenario (crashes, leaves, joins, restarts). A run is a function of its
 * options and seed: trace_hash folds every processed event, so two runs with
 * the same seed must print the same hash.
 *
 * Modules: evq (event queue), net (network model), nodes (node lifecycle,
 * draining outputs and events, resolver), scenario (timeline and faults),
 * metrics (deliveries, counters, components, report), main (options). This
 * header holds the state they share. */
#ifndef SIM_SIM_H
#define SIM_SIM_H

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
#define SIM_SEG_INLINE 136   /* segment bytes stored without a malloc */
#define SIM_MSS 1460         /* larger writes are cut into segments */

enum sim_scenario {
  SIM_STEADY,
  SIM_KILL30,
  SIM_PARTITION,
  SIM_CHURN,
  SIM_LOSSY,
  SIM_RESTART,
};

enum sim_event_kind {
  SIM_EV_TIMER = 1,   /* a = node, b = timer generation */
  SIM_EV_SEG,         /* a = connection, b = direction */
  SIM_EV_DIAL_ARRIVE, /* a = dial */
  SIM_EV_DIAL_FAIL,   /* a = dial */
  SIM_EV_RESOLVE,     /* a = node */
  SIM_EV_START,       /* a = host, b = 1 for a restart */
  SIM_EV_SEND,        /* a = message number */
  SIM_EV_KILL,        /* crash a fraction of the nodes */
  SIM_EV_CUT_START,
  SIM_EV_CUT_END,
  SIM_EV_CHURN,   /* a = churn step */
  SIM_EV_RESTART, /* restart every host crashed by SIM_EV_KILL */
  SIM_EV_SAMPLE,  /* check whether the live nodes are one component */
  SIM_EV_PROGRESS,
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
  int verbose;
} sim_opts;

/* A host is an address and a node ID; a node (below) is one incarnation of a
 * host, one pm_node from its start to its crash or leave. A restart is a new
 * node on the same host. */
typedef struct sim_host {
  uint8_t id[PM_NODE_ID_LEN];
  uint32_t node;        /* current or last incarnation, SIM_NONE before */
  uint64_t planned_end; /* when its next incarnation will go, if planned */
  uint8_t side;         /* partition half */
} sim_host;

/* One open end of a connection, kept with the node so that finding the
 * connection of a link touches one small array. */
typedef struct sim_nconn {
  uint32_t link;
  uint32_t conn;
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
  uint32_t live_pos; /* index in sim.live, SIM_NONE when gone */
  sim_nconn *conns;  /* connections with an open end at this node */
  uint16_t nconns, conns_cap;
  uint16_t nbrs; /* neighbours, from NEIGHBOR_UP/DOWN events */
  uint8_t nprev, prev_pos;
  uint32_t prev[SIM_PREV_NEIGHBORS]; /* hosts of recent neighbours */
} sim_node;

/* One TCP segment (or a FIN / RST marker) travelling in one direction. */
typedef struct sim_seg {
  uint64_t arrival;
  uint32_t next;
  uint32_t len;
  uint8_t fin;
  uint8_t *ext; /* the bytes when len > SIM_SEG_INLINE */
  uint8_t data[SIM_SEG_INLINE];
} sim_seg;

/* One direction of a connection: a FIFO of segments (TCP never reorders),
 * and the state of the frame counter reading the delivered byte stream. */
typedef struct sim_dir {
  uint64_t last_arrival;
  uint32_t head, tail;
  uint32_t frame_left; /* payload bytes of the current frame still to come */
  uint32_t frame_len;
  uint8_t hdr[6]; /* PM_FRAME_HEADER */
  uint8_t hdr_have;
  uint8_t flood_id[32]; /* a Flood's message ID, as it arrives */
  uint8_t flood_id_have;
  uint8_t frame_type;
  uint8_t pending; /* a SIM_EV_SEG is scheduled (or running) */
  uint8_t stalled; /* held at a partition */
} sim_dir;

/* A connection: end 0 dialled, end 1 accepted; dir[i] carries what end i
 * sends. */
typedef struct sim_conn {
  uint32_t node[2];
  uint32_t link[2];
  uint32_t lat; /* one-way base latency, ms */
  uint32_t next_free;
  uint8_t in_use;
  uint8_t open[2]; /* the end's core still has the link */
  uint8_t up[2];   /* the end reported NEIGHBOR_UP (and not DOWN) */
  sim_dir dir[2];
} sim_conn;

typedef struct sim_dial {
  uint64_t started;
  uint32_t dialer;
  uint32_t host; /* target host, SIM_NONE for an address nobody has */
  uint32_t lat;
  uint32_t next_free;
  char addr[SIM_ADDR_MAX];
} sim_dial;

typedef struct sim_msg {
  uint8_t id[PM_MSG_ID_LEN];
  uint64_t sent_at;
  uint32_t sender;
  uint32_t expected;
  uint32_t delivered;
  uint32_t expected_same; /* sent during a cut: those on the sender's side */
  uint32_t delivered_same;
  uint8_t during_cut;
} sim_msg;

typedef struct sim_churn_step {
  uint32_t victim; /* host */
  uint32_t joiner; /* host */
  uint8_t graceful;
} sim_churn_step;

typedef struct sim_counters {
  uint64_t events;
  uint64_t deliveries;     /* first deliveries to nodes that had to get it */
  uint64_t expected;       /* deliveries that had to happen */
  uint64_t deliveries_all; /* first deliveries to any node */
  uint64_t duplicate_deliveries;
  uint64_t unknown_messages;
  uint64_t flood_frames, flood_bytes;
  uint64_t control_frames, control_bytes;
  uint64_t bytes_dropped;    /* in flight to or from a crashed node */
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

typedef struct sim {
  const sim_opts *o;
  double loss;
  uint64_t now;
  sim_evq q;
  sim_rng rng;     /* scenario, node IDs, senders, resolver answers */
  sim_rng net_rng; /* latencies, jitter, loss */
  uint64_t trace;

  sim_host *hosts;
  uint32_t nhosts, hosts_cap;
  sim_node *nodes;
  uint32_t nnodes, nodes_cap;
  uint32_t *live; /* nodes running, in no meaningful order */
  uint32_t nlive;
  uint8_t *delivered; /* per node, one bit per message */
  size_t bits_per_node;

  sim_conn *conns;
  uint32_t conns_len, conns_cap, conn_free, conns_in_use;
  sim_seg *segs;
  uint32_t segs_len, segs_cap, seg_free;
  sim_dial *dials;
  uint32_t dials_len, dials_cap, dial_free;
  uint32_t *stalled; /* conn * 2 + dir held by the partition */
  uint32_t nstalled, stalled_cap;
  int cut; /* a partition is in force */

  sim_msg *msgs;
  uint32_t nmsgs;
  uint32_t *msg_slots; /* open addressing: message index + 1 */
  uint32_t msg_mask;

  /* timeline */
  uint64_t t0;       /* the message phase starts */
  uint64_t fault_at; /* for delivery_ratio_after_fault; SIM_NEVER if none */
  uint64_t heal_ref; /* heal_ms counts from here */
  uint64_t end_at;   /* the run stops after this */
  int64_t heal_ms;
  int comps_dirty;
  uint32_t *killed; /* hosts crashed by SIM_EV_KILL, for SIM_EV_RESTART */
  uint32_t nkilled;
  sim_churn_step *churn;
  uint32_t nchurn;

  sim_counters c;
  uint32_t *uf; /* union-find scratch, one per node */
  double wall_start;
} sim;

/* ---- helpers shared by the modules (sim.c) ------------------------------ */
void *sim_xmalloc(size_t size);
void *sim_xcalloc(size_t count, size_t size);
void *sim_xrealloc(void *p, size_t size);
void sim_trace(sim *s, uint64_t v);
/* Seconds of a monotonic wall clock, only for the report's wall_s. */
double sim_wall_now(void);
/* "127.a.b.c:7000" for host `h`, and its host part alone. */
void sim_host_addr(uint32_t h, char out[32]);
void sim_host_ip(uint32_t h, char out[32]);
/* The host an address names, or SIM_NONE. */
uint32_t sim_addr_host(const sim *s, const char *addr);
int sim_node_alive(const sim *s, uint32_t n);

/* ---- net.c ------------------------------------------------------------- */
void sim_net_init(sim *s);
void sim_net_free(sim *s);
uint32_t sim_net_draw_latency(sim *s);
void sim_net_send(sim *s, uint32_t n, uint32_t link, const uint8_t *data,
                  size_t len);
void sim_net_close(sim *s, uint32_t n, uint32_t link);
void sim_net_dial(sim *s, uint32_t n, const char *addr);
void sim_net_on_dial_arrive(sim *s, uint32_t dial);
void sim_net_on_dial_fail(sim *s, uint32_t dial);
void sim_net_on_seg(sim *s, uint32_t conn, uint32_t dir);
/* A process died: every connection of node `n` is reset. */
void sim_net_crash(sim *s, uint32_t n);
void sim_net_cut_end(sim *s);
/* The connection and end of node `n`'s link, or SIM_NONE. */
uint32_t sim_net_find(const sim *s, uint32_t n, uint32_t link, int *end);

/* ---- nodes.c ----------------------------------------------------------- */
/* Starts a new incarnation of host `h`; with `restart`, it first learns the
 * addresses of the previous incarnation's neighbours. Returns the node. */
uint32_t sim_node_start(sim *s, uint32_t h, int restart);
void sim_node_crash(sim *s, uint32_t n);
void sim_node_leave(sim *s, uint32_t n);
/* Drains node `n`'s events and outputs and re-arms its timer. Call after
 * every call into its core. */
void sim_pump(sim *s, uint32_t n);
void sim_on_timer(sim *s, uint32_t n, uint32_t gen);
void sim_on_resolve(sim *s, uint32_t n);
uint32_t sim_host_add(sim *s);
void sim_nodes_free(sim *s);

/* ---- scenario.c -------------------------------------------------------- */
int sim_scenario_parse(const char *name);
const char *sim_scenario_name(int scenario);
void sim_scenario_setup(sim *s);
void sim_scenario_event(sim *s, const sim_event *ev);

/* ---- metrics.c --------------------------------------------------------- */
void sim_metrics_init(sim *s);
void sim_metrics_free(sim *s);
/* Records a sent message; `id` from pm_node_send. */
void sim_msg_sent(sim *s, uint32_t sender, const uint8_t id[PM_MSG_ID_LEN]);
void sim_on_message(sim *s, uint32_t n, const pm_event *ev);
void sim_count_frames(sim *s, sim_dir *d, const uint8_t *p, size_t len);
/* Prints the frames of a delivered segment (for --trace-node and -vv). */
void sim_debug_segment(sim *s, uint32_t ci, uint32_t di, const uint8_t *p,
                       size_t len);
/* Connected components among live nodes over links both ends call up. */
uint32_t sim_components(sim *s);

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
/* Runs one simulation; fills `r`. Returns 0, or -1 on a setup error. */
int sim_run(const sim_opts *o, sim_result *r);

#endif
