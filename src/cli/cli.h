#ifndef RAGD_CLI_CLI_H
#define RAGD_CLI_CLI_H

#include <stdio.h>

#ifndef RAGD_VERSION
#define RAGD_VERSION "0.1.0"
#endif

/* Runs a client command: argv[0] is the command name ("ingest", "query", "dbs", "health",
 * "version"). Returns the process exit status. */
int cli_main(int argc, char **argv);
/* Prints the top-level usage (all commands, including "serve") to f. */
void cli_usage(FILE *f);

#endif
