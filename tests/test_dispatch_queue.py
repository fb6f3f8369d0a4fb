"""pyiocp/dispatch_queue.h on its own: a small C program, compiled here with
the system compiler, drives the intrusive queue from several threads the way
the binding does (workers push, one dispatcher at a time walks a claimed
batch, nodes are pushed again as soon as they have run)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import tool_env

# Compiles the checkout's pyiocp/dispatch_queue.h (not installed with the package).
pytestmark = pytest.mark.source_tree

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER_DIR = os.path.join(os.path.dirname(HERE), "pyiocp")
ENGINE_DIR = os.path.join(os.path.dirname(HERE), "engine")  # platform/threads.h

PROGRAM = r"""
#include "dispatch_queue.h"
#include <stdio.h>
#include <stdlib.h>

#define PRODUCERS 4
#define ROUNDS 20000

typedef struct item {
    dispatch_node node;
    int producer;
    atomic_int queued;       /* 1 from push until the dispatcher ran it */
    atomic_long runs;
} item;

static dispatch_queue q;
static item items[PRODUCERS];
static long last_seen[PRODUCERS];
static atomic_int dispatchers;
static atomic_long failures;

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, __VA_ARGS__); \
    atomic_fetch_add(&failures, 1); } } while (0)

/* The binding's batch_end: claim, walk (reading next first), release. */
static void dispatch_pending(void)
{
    dispatch_node *node;
    while ((node = dispatch_queue_claim(&q)) != NULL) {
        CHECK(atomic_fetch_add(&dispatchers, 1) == 0, "two dispatchers at once\n");
        while (node) {
            dispatch_node *next = node->next;
            item *it = node->owner;
            CHECK(node->kind == 7, "kind lost\n");
            /* FIFO: each producer's results arrive in push order */
            CHECK(node->result == last_seen[it->producer] + 1,
                  "producer %d: result %ld after %ld\n", it->producer, (long)node->result,
                  last_seen[it->producer]);
            last_seen[it->producer] = node->result;
            atomic_fetch_add(&it->runs, 1);
            atomic_store(&it->queued, 0);   /* its owner may push it again now */
            node = next;
        }
        atomic_fetch_sub(&dispatchers, 1);
        dispatch_queue_release(&q);
    }
}

static void *producer(void *arg)
{
    item *it = arg;
    for (long round = 1; round <= ROUNDS; round++) {
        /* like a recv: pushed again only once its last completion ran */
        while (atomic_load(&it->queued))
            dispatch_pending();
        atomic_store(&it->queued, 1);
        dispatch_queue_push(&q, &it->node, round);
        dispatch_pending();
    }
    return NULL;
}

int main(void)
{
    piocp_thread threads[PRODUCERS];
    CHECK(dispatch_queue_init(&q) == 0, "init failed\n");
    CHECK(dispatch_queue_claim(&q) == NULL, "an empty queue gave a batch\n");
    for (int i = 0; i < PRODUCERS; i++) {
        items[i].producer = i;
        dispatch_node_init(&items[i].node, 7, &items[i]);
        CHECK(piocp_thread_start(&threads[i], producer, &items[i]) == 0, "no thread\n");
    }
    for (int i = 0; i < PRODUCERS; i++)
        piocp_thread_join(&threads[i]);
    dispatch_pending();
    for (int i = 0; i < PRODUCERS; i++)
        CHECK(atomic_load(&items[i].runs) == ROUNDS && last_seen[i] == ROUNDS,
              "producer %d: %ld of %d ran\n", i, atomic_load(&items[i].runs), ROUNDS);

    /* order across nodes, and a claimed batch is detached from the queue */
    item a = {0}, b = {0}, c = {0};
    dispatch_node_init(&a.node, 1, &a);
    dispatch_node_init(&b.node, 2, &b);
    dispatch_node_init(&c.node, 3, &c);
    dispatch_queue_push(&q, &a.node, 10);
    dispatch_queue_push(&q, &b.node, 20);
    dispatch_node *batch = dispatch_queue_claim(&q);
    CHECK(batch == &a.node && batch->next == &b.node && !b.node.next, "batch order\n");
    CHECK(dispatch_queue_claim(&q) == NULL, "claimed while dispatching\n");
    dispatch_queue_push(&q, &c.node, 30);            /* arrives during the batch */
    dispatch_queue_push(&q, &a.node, 11);            /* a has run: queued again */
    CHECK(dispatch_queue_claim(&q) == NULL, "a second dispatcher got the new items\n");
    dispatch_queue_release(&q);
    batch = dispatch_queue_claim(&q);
    CHECK(batch == &c.node && batch->next == &a.node && !a.node.next
          && a.node.result == 11, "items pushed during a batch\n");
    dispatch_queue_release(&q);
    CHECK(dispatch_queue_claim(&q) == NULL, "queue not empty at the end\n");
    dispatch_queue_destroy(&q);
    if (atomic_load(&failures))
        return 1;
    puts("ok");
    return 0;
}
"""


def test_dispatch_queue_under_concurrent_pushes(tmp_path):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("no C compiler (cc/gcc) on PATH: the binding needs one to build anyway")
    source = tmp_path / "dispatch_queue_test.c"
    source.write_text(PROGRAM)
    binary = tmp_path / "dispatch_queue_test"
    env = tool_env()
    build = subprocess.run([compiler, "-std=c11", "-O1", "-Wall", "-Werror", "-pthread",
                            "-I", HEADER_DIR, "-I", ENGINE_DIR, str(source), "-o", str(binary)],
                           capture_output=True, text=True, env=env)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60, env=env)
    assert (run.returncode, run.stdout.strip()) == (0, "ok"), run.stderr[-2000:]
