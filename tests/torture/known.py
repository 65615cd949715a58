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

An entry marked `persistent_only` is a finding of persistent mode (every allocation from the
Nth on fails), which a one-shot full pass cannot reach: it is never reported as stale.
"""

KNOWN = [
    {
        "id": "H1-read-buffer",
        "file": "src/http/conn.c",
        "what": "With every allocation failing from the Nth on, libevent 2.1 cannot grow a "
                "connection's input buffer (evbuffer_expand_fast_ in evbuffer_read): the "
                "request is never read, and the client sees its connection reset instead of "
                "the fixed 503. The server stays up and answers again once memory returns. "
                "Reached by the 1-in-7 persistent sample since the output budget added one "
                "allocation per connection (main reached it at N=7 before, unsampled). "
                "Seen both ways: mostly the connection is reset (no_response); in a fresh "
                "Debian root (fresh-check, 2026-12-04) the same failed growth in evbuffer_read "
                "left the request unread and unanswered for the torture's 10 s (hang).",
        "fix": "tell libevent's failed buffer growth from a real end of stream (it reaches the "
               "event callback as EOF or is retried as EAGAIN, not as ENOMEM: a first attempt "
               "that answered the fixed 503 on EOF with bytes pending did not catch it) — or "
               "read the socket into a buffer of ragd's own, allocated with the connection.",
        "kinds": ("no_response", "hang"),
        "stack": ("evbuffer_read",),
        "persistent_only": True,
    },
]
