/* Reachability probes of the backend hosts. See probe.h and docs/internals/probe.md. */
#include "upstream/probe.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/admission.h"
#include "upstream/client.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/url.h"

#define PROBE_REPLY_CAP ((size_t)64 * 1024)

typedef struct {
    probe *p;
    size_t index;
    char *url; /* base URL */
    probe_state state;
    bool ever_reached;
    double last_ms; /* when the last evidence came, 0 when none */
    unsigned long probes;
    char error[160];
    upstream_call *call; /* the probe in flight, or NULL */
} probe_host;

struct probe {
    struct event_base *base;
    upstream_client *client;
    char *path;
    char *authorization;
    double interval_ms;
    double timeout_ms;
    struct event *timer;
    probe_host *hosts;
    size_t n;
};

const char *probe_state_name(probe_state s)
{
    switch (s) {
    case PROBE_UP: return "up";
    case PROBE_DOWN: return "down";
    case PROBE_UNKNOWN: break;
    }
    return "unknown";
}

static void probe_set(probe_host *h, bool reached, const char *error)
{
    probe_state was = h->state;
    h->state = reached ? PROBE_UP : PROBE_DOWN;
    h->last_ms = clock_now_ms();
    if (reached) {
        h->ever_reached = true;
        h->error[0] = '\0';
    } else {
        snprintf(h->error, sizeof h->error, "%s", error && *error ? error : "cannot connect");
    }
    if (was != h->state) {
        char shown[600];
        url_redact(h->url, shown, sizeof shown);
        log_info("upstream: %s is %s%s%s", shown, reached ? "reachable" : "unreachable", reached ? "" : ": ",
                 reached ? "" : h->error);
    }
}

static int probe_on_data(const char *p, size_t n, void *arg)
{
    (void)p;
    (void)n;
    (void)arg;
    return 0; /* the body does not matter: that it came does */
}

static void probe_on_done(const upstream_result *r, void *arg)
{
    probe_host *h = arg;
    h->call = NULL;
    h->probes++;
    if (r->status > 0)
        probe_set(h, true, NULL);
    else if (r->transport == UPSTREAM_T_CONNECT || r->transport == UPSTREAM_T_RESET)
        probe_set(h, false, r->message);
    else /* connected, then silent: up, but not answering in time */
        probe_set(h, true, NULL);
}

static void probe_send(probe *p, probe_host *h)
{
    if (h->call)
        return;
    char url[1200];
    snprintf(url, sizeof url, "%s%s", h->url, p->path);
    upstream_request req = {.url = url,
                            .authorization = p->authorization,
                            .connect_timeout_ms = (long)p->timeout_ms,
                            .ttfb_timeout_ms = (long)p->timeout_ms,
                            .idle_timeout_ms = (long)p->timeout_ms,
                            .total_timeout_ms = (long)p->timeout_ms,
                            .max_response_bytes = PROBE_REPLY_CAP,
                            .on_data = probe_on_data,
                            .on_done = probe_on_done,
                            .arg = h};
    h->call = upstream_start(p->client, &req);
}

static void probe_arm(probe *p, double ms)
{
    admission_arm_timer(p->timer, ms);
}

static void probe_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    probe *p = arg;
    for (size_t i = 0; i < p->n; i++)
        probe_send(p, &p->hosts[i]);
    probe_arm(p, p->interval_ms);
}

probe *probe_new(struct event_base *base, upstream_client *client, const char *const *urls, size_t n,
                 const char *path, const char *authorization, double interval_ms, double timeout_ms)
{
    probe *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->base = base;
    p->client = client;
    p->interval_ms = interval_ms > 10 ? interval_ms : 10;
    p->timeout_ms = timeout_ms > 1 ? timeout_ms : 1;
    p->path = strdup(path);
    p->authorization = authorization ? strdup(authorization) : NULL;
    p->timer = evtimer_new(base, probe_on_timer, p);
    p->hosts = calloc(n ? n : 1, sizeof *p->hosts);
    bool ok = p->path && p->timer && p->hosts && (!authorization || p->authorization);
    for (size_t i = 0; ok && i < n; i++) {
        p->hosts[i] = (probe_host){.p = p, .index = i, .url = strdup(urls[i])};
        p->n = i + 1;
        ok = p->hosts[i].url != NULL;
    }
    if (!ok) {
        probe_free(p);
        return NULL;
    }
    return p;
}

void probe_free(probe *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        upstream_cancel(p->hosts[i].call);
        free(p->hosts[i].url);
    }
    if (p->timer)
        event_free(p->timer);
    free(p->hosts);
    free(p->path);
    free(p->authorization);
    free(p);
}

void probe_start(probe *p) { probe_arm(p, 0); }

void probe_note(probe *p, size_t i, bool reached, const char *error)
{
    if (i < p->n)
        probe_set(&p->hosts[i], reached, error);
}

void probe_host_get(const probe *p, size_t i, probe_host_info *out)
{
    memset(out, 0, sizeof *out);
    out->age_ms = -1;
    if (i >= p->n)
        return;
    const probe_host *h = &p->hosts[i];
    out->state = h->state;
    out->ever_reached = h->ever_reached;
    out->age_ms = h->last_ms > 0 ? clock_now_ms() - h->last_ms : -1;
    out->probes = h->probes;
    snprintf(out->error, sizeof out->error, "%s", h->error);
}

bool probe_ever_reached(const probe *p)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->hosts[i].ever_reached)
            return true;
    return false;
}

bool probe_any_up(const probe *p)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->hosts[i].state == PROBE_UP)
            return true;
    return false;
}
