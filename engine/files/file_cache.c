/*
 * file_cache.c - see file_cache.h.
 *
 * One mutex guards a chained hash table and an LRU list; the critical
 * section is a hash lookup and a few pointer moves.  Entries are reference
 * counted: one evicted or invalidated while a transmit still uses its fd is
 * unlinked at once and closed when the last user releases it.  An entry is
 * never changed once made (its descriptor, info and bytes stay what they
 * were): revalidation either restarts its period or replaces it, so an
 * answer being built or sent from it keeps one consistent view.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "files/file_cache.h"
#include "files/path_confine.h"
#include "platform/file_watch.h"
#include "platform/platform.h"
#include "platform/threads.h"
#include "platform/atomics.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct cache_entry {
    piocp_cached_file file;    /* first: the public view */
    struct cache_entry *bucket_next;
    struct cache_entry *lru_prev, *lru_next;
    long long checked_ms;      /* when it was last known to match its name */
    int refs;                  /* the table's (while linked) + users' */
    int watch;                 /* file_watch.h's watch of its directory, or -1 */
    bool linked;
    bool changing;             /* the file changed while we read it */
    uint32_t hash;
    size_t name_len;
    char name[];
} cache_entry;

struct piocp_file_cache {
    piocp_file root;
    size_t capacity, count;
    int period_ms;             /* an entry is re-checked by name this often */
    bool check_every_hit;      /* and its info re-read on every hit (valid_ms 0) */
    piocp_mutex lock;
    cache_entry **buckets;
    size_t bucket_mask;
    cache_entry *lru_head, *lru_tail; /* head: most recently used */
    atomic_uint_fast64_t hits, misses;

    piocp_file_watch *watch;   /* NULL: time-based revalidation only */
};

static uint32_t hash_name(const char *name, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a: names are short, this is plenty */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 16777619u;
    return h;
}

/* ------------------------------------------------------ list helpers -- */

static void lru_unlink(piocp_file_cache *c, cache_entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(piocp_file_cache *c, cache_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (!c->lru_tail)
        c->lru_tail = e;
}

/* Closes and frees an entry nobody holds any more. */
static void entry_destroy(cache_entry *e)
{
    piocp_file_close(e->file.fd);
    free((char *)e->file.bytes);
    free(e);
}

static void entry_put_locked(cache_entry *e)
{
    if (--e->refs == 0)
        entry_destroy(e);
}

static bool same_file(const piocp_file_info *a, const piocp_file_info *b)
{
    /* ctime too: it cannot be set from user space, so a rewrite that
     * restores size and mtime (cp -p, rsync --inplace -t) still shows */
    return a->device == b->device && a->file_id == b->file_id && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

/* Reads a small file whole.  The copy is answered from for a whole
 * validity period, so it must be one version: a short read, or a file
 * whose info changed while we read it (written in place), keeps none and
 * sets *changing. */
static const char *load_small(piocp_file fd, const piocp_file_info *info, bool *changing)
{
    if (info->size == 0 || info->size > FILE_CACHE_SMALL_FILE)
        return NULL;
    char *bytes = malloc((size_t)info->size);
    if (!bytes)
        return NULL;
    piocp_file_info after;
    if (piocp_file_pread(fd, bytes, (size_t)info->size, 0) != (ssize_t)info->size ||
        piocp_file_get_info(fd, &after) != 0 || !same_file(info, &after)) {
        free(bytes);
        *changing = true;
        return NULL;
    }
    return bytes;
}

/* Takes the entry out of the table; users keep it alive until released. */
static void unlink_locked(piocp_file_cache *c, cache_entry *e)
{
    cache_entry **p = &c->buckets[e->hash & c->bucket_mask];
    while (*p != e)
        p = &(*p)->bucket_next;
    *p = e->bucket_next;
    lru_unlink(c, e);
    e->linked = false;
    c->count--;
    entry_put_locked(e);
}

static cache_entry *find_locked(piocp_file_cache *c, const char *name, size_t len, uint32_t h)
{
    for (cache_entry *e = c->buckets[h & c->bucket_mask]; e; e = e->bucket_next)
        if (e->hash == h && e->name_len == len && memcmp(e->name, name, len) == 0)
            return e;
    return NULL;
}

/* ------------------------------------------------ change notices -- */

/* Drops every entry of the directory `watch` (-1: every entry). */
static void invalidate_watch(piocp_file_cache *c, int watch)
{
    piocp_mutex_lock(&c->lock);
    for (cache_entry *e = c->lru_head, *next; e; e = next) {
        next = e->lru_next;
        if (watch < 0 || e->watch == watch)
            unlink_locked(c, e);
    }
    piocp_mutex_unlock(&c->lock);
}

/* file_watch.h's callback, on its thread. */
static void on_change(void *user, int watch)
{
    invalidate_watch(user, watch);
}

static int watch_directory(piocp_file_cache *c, const char *name, size_t len)
{
    size_t dir_len = len;
    while (dir_len > 0 && name[dir_len - 1] != '/')
        dir_len--;
    return piocp_file_watch_add(c->watch, name, dir_len);
}

/* ------------------------------------------------------------- API -- */

size_t piocp_file_cache_default_capacity(void)
{
    /* cached descriptors must leave room for connections: at most 1/16 of
     * the descriptor limit, and 1024 */
    uint64_t limit = piocp_file_open_limit();
    size_t capacity = 1024;
    if (limit != 0 && limit / 16 < capacity)
        capacity = (size_t)(limit / 16);
    return capacity;
}

int piocp_file_cache_new(piocp_file_cache **out, piocp_file root, const char *root_path,
                         size_t capacity, int valid_ms)
{
    if (valid_ms < 0)
        return -EINVAL;
    piocp_file_cache *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->root = root;
    c->capacity = capacity;
    c->check_every_hit = valid_ms == 0;
    /* checked on every hit, a name is still re-opened now and then: the info
     * of the open descriptor cannot see the name renamed to another file */
    c->period_ms = valid_ms > 0 ? valid_ms : FILE_CACHE_VALID_MS;
    size_t buckets = 16;
    while (buckets < 2 * capacity)
        buckets *= 2;
    c->bucket_mask = buckets - 1;
    c->buckets = calloc(buckets, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return -ENOMEM;
    }
    piocp_mutex_init(&c->lock);
    /* without notices (Windows, limits, seccomp) the validity period
     * still bounds how stale an entry can be */
    if (capacity > 0)
        c->watch = piocp_file_watch_start(root_path ? root_path : ".", on_change, c);
    *out = c;
    return 0;
}

void piocp_file_cache_free(piocp_file_cache *c)
{
    if (!c)
        return;
    piocp_file_watch_stop(c->watch); /* no notice runs after this */
    invalidate_watch(c, -1);
    piocp_mutex_destroy(&c->lock);
    free(c->buckets);
    free(c);
}

/* A hit: the cached entry for `name`, checked less than a period ago (and,
 * when every hit is checked, still the same file), referenced for the
 * caller; else NULL (a stale entry found on the way is dropped). */
static cache_entry *take_cached(piocp_file_cache *c, const char *name, size_t len, uint32_t h,
                                long long now)
{
    piocp_mutex_lock(&c->lock);
    cache_entry *e = find_locked(c, name, len, h);
    if (!e || now - e->checked_ms >= c->period_ms) {
        /* due: the caller re-opens the name, and keeps this entry if the
         * name still leads to the same file (revalidate_locked) */
        piocp_mutex_unlock(&c->lock);
        return NULL;
    }
    e->refs++;
    lru_unlink(c, e);
    lru_push_front(c, e);
    piocp_mutex_unlock(&c->lock);
    /* Within the period a hit is trusted as is: no system call.  A change
     * notice (inotify, on Linux) drops the entry soon after a change, the
     * period bounds how long it can be missed, and an answer from it is
     * framed by its own size whatever happens to the file meanwhile
     * (file_cache.h). */
    if (!c->check_every_hit)
        return e;
    /* Checked on every hit: a file rewritten in place since is seen at
     * once, for protocols that carry no length (raw) */
    piocp_file_info info;
    if (piocp_file_get_info(e->file.fd, &info) == 0 && same_file(&e->file.info, &info))
        return e;
    piocp_mutex_lock(&c->lock);
    if (e->linked)
        unlink_locked(c, e);
    entry_put_locked(e);
    piocp_mutex_unlock(&c->lock);
    return NULL;
}

/* The entry under `name`, if the file just opened under it is the one it
 * holds: its period restarts and it is returned referenced. */
static cache_entry *revalidate_locked(piocp_file_cache *c, const char *name, size_t len,
                                      uint32_t h, const piocp_file_info *info, long long now)
{
    cache_entry *e = find_locked(c, name, len, h);
    if (!e || e->changing || !same_file(&e->file.info, info))
        return NULL;
    e->checked_ms = now;
    e->refs++;
    lru_unlink(c, e);
    lru_push_front(c, e);
    return e;
}

/* The name is gone or now refused: so is any cached answer for it. */
static void forget_name(piocp_file_cache *c, const char *name, size_t len, uint32_t h)
{
    piocp_mutex_lock(&c->lock);
    cache_entry *e = find_locked(c, name, len, h);
    if (e)
        unlink_locked(c, e);
    piocp_mutex_unlock(&c->lock);
}

/* A new entry for a file just opened, held by the caller alone (not yet in
 * the table); NULL without memory. */
static cache_entry *entry_new(const piocp_file_cache *c, const char *name, size_t len, uint32_t h,
                              piocp_file fd, const piocp_file_info *info, long long now)
{
    cache_entry *e = malloc(sizeof *e + len);
    if (!e)
        return NULL;
    memset(e, 0, sizeof *e);
    e->file.fd = fd;
    e->file.info = *info;
    e->file.bytes = c->capacity > 0 ? load_small(fd, info, &e->changing) : NULL;
    /* a file seen changing is served from its descriptor this once and
     * re-opened by the next request, not trusted for a period */
    e->checked_ms = e->changing ? now - c->period_ms : now;
    e->refs = 1; /* the caller's */
    e->hash = h;
    e->name_len = len;
    memcpy(e->name, name, len);
    return e;
}

/* Puts a fresh entry in the table and returns it referenced for the
 * caller, unless the table already holds the same file under the name
 * (another thread re-opened it meanwhile): then that one is returned, and
 * the fresh one freed. */
static cache_entry *insert_or_revalidate(piocp_file_cache *c, cache_entry *fresh)
{
    piocp_mutex_lock(&c->lock);
    /* one seen changing replaces what is there, whatever its info said */
    cache_entry *old = fresh->changing ? NULL
                                       : revalidate_locked(c, fresh->name, fresh->name_len,
                                                           fresh->hash, &fresh->file.info,
                                                           fresh->checked_ms);
    if (old) {
        piocp_mutex_unlock(&c->lock);
        entry_destroy(fresh);
        return old;
    }
    old = find_locked(c, fresh->name, fresh->name_len, fresh->hash);
    if (old)
        unlink_locked(c, old);
    if (c->count >= c->capacity && c->lru_tail)
        unlink_locked(c, c->lru_tail);
    size_t b = fresh->hash & c->bucket_mask;
    fresh->bucket_next = c->buckets[b];
    c->buckets[b] = fresh;
    lru_push_front(c, fresh);
    fresh->linked = true;
    fresh->refs++; /* the table's */
    c->count++;
    piocp_mutex_unlock(&c->lock);
    return fresh;
}

int piocp_file_cache_open(piocp_file_cache *c, const char *name, size_t len,
                          const piocp_cached_file **out, const char **reason)
{
    uint32_t h = hash_name(name, len);
    long long now = piocp_now_ms();
    bool caching = c->capacity > 0;
    cache_entry *e = caching ? take_cached(c, name, len, h, now) : NULL;
    if (e) {
        atomic_fetch_add_explicit(&c->hits, 1, memory_order_relaxed);
        *out = &e->file;
        return 0;
    }
    atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);

    piocp_file fd;
    piocp_file_info info;
    int rc = piocp_open_beneath(c->root, name, len, &fd, reason, &info);
    if (rc < 0) {
        if (caching)
            forget_name(c, name, len, h);
        return rc;
    }
    if (caching) {
        /* a due entry whose name still leads to the same file: keep its
         * descriptor and bytes (no read of the file), trust it anew */
        piocp_mutex_lock(&c->lock);
        e = revalidate_locked(c, name, len, h, &info, now);
        piocp_mutex_unlock(&c->lock);
        if (e) {
            piocp_file_close(fd);
            *out = &e->file;
            return 0;
        }
    }
    e = entry_new(c, name, len, h, fd, &info, now);
    if (!e) {
        piocp_file_close(fd);
        *reason = "out of memory";
        return -ENOMEM;
    }
    if (caching) {
        e->watch = watch_directory(c, name, len);
        e = insert_or_revalidate(c, e);
    }
    *out = &e->file;
    return 0;
}

void piocp_file_cache_release(piocp_file_cache *c, const piocp_cached_file *file)
{
    cache_entry *e = (cache_entry *)file; /* `file` is the first member */
    piocp_mutex_lock(&c->lock);
    entry_put_locked(e);
    piocp_mutex_unlock(&c->lock);
}

void piocp_file_cache_stats(piocp_file_cache *c, uint64_t *hits, uint64_t *misses)
{
    *hits = atomic_load(&c->hits);
    *misses = atomic_load(&c->misses);
}
