"""Known findings of the allocation torture pass that are not fixed yet.

Every entry is a bug that ships. They are here only because the files they are in
(src/http/h_query.c, src/http/h_ingest.c) are being rewritten by someone else right now;
each names the fix. Remove an entry as soon as its fix lands: an entry that no result
matches during a full pass is reported as stale and fails the pass.

A result of the pass matches an entry when all of these hold:
- its kind is in `kinds`;
- its origin (the innermost frame in src/ of the failed allocation's stack, allocator
  plumbing such as src/util/jsonmem.c and src/util/strbuf.c skipped) contains one of
  `origin` (when given);
- the stack contains every string of `stack` (when given);
- its detail contains one of `detail` (when given);
- its path is in `paths` (when given).
"""

QUERY_PATHS = ("retrieve", "query", "query_stream")
INGEST_PATHS = ("ingest_json", "ingest_raw", "ingest_replace", "ingest_new_db")

KNOWN = [
    {
        "id": "Q1-results-json",
        "file": "src/http/h_query.c",
        "what": "query_results_json() and query_source_json() ignore jansson failures: "
                "json_array_append_new(list, NULL) appends nothing, so documents/metadatas/"
                "distances/sources come back shorter than the hits (or missing, when json_pack "
                "of the whole object fails) in a 200; handlers_metadata() returning NULL for no "
                "memory is dropped the same way.",
        "fix": "check every json_string/json_real/handlers_metadata/query_source_json result "
               "and every append; on failure return NULL, so that the caller's "
               "http_reply_json(NULL) answers 503 overloaded.",
        "kinds": ("wrong_200",),
        "origin": ("query_results_json", "query_source_json", "handlers_metadata"),
        "stack": ("query_results_json",),
        "paths": QUERY_PATHS,
    },
    {
        "id": "Q2-retrieve-fields",
        "file": "src/http/h_query.c",
        "what": "query_answer_job() (retrieve) ignores json_object_set_new failures for "
                "timings_ms, request_id, degraded and degraded_reason: a 200 without them.",
        "fix": "check the results (or build the object with one json_pack) and reply 503 on failure.",
        "kinds": ("wrong_200",),
        "origin": ("query_answer_job",),
        "paths": QUERY_PATHS,
    },
    {
        "id": "Q3-complete-fields",
        "file": "src/http/h_query.c",
        "what": "query_complete() ignores json_object_set_new failures for answer, provider, "
                "model, cached, degraded, degraded_reason, timings_ms, request_id: a 200 (or a "
                "'done' event) without them.",
        "fix": "check the results; make query_complete return false and have query_send reply 503.",
        "kinds": ("wrong_200",),
        "origin": ("query_complete",),
        "paths": QUERY_PATHS,
    },
    {
        "id": "Q4-answer-null",
        "file": "src/http/h_query.c",
        "what": "query_answer() returns NULL when extractive_answer(), its calloc or strdup run "
                "out of memory, and query_answer_job() sends a 200 with \"answer\": null.",
        "fix": "when fallback is NULL and res.n > 0, reply 503 overloaded instead of answering.",
        "kinds": ("wrong_200",),
        "detail": ("answer: null", "text: null"),
        "stack": ("query_answer src/http/h_query.c",),
        "paths": QUERY_PATHS,
    },
    {
        "id": "Q5-sse-body",
        "file": "src/http/h_query.c",
        "what": "query_reply_stream()/query_sse_event() ignore failures: a json_pack or "
                "json_dumps that fails becomes 'data: {}', a failed strbuf_appendf drops a whole "
                "event, and a failed strbuf_detach sends an empty 200 stream.",
        "fix": "check each step and reply 503 overloaded when the body cannot be built (nothing "
               "has been sent yet: the extractive stream is one buffer).",
        "kinds": ("wrong_200",),
        "origin": ("query_sse_event", "query_reply_stream"),
        "paths": ("query_stream",),
    },
    {
        "id": "I1-collection-500",
        "file": "src/http/h_ingest.c",
        "what": "ingest_work() answers 500 internal 'reading collection failed: out of memory' "
                "when store_collection_get() returns RAGD_ENOMEM (SQLite out of memory).",
        "fix": "map RAGD_ENOMEM to 503 overloaded (as handlers_collection() in h_common.c now does).",
        "kinds": ("bad_status",),
        "detail": ("500 internal: reading collection failed: out of memory",),
        "stack": ("ingest_work",),
        "paths": INGEST_PATHS,
    },
    {
        "id": "I2-ack-after-commit",
        "file": "src/http/h_ingest.c",
        "what": "ingest_done() builds the 200 body with jansson after the write committed; when "
                "that fails the client gets 503 (before this pass: 500) for a document that is "
                "stored, or a 200 whose ids list is short.",
        "fix": "build the acknowledgement without allocating after the commit (snprintf into a "
               "buffer sized from the ids, allocated before store_submit), or allocate it before "
               "submitting and only fill in the counts in ingest_done.",
        "kinds": ("inconsistent", "wrong_200"),
        "stack": ("ingest_done",),
        "paths": INGEST_PATHS,
    },
    {
        "id": "I3-metadata-source",
        "file": "src/http/h_ingest.c",
        "what": "ingest_metadata() ignores a failed json_object_set_new(m, \"source\", "
                "json_string(source)): the document is acknowledged and stored without "
                "metadata.source (a filter on source no longer finds it).",
        "fix": "check the json_string and json_object_set_new results and return NULL (the caller "
               "already answers 503 for a NULL metadata).",
        "kinds": ("inconsistent",),
        "origin": ("ingest_metadata",),
        "paths": ("ingest_raw",),
    },
]
