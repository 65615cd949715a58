"""Known findings of the allocation torture pass that are not fixed yet.

Every entry is a bug that ships, with the fix it needs; the list should stay empty (the
eight findings of issue 6 in h_query.c and h_ingest.c are fixed). Remove an entry as soon
as its fix lands: an entry that no result matches during a full pass is reported as stale
and fails the pass.

A result of the pass matches an entry when all of these hold:
- its kind is in `kinds`;
- its origin (the innermost frame in src/ of the failed allocation's stack, allocator
  plumbing such as src/util/jsonmem.c and src/util/strbuf.c skipped) contains one of
  `origin` (when given);
- the stack contains every string of `stack` (when given);
- its detail contains one of `detail` (when given);
- its path is in `paths` (when given).
"""

KNOWN = []
