#!/bin/sh
# check_wraps.sh LIB WRAPPED... — fails when server code in LIB calls an allocating libc
# function that the torture build does not redirect to tests/torture/fault.c (-Wl,--wrap),
# so that a new kind of allocation call cannot silently escape the torture pass.
# The command-line client (src/cli/) never runs inside the server and is not checked.
set -eu
lib=$1
shift
wrapped=" $* "
# glibc functions that return memory the caller frees (or allocate a FILE/DIR for it).
allocating="malloc calloc realloc reallocarray strdup strndup asprintf vasprintf aligned_alloc
posix_memalign memalign valloc pvalloc getline getdelim open_memstream fmemopen realpath
wcsdup scandir tempnam get_current_dir_name canonicalize_file_name"
bad=$(nm -A -u "$lib" 2>/dev/null | grep -v '/cli_\|:cli_' | awk '{print $NF}' | sort -u | while read -r sym; do
    for a in $allocating; do
        if [ "$sym" = "$a" ] && [ "${wrapped#* $a }" = "$wrapped" ]; then echo "$sym"; fi
    done
done)
if [ -n "$bad" ]; then
    echo "check_wraps: server code calls allocating functions the torture build does not hook:" $bad >&2
    echo "check_wraps: add them to TORTURE_WRAP (Makefile) and tests/torture/fault.c" >&2
    exit 1
fi
