/* Unit tests for src/text/prose.c (passage text → running prose, for extractive answers). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "text/prose.h"

/* prose_extract on s; returns the prose (caller frees) and the edges in *info. */
static char *prose(const char *s, prose_info *info)
{
    strbuf out;
    strbuf_init(&out, 3 * strlen(s) + 16);
    prose_info tmp;
    assert_int_equal(prose_extract(s, strlen(s), &out, info != NULL ? info : &tmp), RAGD_OK);
    char *r = strbuf_detach(&out, NULL);
    return r != NULL ? r : strdup("");
}

static void expect_prose(const char *in, const char *want)
{
    char *got = prose(in, NULL);
    assert_string_equal(got, want);
    free(got);
}

static void test_markdown_blocks(void **state)
{
    expect_prose("# Title\n\nSome text here.\n", "Some text here.");
    expect_prose("Title\n=====\n\nBody one.\n\nSub\n---\nBody two.", "Body one.\n\nBody two.");
    expect_prose("Intro line.\n```c\nint x = 1;\n# not a heading\n```\nAfter.", "Intro line.\n\nAfter.");
    expect_prose("Para.\n\n    indented code();\n    more;\n\nNext para.", "Para.\n\nNext para.");
    expect_prose("Text.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nMore.", "Text.\n\nMore.");
    expect_prose("Text.\n\n***\n\nMore.", "Text.\n\nMore.");
    /* Lines of one paragraph are joined; a list item is a paragraph of its own. */
    expect_prose("One line\ncontinues here.\n- Item one.\n- Item two.", "One line continues here.\n\nItem one.\n\nItem two.");
    expect_prose("> Quoted text.\n1. Numbered item.\n- [x] Done task.", "Quoted text.\n\nNumbered item.\n\nDone task.");
}

static void test_links_toc_html_code(void **state)
{
    expect_prose("- [Intro](#intro)\n- [Install](#install)\n\nReal text.", "Real text.");
    expect_prose("See https://example.com/a/b/c\n\nReal text.", "Real text.");
    expect_prose("1.2 Installing .......... 12\nChapter 3 . . . . . 45\nIntro … 7\n\nReal text.", "Real text.");
    expect_prose("<a name=\"top\" />\n<div class=\"x\">\n</div>\nReal text.", "Real text.");
    expect_prose("for (i = 0; i < n; i++) {\nx = y;\n}\n$ make install\n// comment\n\nReal text.", "Real text.");
    expect_prose("x->y = &z[0] + *p / q % r;\n\nReal text.", "Real text.");
}

static void test_inline_markup(void **state)
{
    expect_prose("Read the [guide](https://x.example/g \"Guide\") and ![the map](m.png) first.",
                 "Read the guide and the map first.");
    expect_prose("It is **very** important to run `make` <em>now</em>.", "It is very important to run make now.");
    expect_prose("Line one<br>line two.", "Line one line two.");
    expect_prose("Escaped \\*stars\\* stay, a note[^1] goes.", "Escaped *stars* stay, a note goes.");
    expect_prose("snake_case words keep __bold__ underscores.", "snake_case words keep bold underscores.");
}

static void test_short_lines_from_html(void **state)
{
    /* Text made from HTML: a heading on its own line before a capitalised line. */
    expect_prose("Installing the server\nThe server runs on Linux.", "Installing the server\n\nThe server runs on Linux.");
    /* A hard-wrapped paragraph stays one paragraph. */
    expect_prose("The server runs on any Linux machine with a compiler and\nthe libraries it needs.",
                 "The server runs on any Linux machine with a compiler and the libraries it needs.");
}

static void test_edges(void **state)
{
    prose_info info;
    char *p = prose("mid-sentence start of a chunk.\n\n# Heading\n\nLast words", &info);
    assert_true(info.starts_at_top);
    assert_true(info.ends_at_bottom);
    free(p);
    p = prose("- a list item starts here.", &info);
    assert_false(info.starts_at_top); /* its marker shows where it starts: no cut */
    free(p);
    p = prose("# Heading\n\nText.\n\n```\ncode\n```", &info);
    assert_false(info.starts_at_top);
    assert_false(info.ends_at_bottom);
    assert_string_equal(p, "Text.");
    free(p);
    /* A passage that starts inside a code block (odd fences, the first one bare). */
    p = prose("make install\nmake test\n```\n\nThe build is done.\n\n```sh\nls\n```", &info);
    assert_string_equal(p, "The build is done.");
    free(p);
    /* An unclosed fence at the end: the rest is code. */
    p = prose("Text first.\n```python\nprint(1)", &info);
    assert_string_equal(p, "Text first.");
    free(p);
}

static void test_bad_args_and_caps(void **state)
{
    strbuf out;
    strbuf_init(&out, 8);
    assert_int_equal(prose_extract(NULL, 3, &out, NULL), RAGD_EINVAL);
    assert_int_equal(prose_extract("x", 1, NULL, NULL), RAGD_EINVAL);
    assert_int_equal(prose_extract("", 0, &out, NULL), RAGD_OK);
    assert_int_equal(out.len, 0);
    const char *long_text = "This sentence is far longer than the cap of the buffer.";
    assert_int_equal(prose_extract(long_text, strlen(long_text), &out, NULL), RAGD_ETOOBIG);
    strbuf_cleanup(&out);
    /* Binary junk and NUL bytes never crash it. */
    char junk[512];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)((i * 131 + 7) & 0xff);
    strbuf_init(&out, 4 * sizeof junk);
    assert_int_equal(prose_extract(junk, sizeof junk, &out, NULL), RAGD_OK);
    assert_true(out.len <= 3 * sizeof junk);
    strbuf_cleanup(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_markdown_blocks),
        cmocka_unit_test(test_links_toc_html_code),
        cmocka_unit_test(test_inline_markup),
        cmocka_unit_test(test_short_lines_from_html),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_bad_args_and_caps),
    };
    return cmocka_run_group_tests_name("prose", tests, NULL, NULL);
}
