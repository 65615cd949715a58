/* Unit tests for http/body_budget (RAGD_MAX_BODY_BYTES_TOTAL's accounting) and for
 * strbuf_alloc_after, which tells conn.c what a body's growth will cost before it happens. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "http/body_budget.h"
#include "util/strbuf.h"

/* Charges rise to fit, refuse past the limit with nothing changed, and come back whole. */
static void test_cover_and_release(void **state)
{
    (void)state;
    body_budget b = {0};
    size_t a = 0, c = 0;
    assert_true(body_budget_cover(&b, 100, &a, 60));
    assert_int_equal(a, 60);
    assert_int_equal(body_budget_left(&b, 100), 40);
    assert_true(body_budget_cover(&b, 100, &a, 30)); /* not above the charge: nothing to take */
    assert_int_equal(a, 60);
    assert_false(body_budget_cover(&b, 100, &c, 41)); /* one byte more than is left */
    assert_int_equal(c, 0);
    assert_int_equal(body_budget_used(&b), 60);
    assert_true(body_budget_cover(&b, 100, &c, 40)); /* exactly what is left */
    assert_int_equal(body_budget_left(&b, 100), 0);
    assert_false(body_budget_cover(&b, 100, &a, 61)); /* a growth of one byte, none left */
    assert_int_equal(a, 60);
    body_budget_release(&b, &a);
    assert_int_equal(a, 0);
    assert_int_equal(body_budget_used(&b), 40);
    body_budget_release(&b, &a); /* twice: nothing more given back */
    assert_int_equal(body_budget_used(&b), 40);
    body_budget_release(&b, &c);
    assert_int_equal(body_budget_used(&b), 0);
}

/* A limit lowered below what is in use (a reload) leaves nothing, and takes nothing away. */
static void test_lowered_limit(void **state)
{
    (void)state;
    body_budget b = {0};
    size_t a = 0;
    assert_true(body_budget_cover(&b, 1000, &a, 500));
    assert_int_equal(body_budget_left(&b, 100), 0);
    assert_false(body_budget_cover(&b, 100, &a, 501));
    assert_int_equal(body_budget_used(&b), 500);
    body_budget_release(&b, &a);
    assert_int_equal(body_budget_left(&b, 100), 100);
}

/* A huge want never wraps the sum around. */
static void test_no_overflow(void **state)
{
    (void)state;
    body_budget b = {0};
    size_t a = 0, c = 0;
    assert_true(body_budget_cover(&b, SIZE_MAX, &a, SIZE_MAX - 10));
    assert_false(body_budget_cover(&b, SIZE_MAX, &c, 11));
    assert_true(body_budget_cover(&b, SIZE_MAX, &c, 10));
    body_budget_release(&b, &a);
    body_budget_release(&b, &c);
    assert_int_equal(body_budget_used(&b), 0);
}

/* strbuf_alloc_after says exactly what strbuf_reserve then allocates. */
static void test_strbuf_alloc_after(void **state)
{
    (void)state;
    strbuf sb;
    strbuf_init(&sb, 1000);
    size_t steps[] = {0, 1, 63, 64, 100, 500, 999};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        size_t want = strbuf_alloc_after(&sb, steps[i]);
        assert_int_equal(strbuf_reserve(&sb, steps[i]), RAGD_OK);
        assert_int_equal(sb.alloc, want);
    }
    assert_int_equal(sb.alloc, 1001); /* capped at cap + 1 */
    assert_int_equal(strbuf_alloc_after(&sb, 1001), 0); /* past the cap */
    assert_int_equal(strbuf_append(&sb, "abc", 3), RAGD_OK);
    assert_int_equal(strbuf_alloc_after(&sb, 998), 0);
    assert_int_equal(strbuf_alloc_after(&sb, 997), 1001);
    strbuf_cleanup(&sb);
    /* a cap equal to a Content-Length: the room is exactly the length */
    strbuf_init(&sb, 300000);
    assert_int_equal(strbuf_reserve(&sb, 300000), RAGD_OK);
    assert_int_equal(sb.alloc - 1, 300000);
    strbuf_cleanup(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cover_and_release),
        cmocka_unit_test(test_lowered_limit),
        cmocka_unit_test(test_no_overflow),
        cmocka_unit_test(test_strbuf_alloc_after),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
