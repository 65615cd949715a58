/* The screen's n-grams of a whole text (guard_text_init's feat_text_grams): the AVX2 way,
 * eight positions at a time, against the one-position-at-a-time way, on random texts of
 * every length up to 80 bytes and longer ones, with every byte value. Same grams, same
 * order. Includes guard_features.c to reach its switch (STYLE 13). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../../src/guard/guard_features.c"
#include "test_rng.h"

enum { GRAMS_MAX_LEN = 2048 };

static void grams_both_ways(const unsigned char *s, size_t len)
{
    guard_text fast, slow;
    feat_grams_avx2 = true;
    assert_int_equal(guard_text_init(&fast, (const char *)s, len), RAGD_OK);
    feat_grams_avx2 = false;
    assert_int_equal(guard_text_init(&slow, (const char *)s, len), RAGD_OK);
    feat_grams_avx2 = true;
    assert_memory_equal(fast.grams, slow.grams, 3 * len * sizeof *fast.grams);
    assert_int_equal(fast.n_words, slow.n_words);
    guard_text_free(&fast);
    guard_text_free(&slow);
}

static void test_grams_every_length(void **state)
{
    (void)state;
    if (!__builtin_cpu_supports("avx2"))
        skip(); /* only the scalar way runs on this CPU */
    rng r = {0x6a7a1001u};
    static unsigned char text[GRAMS_MAX_LEN];
    for (int round = 0; round < 200; round++) {
        size_t len = round < 81 ? (size_t)round : 81 + rng_below(&r, GRAMS_MAX_LEN - 81);
        bool any_byte = round % 2;
        for (size_t i = 0; i < len; i++)
            text[i] = any_byte ? (unsigned char)rng_next(&r) : (unsigned char)"ab cd\nef.GH"[rng_below(&r, 11)];
        grams_both_ways(text, len);
    }
}

/* A gram is not a constant: two texts differing in one byte differ in the grams over it. */
static void test_grams_see_every_byte(void **state)
{
    (void)state;
    unsigned char a[64], b[64];
    for (size_t i = 0; i < sizeof a; i++)
        a[i] = (unsigned char)('a' + i % 26);
    for (size_t at = 0; at + 5 <= sizeof a; at++) {
        memcpy(b, a, sizeof a);
        b[at] ^= 0x20;
        guard_text ta, tb;
        assert_int_equal(guard_text_init(&ta, (const char *)a, sizeof a), RAGD_OK);
        assert_int_equal(guard_text_init(&tb, (const char *)b, sizeof b), RAGD_OK);
        assert_int_not_equal(ta.grams[3 * at], tb.grams[3 * at]);
        assert_int_not_equal(ta.grams[3 * at + 2], tb.grams[3 * at + 2]);
        guard_text_free(&ta);
        guard_text_free(&tb);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grams_every_length),
        cmocka_unit_test(test_grams_see_every_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
