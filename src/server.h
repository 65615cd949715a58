#ifndef RAGD_SERVER_H
#define RAGD_SERVER_H

#include "config.h"

/* Runs the server until SIGTERM/SIGINT: opens the store, starts workers and the HTTP
 * server on one libevent loop, loads the vector index, then on a signal drains (readiness
 * 503, listener closed, in-flight requests finished within the grace period, queued writes
 * committed). Returns the process exit status: 0 after a clean shutdown. */
int server_run(const ragd_config *cfg);

#endif
