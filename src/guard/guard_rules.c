/* L1 of the prompt-injection screen (docs/internals/guard.md): PCRE2 rules over the
 * normalised (case-folded) text. Compiled once by guard_rules_init (JIT when available);
 * read-only afterwards, so any thread may match: each call makes its own match data.
 * Every rule sets the score to 1.0, so each must stay near zero false positives on the
 * benign rows (make guard-eval counts them per rule). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "guard/guard_int.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on one match: backtracking steps and nesting depth. */
#define RULES_MATCH_LIMIT 200000
#define RULES_DEPTH_LIMIT 2000

typedef struct {
    const char *name;
    const char *pattern;
} rule_def;

/* The text is folded to lower case with blanks collapsed; matching is byte-wise. */
static const rule_def rules_defs[] = {
    {"override_previous_instructions",
     "\\b(?:ignore|disregard|forget|neglect|overlook|skip|override|bypass|drop)\\s+(?:all\\s+|any\\s+|every\\s+)?"
     "(?:of\\s+)?(?:the\\s+|your\\s+|my\\s+|these\\s+|those\\s+|its\\s+)?(?:previous|above|prior|preceding|earlier|"
     "initial|original|former|foregoing|system)\\s+(?:\\w+\\s+)?(?:instructions?|prompts?|directions?|directives?|"
     "commands?|rules|guidelines|context|messages?|orders)\\b"},
    {"override_everything_told",
     "\\b(?:ignore|disregard|forget|overlook|neglect)\\s+(?:all\\s+|everything\\s+|anything\\s+)?(?:that\\s+|what\\s+)?"
     "you(?:'ve|\\s+have|\\s+were|\\s+had)?\\s+(?:been\\s+|were\\s+)?(?:told|instructed|given|taught|programmed)\\b|"
     "\\b(?:ignore|disregard|forget)\\s+(?:all\\s+)?(?:of\\s+)?(?:the|everything)\\s+above(?:\\s+(?:and|instructions?|"
     "directions?|prompts?|text|messages?)\\b|\\s*[.,:;!]|\\s*$)"},
    {"override_ignore_content",
     "\\b(?:ignore|disregard|forget)\\s+(?:the|this|that|all|any|these)\\s+(?:above\\s+|previous\\s+|preceding\\s+)?"
     "(?:webpage|web\\s+page|website|document|e-?mail|resume|cv|text|content|article|page|file|context|function|code|"
     "paper|table|review|message|passage|data|question|task|summary|input|conversation)s?\\s*(?:above\\s*)?"
     "(?:and|[,;:-])\\s+(?:instead\\s+)?(?:(?:we|you)\\s+(?:might|should|must|will)\\s+)?(?:state|say|respond|reply|"
     "answer|tell|claim|write|output|print|insist|report|summarize|translate|recommend)\\b"},
    {"override_you_are_now",
     "\\byou\\s+are\\s+now\\s+(?:dan\\b|in\\s+(?:\\w+\\s+)?(?:developer|dan|god|jailbreak|unrestricted|evil|"
     "debug|admin)\\s+mode|an?\\s+(?:unrestricted|unfiltered|uncensored|evil|jailbroken|rogue|free)\\b|free\\s+"
     "(?:from|of)\\b|no\\s+longer\\s+(?:bound|restricted|an?\\s+(?:ai|assistant|language\\s+model)|chatgpt)|"
     "(?:going\\s+to\\s+)?(?:act|acting|pretend|pretending)\\s+(?:as|to\\s+be)\\b)"},
    {"override_new_instructions",
     "(?:^|[\\n.!:>\"'])\\s*(?:your\\s+)?(?:new|updated|revised|real|actual)\\s+(?:system\\s+)?instructions?"
     "\\s*(?:are\\s*)?:(?!\\s*(?:where|what|how|when|why|which|who|is|are|do|does|can)\\b)"},
    {"override_from_now_on",
     "\\bfrom\\s+now\\s+on,?\\s+(?:you|your)\\s+(?!(?:will\\s+|must\\s+)?(?:need|have)\\s+to\\s+(?:use|call|pass|run|"
     "install|set|upgrade|import|specify|add|configure|enable|update)\\b)(?:are|will|must|shall|should|can|have\\s+to|"
     "need\\s+to|act|respond|answer|reply|only|always|never)\\b"},
    {"role_template_token",
     "<\\|(?:im_start|im_end|system|user|assistant|endoftext|begin_of_text|start_header_id|end_header_id|"
     "eot_id)\\|>|\\[/?inst\\]|<<\\s*/?sys\\s*>>|</s>\\s*(?:<s>\\s*)?(?:\\[inst\\]|<\\||system\\s*:)"},
    {"role_template_heading",
     "(?:^|\\n)\\s*#{2,}\\s*(?:system|new\\s+instructions?)\\s*(?:prompt\\s*)?:"},
    {"role_system_line",
     "(?:^|\\n)\\s*\\[?system\\]?\\s*:\\s*(?:you\\s+(?:are|must|will|should)|ignore|disregard|forget|new\\s+"
     "instructions?|from\\s+now\\s+on|the\\s+assistant\\s+(?:must|will|should|is)|always|never|do\\s+not|"
     "don't|override|reveal)\\b"},
    {"extract_system_prompt",
     "\\b(?:reveal|print|repeat|show|output|display|tell|give|write\\s+out|leak|dump|disclose|share|recite|"
     "echo|spell\\s+out|what\\s+(?:is|are|was|were))\\s+(?:me\\s+|us\\s+)?(?:all\\s+|back\\s+)?(?:of\\s+)?"
     "(?:your\\s+(?:(?:initial|original|hidden|secret|full|entire|exact|complete|system|internal|previous|"
     "above|first)\\s+)*(?:system\\s+prompt|prompts?|instructions|system\\s+message|directives|guidelines|"
     "rules|configuration)(?!\\s*(?:template|variable|string|format|file|field|setting|option|in\\s+(?:bash|zsh|"
     "fish|the\\s+(?:terminal|shell|config))))|(?:the|your)\\s+(?:(?:initial|original|hidden|secret|full|entire|exact|complete|"
     "internal)\\s+)+(?:system\\s+)?(?:prompt|instructions|system\\s+message)(?!\\s*(?:template|variable|string|format|"
     "file|field|setting|option))|(?:all\\s+|everything\\s+|the\\s+"
     "(?:text|words|content|instructions|lines|message)\\s+)(?:written\\s+|that\\s+(?:is|was|came)\\s+)?"
     "(?:above|before\\s+this)\\b(?!\\s+(?:the|a|an|this|that|it|each|every|line|lines|certain|my|your)\\b))"},
    {"markdown_image_exfiltration",
     "!\\[[^\\]\\n]{0,200}\\]\\(\\s*<?https?://[^\\s)]{1,300}\\?[^\\s)]{0,300}=(?:[^\\s)&]*[{}\\[\\]$<]|"
     "(?!data:)[^\\s)&]{40,})"},
};

#define RULES_N (sizeof rules_defs / sizeof rules_defs[0])

static pcre2_code *rules_code[RULES_N];
/* Every rule as one alternation, (?:r1)|(?:r2)|…: the prefilter of guard_rules_first. NULL
 * when it could not be built (the rules then run one by one, as without it). */
static pcre2_code *rules_any;
static pcre2_match_context *rules_mctx;
static bool rules_ready;

/* Compiles the alternation of all rules into rules_any (left NULL on any failure). */
static void rules_any_init(void)
{
    size_t len = 1;
    for (size_t i = 0; i < RULES_N; i++)
        len += strlen(rules_defs[i].pattern) + 6; /* "(?:" ")" "|" */
    char *pat = malloc(len);
    if (!pat)
        return;
    size_t at = 0;
    for (size_t i = 0; i < RULES_N; i++)
        at += (size_t)snprintf(pat + at, len - at, "%s(?:%s)", i ? "|" : "", rules_defs[i].pattern);
    int errcode;
    PCRE2_SIZE erroff;
    rules_any = pcre2_compile((PCRE2_SPTR)pat, at, PCRE2_CASELESS, &errcode, &erroff, NULL);
    if (rules_any)
        (void)pcre2_jit_compile(rules_any, PCRE2_JIT_COMPLETE);
    free(pat);
}

ragd_err guard_rules_init(void)
{
    if (rules_ready)
        return RAGD_OK;
    rules_mctx = pcre2_match_context_create(NULL);
    if (!rules_mctx)
        return RAGD_ENOMEM;
    pcre2_set_match_limit(rules_mctx, RULES_MATCH_LIMIT);
    pcre2_set_depth_limit(rules_mctx, RULES_DEPTH_LIMIT);
    for (size_t i = 0; i < RULES_N; i++) {
        int errcode;
        PCRE2_SIZE erroff;
        rules_code[i] = pcre2_compile((PCRE2_SPTR)rules_defs[i].pattern, PCRE2_ZERO_TERMINATED,
                                      PCRE2_CASELESS, &errcode, &erroff, NULL);
        if (!rules_code[i]) {
            guard_rules_shutdown();
            return RAGD_EINVAL;
        }
        (void)pcre2_jit_compile(rules_code[i], PCRE2_JIT_COMPLETE); /* interpreter otherwise */
    }
    rules_any_init();
    rules_ready = true;
    return RAGD_OK;
}

void guard_rules_shutdown(void)
{
    for (size_t i = 0; i < RULES_N; i++) {
        pcre2_code_free(rules_code[i]);
        rules_code[i] = NULL;
    }
    pcre2_code_free(rules_any);
    rules_any = NULL;
    pcre2_match_context_free(rules_mctx);
    rules_mctx = NULL;
    rules_ready = false;
}

/* Whether rule i matches, with caller-provided match data. */
static bool rules_match(size_t i, const char *text, size_t len, pcre2_match_data *md)
{
    int rc = pcre2_match(rules_code[i], (PCRE2_SPTR)text, len, 0, 0, md, rules_mctx);
    return rc >= 0; /* no match, or a limit reached: not a match */
}

ragd_err guard_rules_first(const char *text, size_t len, const char **rule)
{
    *rule = NULL;
    if (!rules_ready)
        return RAGD_EINVAL;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md)
        return RAGD_ENOMEM;
    /* One scan for all rules first. A completed scan without a match proves that no rule
     * matches anywhere (no rule has a backreference, all share the options), which is the
     * verdict for almost every text; a match, or a limit reached, falls back to the rules
     * in order, so the first matching rule and the limits' effect are exactly as without
     * it (tests/unit/test_guard_fast.c, make guard-eval). */
    if (rules_any &&
        pcre2_match(rules_any, (PCRE2_SPTR)text, len, 0, 0, md, rules_mctx) == PCRE2_ERROR_NOMATCH) {
        pcre2_match_data_free(md);
        return RAGD_OK;
    }
    for (size_t i = 0; i < RULES_N; i++) {
        if (rules_match(i, text, len, md)) {
            *rule = rules_defs[i].name;
            break;
        }
    }
    pcre2_match_data_free(md);
    return RAGD_OK;
}

size_t guard_rules_count(void) { return RULES_N; }

const char *guard_rules_name(size_t i) { return i < RULES_N ? rules_defs[i].name : NULL; }

bool guard_rules_match_one(size_t i, const char *text, size_t len)
{
    if (!rules_ready || i >= RULES_N)
        return false;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md)
        return false;
    bool hit = rules_match(i, text, len, md);
    pcre2_match_data_free(md);
    return hit;
}
