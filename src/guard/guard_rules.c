/* L1 of the prompt-injection screen (docs/internals/guard.md): PCRE2 rules over the
 * normalised (case-folded) text. Compiled once by guard_rules_init (JIT when available);
 * read-only afterwards, so any thread may match: each call makes its own match data.
 * Every rule sets the score to 1.0, so each must stay near zero false positives on the
 * benign rows (make guard-eval counts them per rule). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "guard/guard_int.h"

#include <assert.h>
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

/* Whether rule i matches, with caller-provided match data. */
static bool rules_match(size_t i, const char *text, size_t len, pcre2_match_data *md)
{
    int rc = pcre2_match(rules_code[i], (PCRE2_SPTR)text, len, 0, 0, md, rules_mctx);
    return rc >= 0; /* no match, or a limit reached: not a match */
}

/* ------------------------------------------------------------------ literal prefilter
 * Words and marks each rule cannot match without, found in one pass over the text: a rule
 * none of whose required words or marks occur cannot match, so a text where no rule can
 * is judged without PCRE2 (the verdict of most passages). Sound only for the byte-wise
 * patterns above read over text without A-Z: their letters then match only themselves,
 * so a text with a capital letter (the normaliser leaves none, but guard_rules_first takes
 * any bytes) is passed to PCRE2 as before. A "word" is a maximal run of a-z; every
 * required word below is a whole run wherever its rule matches (it is preceded by \b, \s or
 * punctuation and followed by \s, \b or punctuation; checked per rule in the comments),
 * except the RL_PREFIX ones, which only start a run. */
enum {
    RL_V1 = 1u << 0,     /* override_previous_instructions: its verbs */
    RL_O1 = 1u << 1,     /* ... its objects (prefixes of runs: "instructions?" etc.) */
    RL_PREV = 1u << 2,   /* ... previous, above, prior, ... (or "system") */
    RL_V2 = 1u << 3,     /* override_everything_told: its verbs */
    RL_V3 = 1u << 4,     /* override_ignore_content: ignore, disregard, forget */
    RL_SAY = 1u << 5,    /* ... what it asks instead: state, say, respond, ... */
    RL_YOU = 1u << 6,    /* you */
    RL_ARE = 1u << 7,    /* are */
    RL_NOW = 1u << 8,    /* now */
    RL_FROM = 1u << 9,   /* from */
    RL_ON = 1u << 10,    /* on */
    RL_YOUR = 1u << 11,  /* your */
    RL_NEW = 1u << 12,   /* override_new_instructions: new, updated, revised, real, actual */
    RL_INSTR = 1u << 13, /* a run starting "instruction" */
    RL_SYSTEM = 1u << 14,
    RL_SYSP = 1u << 15,    /* a run starting "system" ("## systemprompt:") */
    RL_SYSLINE = 1u << 16, /* role_system_line: always, never, do, don('t), assistant, override, reveal */
    RL_VX = 1u << 17,      /* extract_system_prompt: its verbs (write/spell of "write out") */
    RL_OX = 1u << 18,      /* ... its objects (prefixes: the negative lookahead needs no \b) */
    RL_ADJ = 1u << 19,     /* ... initial, original, hidden, ... */
    RL_ABOVE = 1u << 20,   /* above */
    RL_BEFORE = 1u << 21,  /* before */
    RL_THIS = 1u << 22,    /* this */
    RL_COLON = 1u << 23,   /* ':' */
    RL_HASH2 = 1u << 24,   /* "##" */
    RL_TOKEN = 1u << 25,   /* "<|", "</s>", the run "inst" of "[/inst]" */
    RL_LTLT = 1u << 26,    /* "<<" */
    RL_SYS = 1u << 27,     /* sys (of "<<sys>>") */
    RL_IMAGE = 1u << 28,   /* "![" */
    RL_PREFIX = 1u << 30,  /* the entry matches runs it starts, not only itself */
};

typedef struct {
    const char *word;
    size_t len;
    uint32_t bits;
} rules_lit;
#define RULES_LIT(w, b) {w, sizeof w - 1, b}

/* Grouped by first letter, a to z; a word may carry several rules' bits. */
static const rules_lit rules_lits[] = {
    RULES_LIT("above", RL_ABOVE | RL_PREV),
    RULES_LIT("actual", RL_NEW),
    RULES_LIT("always", RL_SYSLINE),
    RULES_LIT("answer", RL_SAY),
    RULES_LIT("are", RL_ARE),
    RULES_LIT("assistant", RL_SYSLINE),
    RULES_LIT("before", RL_BEFORE),
    RULES_LIT("bypass", RL_V1),
    RULES_LIT("claim", RL_SAY),
    RULES_LIT("command", RL_O1 | RL_PREFIX),
    RULES_LIT("complete", RL_ADJ),
    RULES_LIT("configuration", RL_OX | RL_PREFIX),
    RULES_LIT("context", RL_O1 | RL_PREFIX),
    RULES_LIT("direction", RL_O1 | RL_PREFIX),
    RULES_LIT("directive", RL_O1 | RL_OX | RL_PREFIX),
    RULES_LIT("disclose", RL_VX),
    RULES_LIT("display", RL_VX),
    RULES_LIT("disregard", RL_V1 | RL_V2 | RL_V3),
    RULES_LIT("do", RL_SYSLINE),
    RULES_LIT("don", RL_SYSLINE),
    RULES_LIT("drop", RL_V1),
    RULES_LIT("dump", RL_VX),
    RULES_LIT("earlier", RL_PREV),
    RULES_LIT("echo", RL_VX),
    RULES_LIT("entire", RL_ADJ),
    RULES_LIT("exact", RL_ADJ),
    RULES_LIT("foregoing", RL_PREV),
    RULES_LIT("forget", RL_V1 | RL_V2 | RL_V3),
    RULES_LIT("former", RL_PREV),
    RULES_LIT("from", RL_FROM),
    RULES_LIT("full", RL_ADJ),
    RULES_LIT("give", RL_VX),
    RULES_LIT("guideline", RL_O1 | RL_OX | RL_PREFIX),
    RULES_LIT("hidden", RL_ADJ),
    RULES_LIT("ignore", RL_V1 | RL_V2 | RL_V3),
    RULES_LIT("initial", RL_ADJ | RL_PREV),
    RULES_LIT("insist", RL_SAY),
    RULES_LIT("inst", RL_TOKEN),
    RULES_LIT("instruction", RL_O1 | RL_OX | RL_INSTR | RL_PREFIX),
    RULES_LIT("internal", RL_ADJ),
    RULES_LIT("leak", RL_VX),
    RULES_LIT("message", RL_O1 | RL_OX | RL_PREFIX),
    RULES_LIT("neglect", RL_V1 | RL_V2),
    RULES_LIT("never", RL_SYSLINE),
    RULES_LIT("new", RL_NEW),
    RULES_LIT("now", RL_NOW),
    RULES_LIT("on", RL_ON),
    RULES_LIT("orders", RL_O1 | RL_PREFIX),
    RULES_LIT("original", RL_ADJ | RL_PREV),
    RULES_LIT("output", RL_VX | RL_SAY),
    RULES_LIT("overlook", RL_V1 | RL_V2),
    RULES_LIT("override", RL_V1 | RL_SYSLINE),
    RULES_LIT("preceding", RL_PREV),
    RULES_LIT("previous", RL_PREV),
    RULES_LIT("print", RL_VX | RL_SAY),
    RULES_LIT("prior", RL_PREV),
    RULES_LIT("prompt", RL_O1 | RL_OX | RL_PREFIX),
    RULES_LIT("real", RL_NEW),
    RULES_LIT("recite", RL_VX),
    RULES_LIT("recommend", RL_SAY),
    RULES_LIT("repeat", RL_VX),
    RULES_LIT("reply", RL_SAY),
    RULES_LIT("report", RL_SAY),
    RULES_LIT("respond", RL_SAY),
    RULES_LIT("reveal", RL_VX | RL_SYSLINE),
    RULES_LIT("revised", RL_NEW),
    RULES_LIT("rules", RL_O1 | RL_OX | RL_PREFIX),
    RULES_LIT("say", RL_SAY),
    RULES_LIT("secret", RL_ADJ),
    RULES_LIT("share", RL_VX),
    RULES_LIT("show", RL_VX),
    RULES_LIT("skip", RL_V1),
    RULES_LIT("spell", RL_VX),
    RULES_LIT("state", RL_SAY),
    RULES_LIT("summarize", RL_SAY),
    RULES_LIT("sys", RL_SYS),
    RULES_LIT("system", RL_SYSTEM | RL_PREV),
    RULES_LIT("system", RL_SYSP | RL_PREFIX),
    RULES_LIT("tell", RL_VX | RL_SAY),
    RULES_LIT("this", RL_THIS),
    RULES_LIT("translate", RL_SAY),
    RULES_LIT("updated", RL_NEW),
    RULES_LIT("what", RL_VX),
    RULES_LIT("write", RL_VX | RL_SAY),
    RULES_LIT("you", RL_YOU),
    RULES_LIT("your", RL_YOUR),
};

/* rules_lits[rules_lit_first[c - 'a'] .. rules_lit_first[c - 'a' + 1]) start with c. */
static uint8_t rules_lit_first[27];

static bool rules_lits_init(void)
{
    size_t k = 0;
    for (int c = 0; c < 26; c++) {
        rules_lit_first[c] = (uint8_t)k;
        while (k < sizeof rules_lits / sizeof rules_lits[0] && rules_lits[k].word[0] == 'a' + c)
            k++;
    }
    rules_lit_first[26] = (uint8_t)k;
    for (size_t i = 0; i < sizeof rules_lits / sizeof rules_lits[0]; i++)
        if (rules_lits[i].len < 2)
            return false; /* rules_word_bits reads a second letter */
    return k == sizeof rules_lits / sizeof rules_lits[0]; /* false: the table is not grouped a..z */
}

/* The bits of the run s[0..n) of a-z (n > 0). */
static uint32_t rules_word_bits(const unsigned char *s, size_t n)
{
    uint32_t bits = 0;
    for (size_t k = rules_lit_first[s[0] - 'a']; k < rules_lit_first[s[0] - 'a' + 1]; k++) {
        const rules_lit *l = &rules_lits[k];
        /* every word has two letters or more: the second rejects most before memcmp */
        if (l->len > n || (l->len != n && !(l->bits & RL_PREFIX)) || l->word[1] != (char)s[1] ||
            memcmp(l->word, s, l->len) != 0)
            continue;
        bits |= l->bits & ~(uint32_t)RL_PREFIX;
    }
    return bits;
}

/* Every rule's bit (rules_candidates). */
#define RULES_ALL (~0u)

/* Which rules (bit i: rules_defs[i]) could match text: RULES_ALL when the text has a capital. */
static uint32_t rules_candidates(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    uint32_t seen = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        if (c >= 'a' && c <= 'z') {
            size_t j = i + 1;
            while (j < len && s[j] >= 'a' && s[j] <= 'z')
                j++;
            seen |= rules_word_bits(s + i, j - i);
            i = j;
            continue;
        }
        if (c >= 'A' && c <= 'Z')
            return RULES_ALL;
        unsigned char next = i + 1 < len ? s[i + 1] : 0;
        if (c == ':')
            seen |= RL_COLON;
        else if (c == '#' && next == '#')
            seen |= RL_HASH2;
        else if (c == '<' && (next == '|' || (next == '/' && i + 3 < len && s[i + 2] == 's' && s[i + 3] == '>')))
            seen |= RL_TOKEN;
        else if (c == '<' && next == '<')
            seen |= RL_LTLT;
        else if (c == '!' && next == '[')
            seen |= RL_IMAGE;
        i++;
    }
#define RL_ALL(m) ((seen & (m)) == (m))
#define RL_ANY(m) ((seen & (m)) != 0)
    /* Each rule's words, in the order of rules_defs; "w" a whole run, "w…" a run's start. */
    bool can[] = {
        /* \b verb \s+ ... (previous|...|system) \s+ (\w+\s+)? object s?\b */
        RL_ALL(RL_V1 | RL_O1) && RL_ANY(RL_PREV),
        /* \b verb \s+ ... you('ve|\s+...)?\s+ ... | \b verb \s+ ... (the|everything)\s+above(\s|\s*[.,:;!]|\s*$) */
        RL_ANY(RL_V2) && RL_ANY(RL_YOU | RL_ABOVE),
        /* \b verb \s+ ... (and|[,;:-])\s+ ... (state|say|...)\b */
        RL_ANY(RL_V3) && RL_ANY(RL_SAY),
        /* \byou\s+are\s+now\s+ */
        RL_ALL(RL_YOU | RL_ARE | RL_NOW),
        /* [\n.!:>"']\s*(your\s+)? (new|...) \s+ (system\s+)? instruction… \s*(are\s*)? : */
        RL_ALL(RL_NEW | RL_INSTR | RL_COLON),
        /* \bfrom\s+now\s+on,?\s+ (you|your) \s+ */
        RL_ALL(RL_FROM | RL_NOW | RL_ON) && RL_ANY(RL_YOU | RL_YOUR),
        /* "<|" … "|>", "[inst]", "[/inst]", "<< sys >>" (blanks and a slash allowed), "</s>" … */
        RL_ANY(RL_TOKEN) || RL_ALL(RL_LTLT | RL_SYS),
        /* ## \s* (system… | new \s+ instruction…) ... : */
        RL_ALL(RL_HASH2 | RL_COLON) && (RL_ANY(RL_SYSP) || RL_ALL(RL_NEW | RL_INSTR)),
        /* \[? system \]?\s*:\s* (you\s+ | ignore | ... | new\s+instruction… | from\s+now\s+on | the\s+assistant\s+ |
         * always | never | do\s+not | don't | override | reveal) */
        RL_ALL(RL_SYSTEM | RL_COLON) && (RL_ANY(RL_YOU | RL_V3 | RL_SYSLINE) || RL_ALL(RL_NEW | RL_INSTR) ||
                                         RL_ALL(RL_FROM | RL_NOW | RL_ON)),
        /* \b verb \s+ ... then: your\s+(adj\s+)* object… | (the|your)\s+(adj\s+)+ ... object… |
         * ... (above|before\s+this)\b */
        RL_ANY(RL_VX) && ((RL_ANY(RL_OX) && RL_ANY(RL_YOUR | RL_ADJ)) || RL_ANY(RL_ABOVE) || RL_ALL(RL_BEFORE | RL_THIS)),
        /* !\[ */
        RL_ANY(RL_IMAGE),
    };
    static_assert(sizeof can / sizeof can[0] == RULES_N, "one entry per rule");
    uint32_t cand = 0;
    for (size_t r = 0; r < RULES_N; r++)
        cand |= (uint32_t)can[r] << r;
#undef RL_ANY
#undef RL_ALL
    return cand;
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
    if (!rules_lits_init()) {
        guard_rules_shutdown();
        return RAGD_EINVAL;
    }
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

ragd_err guard_rules_first(const char *text, size_t len, const char **rule)
{
    *rule = NULL;
    if (!rules_ready)
        return RAGD_EINVAL;
    /* The literal prefilter first: the rules whose words the text has (above). A rule
     * without them cannot match, so trying only the others in order names the same first
     * rule, limits included: the verdict of most texts comes without PCRE2, and the rest
     * run one or two rules (tests/unit/test_guard_fast.c, make guard-eval). */
    uint32_t cand = rules_candidates(text, len);
    if (cand == 0)
        return RAGD_OK;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md)
        return RAGD_ENOMEM;
    /* A text with capitals (the prefilter does not judge it): one scan for all rules
     * first. A completed scan without a match proves that no rule matches anywhere (no
     * rule has a backreference, all share the options); a match, or a limit reached, falls
     * back to the rules in order, so the first matching rule and the limits' effect are
     * exactly as without it. */
    if (cand == RULES_ALL && rules_any &&
        pcre2_match(rules_any, (PCRE2_SPTR)text, len, 0, 0, md, rules_mctx) == PCRE2_ERROR_NOMATCH) {
        pcre2_match_data_free(md);
        return RAGD_OK;
    }
    for (size_t i = 0; i < RULES_N; i++) {
        if ((cand >> i & 1) && rules_match(i, text, len, md)) {
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
