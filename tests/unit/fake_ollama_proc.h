#ifndef RAGD_TESTS_FAKE_OLLAMA_PROC_H
#define RAGD_TESTS_FAKE_OLLAMA_PROC_H

/* The fake Ollama (tools/fake_ollama) as a child process on loopback, for the unit tests
 * that call a backend (test_llm.c, test_engine.c). Header-only: each test binary is one
 * file. Run from the project's root (as make does). */
#include <signal.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/strbuf.h"

typedef struct {
    pid_t pid;
    char url[64];   /* the API */
    char admin[64]; /* the always-up admin port (faults, latency, reset) */
} fake;

/* Starts it and reads the ports it chose from its first line: 0, or -1. */
static int fake_start(fake *f)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    f->pid = fork();
    if (f->pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execlp("python3", "python3", "tools/fake_ollama/fake_ollama.py", "--port", "0", "--admin-port", "0",
               (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *in = fdopen(fds[0], "r");
    char line[256] = "";
    if (!in || !fgets(line, sizeof line, in))
        return -1;
    fclose(in);
    /* "fake_ollama listening on http://127.0.0.1:P admin http://127.0.0.1:Q" */
    return sscanf(line, "fake_ollama listening on %63s admin %63s", f->url, f->admin) == 2 ? 0 : -1;
}

static void fake_stop(fake *f)
{
    if (f->pid > 0) {
        kill(f->pid, SIGTERM);
        waitpid(f->pid, NULL, 0);
    }
}

/* A curl write callback into a strbuf. */
static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    strbuf_append(arg, p, size * n);
    return size * n;
}

#endif
