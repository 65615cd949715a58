#ifndef RAGD_UPSTREAM_PROBE_H
#define RAGD_UPSTREAM_PROBE_H

/* Reachability of the backend hosts (docs/internals/probe.md): is anything answering at
 * each URL? A cheap GET per host (Ollama's /api/version, an OpenAI-compatible server's
 * /v1/models) when probing starts and then every interval, plus the evidence of real calls
 * (probe_note). "Reached" means an HTTP response of any status came back; "down" means the
 * connection could not be made. It says nothing about a model's health: that is what the
 * breakers are for.
 *
 * Threads: loop thread only. No callbacks: owners read the state when they decide. */
#include <stdbool.h>
#include <stddef.h>

struct event_base;
typedef struct upstream_client upstream_client;
typedef struct probe probe;

typedef enum {
    PROBE_UNKNOWN, /* no evidence yet */
    PROBE_UP,      /* the last evidence was a response */
    PROBE_DOWN,    /* the last evidence was a failed connection */
} probe_state;

typedef struct {
    probe_state state;
    bool ever_reached;  /* some response came back from this host since start-up */
    double age_ms;      /* since the last evidence, -1 when none */
    unsigned long probes; /* probe calls finished */
    char error[160];    /* the last failure, "" when none */
} probe_host_info;

/* A probe of n URLs (copied) at path (e.g. "/api/version"), with an optional Authorization
 * header value (copied, never logged), every interval_ms, each call bounded by timeout_ms.
 * Nothing is sent before probe_start. NULL when out of memory. */
probe *probe_new(struct event_base *base, upstream_client *client, const char *const *urls, size_t n,
                 const char *path, const char *authorization, double interval_ms, double timeout_ms);
/* Cancels the calls in flight (no callbacks) and frees. NULL ok. */
void probe_free(probe *p);

/* Probes every host on the next loop turn, then every interval. */
void probe_start(probe *p);

/* Evidence from a real call to host i: reached (a response came back) or not (the
 * connection failed: error says how). */
void probe_note(probe *p, size_t i, bool reached, const char *error);

void probe_host_get(const probe *p, size_t i, probe_host_info *out);
/* Some host answered since start-up. */
bool probe_ever_reached(const probe *p);
/* Some host's last evidence is a response. */
bool probe_any_up(const probe *p);
const char *probe_state_name(probe_state s);

#endif
