/*
 * http_listing.c - the HTML page listing a served directory.
 *
 * Names come from the file system and may hold any byte but '/' and NUL,
 * and the URL path comes from the client: everything taken from either is
 * escaped on its way into the page (character references and U+FFFD in
 * text, percent-encoding in links).
 *
 * The page is built in two passes over the sorted entries with the same
 * code: the first only counts bytes, the second writes them into a buffer
 * of exactly that size.
 */
#include "protocols/http/listing.h"
#include "platform/dir.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void piocp_http_listing_force_stat(int force)
{
    piocp_dir_list_force_stat(force);
}

/* ------------------------------------------------------------ reading -- */

typedef struct entry {
    size_t off;         /* of the name in the arena while reading */
    const char *name;   /* NUL-terminated, set once the arena stops moving */
    size_t len;
    int is_dir;
} entry;

typedef struct listing {
    entry *entries;
    size_t count, cap;
    char *arena;
    size_t arena_len, arena_cap;
    int truncated;
} listing;

static void listing_free(listing *l)
{
    free(l->entries);
    free(l->arena);
}

/* The capacity, at least `need`, to grow an array of `cap` to. */
static size_t grown(size_t cap, size_t need, size_t first)
{
    size_t n = cap ? cap : first;
    while (n < need)
        n *= 2;
    return n;
}

/* One name from the platform's walk (piocp_dir_entry_fn): 1 stops it once
 * the listing is full. */
static int add_entry(void *user, const char *name, size_t len, bool is_dir)
{
    listing *l = user;
    if (l->count == PIOCP_HTTP_LISTING_MAX) {
        l->truncated = 1;
        return 1;
    }
    if (l->count == l->cap) {
        size_t cap = grown(l->cap, l->count + 1, 64);
        entry *e = realloc(l->entries, cap * sizeof *e);
        if (e == NULL)
            return -ENOMEM;
        l->entries = e;
        l->cap = cap;
    }
    if (l->arena_cap - l->arena_len < len + 1) {
        size_t cap = grown(l->arena_cap, l->arena_len + len + 1, 4096);
        char *a = realloc(l->arena, cap);
        if (a == NULL)
            return -ENOMEM;
        l->arena = a;
        l->arena_cap = cap;
    }
    memcpy(l->arena + l->arena_len, name, len + 1);
    l->entries[l->count++] = (entry){.off = l->arena_len, .len = len, .is_dir = is_dir};
    l->arena_len += len + 1;
    return 0;
}

static int read_entries(piocp_file dir, listing *l)
{
    int rc = piocp_dir_list(dir, add_entry, l);
    return rc > 0 ? 0 : rc; /* > 0: stopped when full */
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

/* ------------------------------------------------------------ writing -- */

/* Appends n bytes at out->p, or only counts them when out->p is NULL. */
typedef struct sink {
    char *p;
    size_t len;
} sink;

static void put(sink *out, const void *s, size_t n)
{
    if (out->p) {
        memcpy(out->p, s, n);
        out->p += n;
    }
    out->len += n;
}

#define PUT_LIT(out, lit) put(out, lit, sizeof(lit) - 1)

/* Length of the valid UTF-8 sequence at s[0..n) of two to four bytes (no
 * overlongs, surrogates or code points past U+10FFFF), or 0. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t k;
    if (c >= 0xc2 && c <= 0xdf) {
        k = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n < k || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t j = 2; j < k; j++)
        if ((s[j] & 0xc0) != 0x80)
            return 0;
    return k;
}

/* Text content (also safe inside a quoted attribute). */
static void put_text(sink *out, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k = 1;
        switch (c) {
        case '&':
            PUT_LIT(out, "&amp;");
            break;
        case '<':
            PUT_LIT(out, "&lt;");
            break;
        case '>':
            PUT_LIT(out, "&gt;");
            break;
        case '"':
            PUT_LIT(out, "&quot;");
            break;
        case '\'':
            PUT_LIT(out, "&#x27;");
            break;
        default:
            if (c >= 0x20 && c < 0x7f) {
                put(out, &s[i], 1);
            } else if (c >= 0x80 && (k = utf8_seq_len(s + i, n - i)) != 0) {
                put(out, &s[i], k);
            } else {
                PUT_LIT(out, "\xef\xbf\xbd"); /* U+FFFD for a control or a stray byte */
                k = 1;
            }
        }
        i += k;
    }
}

/* A relative link: all but RFC 3986's unreserved characters percent-encoded
 * (so no name can read as a scheme, query, fragment or dot-segment). */
static void put_href(sink *out, const char *str, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            put(out, &s[i], 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 0xf]};
            put(out, e, 3);
        }
    }
}

static void put_page(sink *out, const listing *l, const char *url_path, size_t url_path_len)
{
    PUT_LIT(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                 "<title>Index of ");
    put_text(out, url_path, url_path_len);
    PUT_LIT(out, "</title>\n</head>\n<body>\n<h1>Index of ");
    put_text(out, url_path, url_path_len);
    PUT_LIT(out, "</h1>\n<hr>\n<ul>\n");
    if (url_path_len != 1)
        PUT_LIT(out, "<li><a href=\"../\">../</a></li>\n");
    for (size_t i = 0; i < l->count; i++) {
        const entry *e = &l->entries[i];
        PUT_LIT(out, "<li><a href=\"");
        put_href(out, e->name, e->len);
        if (e->is_dir)
            PUT_LIT(out, "/");
        PUT_LIT(out, "\">");
        put_text(out, e->name, e->len);
        if (e->is_dir)
            PUT_LIT(out, "/");
        PUT_LIT(out, "</a></li>\n");
    }
    PUT_LIT(out, "</ul>\n");
    if (l->truncated)
        PUT_LIT(out, "<p>(listing truncated)</p>\n");
    PUT_LIT(out, "<hr>\n</body>\n</html>\n");
}

int piocp_http_listing(piocp_file dir, const char *url_path, size_t url_path_len, char **out,
                       size_t *out_len)
{
    if (out == NULL || out_len == NULL)
        return -EINVAL;
    *out = NULL;
    *out_len = 0;
    if (url_path == NULL || url_path_len == 0 || url_path[0] != '/' ||
        url_path[url_path_len - 1] != '/')
        return -EINVAL;

    listing l = {0};
    int rc = read_entries(dir, &l);
    if (rc < 0) {
        listing_free(&l);
        return rc;
    }
    for (size_t i = 0; i < l.count; i++)
        l.entries[i].name = l.arena + l.entries[i].off;
    if (l.count > 1)
        qsort(l.entries, l.count, sizeof(entry), by_name);

    sink count = {NULL, 0};
    put_page(&count, &l, url_path, url_path_len);
    char *buf = malloc(count.len + 1);
    if (buf == NULL) {
        listing_free(&l);
        return -ENOMEM;
    }
    sink write = {buf, 0};
    put_page(&write, &l, url_path, url_path_len);
    buf[write.len] = '\0';
    listing_free(&l);

    *out = buf;
    *out_len = write.len;
    return 0;
}
