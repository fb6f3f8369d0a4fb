/* test_check.h - what every C test uses, on every platform (the tests
 * that run under Wine include only this): CHECK, and one process per case
 * (`test_x CASE`, or `test_x list`). */
#ifndef PYIOCP_TEST_CHECK_H
#define PYIOCP_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                   \
        }                                                                              \
    } while (0)

typedef struct test_case {
    const char *name;
    void (*run)(void);
} test_case;

static inline int run_test_case(const test_case *cases, const char *name)
{
    for (const test_case *t = cases; t->name; t++) {
        if (strcmp(name, "list") == 0) {
            printf("%s\n", t->name);
        } else if (strcmp(name, t->name) == 0) {
            t->run();
            printf("ok %s\n", t->name);
            return 0;
        }
    }
    if (strcmp(name, "list") == 0)
        return 0;
    fprintf(stderr, "unknown test %s\n", name);
    return 2;
}

/* The whole main() of a test with no backend argument: `test_x CASE|list`. */
static inline int run_test_main(const test_case *cases, int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CASE|list\n", argv[0]);
        return 2;
    }
    return run_test_case(cases, argv[1]);
}

#endif
