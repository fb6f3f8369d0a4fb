/*
 * http_respond.c - what a static-file request is answered with: method,
 * path confinement, index.html or listing, validators (ETag,
 * Last-Modified), conditional requests, byte ranges, error pages, and the
 * access log line of each answer.
 *
 * It builds answers and hands them back; sending them, in order, is the
 * connection's business (server.c), so nothing here calls back into it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "protocols/http/internal.h"
#include "protocols/http/listing.h"
#include "log/clf.h"
#include "log/entry.h"
#include "platform/platform.h"
#include "protocols/http/mime_types.h"
#include "files/path_confine.h"
#include "files/path_names.h"
#include "platform/threads.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Room for the status line and the headers we write, besides any
 * Location and the request line kept for the log. */
#define HEAD_ROOM 640

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* The Date header changes once a second: format it once a second per
 * thread, not once per response. */
static const char *date_now(void)
{
    static PIOCP_THREAD_LOCAL time_t cached_second = -1;
    static PIOCP_THREAD_LOCAL char cached[30];
    time_t now = time(NULL);
    if (now != cached_second) {
        http_format_date((int64_t)now, cached);
        cached_second = now;
    }
    return cached;
}

/* ---------------------------------------------------------- building -- */

typedef struct builder {
    http_response *r;
    size_t cap;
    bool overflow;
} builder;

static bool builder_start(builder *b, size_t extra, const http_request *req)
{
    size_t line = req ? req->method_len + req->target_len + 16 : 0; /* "M T HTTP/1.x" + NUL */
    b->cap = HEAD_ROOM + extra;
    b->r = malloc(sizeof *b->r + b->cap + line);
    b->overflow = false;
    if (!b->r)
        return false;
    memset(b->r, 0, sizeof *b->r);
    return true;
}

static void add(builder *b, const char *text, size_t len)
{
    if (b->r->head_len + len > b->cap) {
        b->overflow = true;
        return;
    }
    memcpy(b->r->data + b->r->head_len, text, len);
    b->r->head_len += len;
}

/* The appenders below build the head of a file's answer, which every
 * request of a keep-alive client gets: vsnprintf was a tenth of the
 * server's CPU there (perf, 1 KiB files), so they copy and convert
 * directly.  Rarer answers still use addf. */
#define ADD_LITERAL(b, text) add((b), (text), sizeof(text) - 1)

static void add_str(builder *b, const char *text) { add(b, text, strlen(text)); }

static void add_u64(builder *b, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[sizeof digits - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    add(b, digits + sizeof digits - n, n);
}

static size_t put_hex(char *out, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    char digits[16];
    size_t n = 0;
    do {
        digits[sizeof digits - ++n] = hex[v & 15];
        v >>= 4;
    } while (v);
    memcpy(out, digits + sizeof digits - n, n);
    return n;
}

static void addf(builder *b, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    size_t room = b->cap - b->r->head_len;
    int n = vsnprintf(b->r->data + b->r->head_len, room, format, args);
    va_end(args);
    if (n < 0 || (size_t)n >= room)
        b->overflow = true;
    else
        b->r->head_len += (size_t)n;
}

static void add_status_and_common(builder *b, int status, bool keep_alive, int minor)
{
    b->r->status = status;
    b->r->close_after = !keep_alive;
    ADD_LITERAL(b, "HTTP/1.1 ");
    add_u64(b, (uint64_t)status);
    ADD_LITERAL(b, " ");
    add_str(b, reason_phrase(status));
    ADD_LITERAL(b, "\r\nServer: pyiocp\r\nDate: ");
    add(b, date_now(), HTTP_DATE_LEN);
    ADD_LITERAL(b, "\r\n");
    if (!keep_alive)
        add(b, "Connection: close\r\n", 19);
    else if (minor == 0)
        add(b, "Connection: keep-alive\r\n", 24);
}

/* Keeps "METHOD target HTTP/1.x" after the head, for the access log. */
static void keep_request_line(builder *b, const http_request *req)
{
    if (!req)
        return;
    /* builder_start left room for it after the head */
    char *p = b->r->data + b->r->head_len;
    memcpy(p, req->method, req->method_len);
    p += req->method_len;
    *p++ = ' ';
    memcpy(p, req->target, req->target_len);
    p += req->target_len;
    memcpy(p, " HTTP/1.", 8);
    p[8] = (char)('0' + req->minor_version % 10);
    p[9] = '\0';
    b->r->request_line_len = req->method_len + req->target_len + 10;
}

/* The built answer, with its request line kept for the log. */
static http_response *finish_built(builder *b, const http_request *req)
{
    if (b->overflow) {
        /* our own headers did not fit: a bug, but answer rather than hang */
        b->r->head_len = 0;
        b->r->file = NULL;
        b->r->body_count = 0;
        b->r->close_after = true;
        addf(b, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        b->r->status = 500;
    }
    keep_request_line(b, req);
    return b->r;
}

static bool wants_keep_alive(const http_request *req)
{
    if (req->connection_close)
        return false;
    return req->minor_version >= 1 || req->connection_keep_alive;
}

static http_response *error_page(const http_request *req, int status, bool keep_alive,
                                 const char *extra_headers)
{
    builder b;
    if (!builder_start(&b, strlen(extra_headers), req))
        return NULL;
    char body[96];
    int body_len = snprintf(body, sizeof body, "%d %s\r\n", status, reason_phrase(status));
    bool head_only = req && req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    add_status_and_common(&b, status, keep_alive, req ? req->minor_version : 1);
    addf(&b, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%s\r\n", body_len,
         extra_headers);
    if (!head_only) {
        add(&b, body, (size_t)body_len);
        b.r->body_bytes = (uint64_t)body_len;
    }
    return finish_built(&b, req);
}

http_response *http_respond_error(int status)
{
    /* the request could not be read, so the connection cannot go on */
    return error_page(NULL, status ? status : 400, false, "");
}

void http_response_free(http_response *r)
{
    if (r->file)
        piocp_file_cache_release(r->file_cache, r->file);
    free(r);
}

/* ------------------------------------------------------- validators -- */

static size_t format_etag(char out[64], const piocp_file_info *info)
{
    /* strong: inode, size and mtime to the nanosecond change with any
     * rewrite that matters (nginx uses mtime-size; the inode also catches
     * a same-size replacement within one second) */
    size_t n = 0;
    out[n++] = '"';
    n += put_hex(out + n, info->file_id);
    out[n++] = '-';
    n += put_hex(out + n, info->size);
    out[n++] = '-';
    n += put_hex(out + n, (uint64_t)info->mtime_ns);
    out[n++] = '"';
    out[n] = '\0'; /* the 304 answer prints it with %s */
    return n; /* at most 3 * 16 + 4 bytes */
}

/* RFC 9110 13.2.2: If-None-Match first; If-Modified-Since only without it. */
static bool not_modified(const http_request *req, const piocp_file_info *info, const char *etag,
                         size_t etag_len)
{
    if (req->if_none_match)
        return http_etag_matches(req->if_none_match, req->if_none_match_len, etag, etag_len);
    int64_t since;
    if (req->if_modified_since &&
        http_parse_date(req->if_modified_since, req->if_modified_since_len, &since) == 0)
        return piocp_file_time_sec(info->mtime_ns) <= since;
    return false;
}

/* If-Range: the range holds only if the representation is the one the
 * client has (strong ETag match, or exactly the Last-Modified date). */
static bool range_applies(const http_request *req, const piocp_file_info *info, const char *etag,
                          size_t etag_len)
{
    if (!req->if_range)
        return true;
    if (req->if_range_len > 0 && req->if_range[0] == '"')
        return req->if_range_len == etag_len && memcmp(req->if_range, etag, etag_len) == 0;
    int64_t date;
    return http_parse_date(req->if_range, req->if_range_len, &date) == 0 &&
           date == piocp_file_time_sec(info->mtime_ns);
}

/* ------------------------------------------------------------ files -- */

/* `file` is the caller's reference from `files`: the answer takes it over. */
static http_response *serve_file(piocp_file_cache *files, const http_request *req,
                                 const char *path, size_t path_len,
                                 const piocp_cached_file *file, bool head_only, bool keep_alive)
{
    const piocp_file_info *info = &file->info;
    char etag[64];
    size_t etag_len = format_etag(etag, info);
    char modified[30];
    size_t modified_len = http_format_date(piocp_file_time_sec(info->mtime_ns), modified);
    uint64_t size = info->size;

    builder b;
    /* a small file's cached bytes go out with the header in one send */
    size_t inline_room = file->bytes && !head_only ? (size_t)size : 0;
    if (!builder_start(&b, inline_room, req)) {
        piocp_file_cache_release(files, file);
        return NULL;
    }
    if (not_modified(req, info, etag, etag_len)) {
        add_status_and_common(&b, 304, keep_alive, req->minor_version);
        addf(&b, "Last-Modified: %s\r\nETag: %s\r\n\r\n", modified, etag);
        piocp_file_cache_release(files, file);
        return finish_built(&b, req);
    }
    uint64_t start = 0, end = size ? size - 1 : 0;
    int range = 0;
    if (req->range && !head_only && range_applies(req, info, etag, etag_len))
        range = http_parse_range(req->range, req->range_len, size, &start, &end);
    if (range < 0) {
        piocp_file_cache_release(files, file);
        free(b.r);
        char extra[64];
        snprintf(extra, sizeof extra, "Content-Range: bytes */%" PRIu64 "\r\n", size);
        return error_page(req, 416, keep_alive, extra);
    }
    uint64_t count = size == 0 ? 0 : end - start + 1;
    add_status_and_common(&b, range > 0 ? 206 : 200, keep_alive, req->minor_version);
    ADD_LITERAL(&b, "Content-Type: ");
    add_str(&b, piocp_mime_type(path, path_len));
    ADD_LITERAL(&b, "\r\nContent-Length: ");
    add_u64(&b, count);
    ADD_LITERAL(&b, "\r\nLast-Modified: ");
    add(&b, modified, modified_len);
    ADD_LITERAL(&b, "\r\nETag: ");
    add(&b, etag, etag_len);
    ADD_LITERAL(&b, "\r\nAccept-Ranges: bytes\r\n");
    if (range > 0)
        addf(&b, "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64 "\r\n", start, end, size);
    add(&b, "\r\n", 2);
    if (!head_only && count > 0 && file->bytes) {
        add(&b, file->bytes + start, (size_t)count);
        b.r->body_bytes = count;
        piocp_file_cache_release(files, file);
    } else if (head_only || count == 0) {
        piocp_file_cache_release(files, file);
    } else {
        b.r->file = file;
        b.r->file_cache = files;
        b.r->body_offset = start;
        b.r->body_count = count;
        b.r->body_bytes = count;
    }
    return finish_built(&b, req);
}

static http_response *serve_listing(piocp_file root_dir, const http_request *req,
                                    const char *path, size_t path_len, bool head_only,
                                    bool keep_alive)
{
    piocp_file dir;
    const char *reason;
    if (piocp_open_dir_beneath(root_dir, path, path_len, &dir, &reason) < 0)
        return error_page(req, 404, keep_alive, "");
    /* the URL path as the client should see it, starting and ending in '/' */
    char url[PIOCP_SERVED_NAME_MAX + 2];
    int url_len = snprintf(url, sizeof url, "/%.*s%s", (int)path_len, path, path_len ? "/" : "");
    char *html = NULL;
    size_t html_len = 0;
    int rc = url_len > 0 && (size_t)url_len < sizeof url
                 ? piocp_http_listing(dir, url, (size_t)url_len, &html, &html_len)
                 : -ENAMETOOLONG;
    piocp_file_close(dir);
    if (rc < 0)
        return error_page(req, rc == -EACCES ? 403 : 500, keep_alive, "");
    builder b;
    if (!builder_start(&b, head_only ? 0 : html_len, req)) {
        free(html);
        return NULL;
    }
    add_status_and_common(&b, 200, keep_alive, req->minor_version);
    addf(&b, "Content-Type: text/html; charset=utf-8\r\nContent-Length: %zu\r\n"
             "Cache-Control: no-cache\r\n\r\n", html_len);
    if (!head_only) {
        add(&b, html, html_len);
        b.r->body_bytes = html_len;
    }
    free(html);
    return finish_built(&b, req);
}

/* "/docs" names a directory: send the client to "/docs/" so that relative
 * links in its index resolve, keeping any query.  Built from the decoded,
 * normalised path, percent-encoded again: echoing the raw target would turn
 * "//evil.example/x" into a protocol-relative redirect to another host. */
static http_response *redirect_to_directory(const http_request *req, const char *path,
                                            size_t path_len, bool keep_alive)
{
    const char *target = req->target;
    size_t len = req->target_len;
    size_t query = 0;
    while (query < len && target[query] != '?')
        query++;
    size_t fragment = query;
    while (fragment < len && target[fragment] != '#')
        fragment++;
    builder b;
    if (!builder_start(&b, 3 * path_len + (fragment - query) + 32, req))
        return NULL;
    add_status_and_common(&b, 301, keep_alive, req->minor_version);
    static const char location[] = "Location: /";
    add(&b, location, sizeof location - 1);
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < path_len; i++) {
        unsigned char ch = (unsigned char)path[i];
        bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                     ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '/';
        if (plain) {
            add(&b, (const char *)&ch, 1);
        } else {
            char escaped[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            add(&b, escaped, 3);
        }
    }
    add(&b, "/", 1);
    add(&b, target + query, fragment - query); /* the query, if any, as sent */
    static const char tail[] = "\r\nContent-Length: 0\r\n\r\n";
    add(&b, tail, sizeof tail - 1);
    return finish_built(&b, req);
}

static bool method_is(const http_request *req, const char *name)
{
    size_t n = strlen(name);
    return req->method_len == n && memcmp(req->method, name, n) == 0;
}

/* A name that could not be opened: absent (404) or refused (403).  No file
 * can have a name the file system refuses as too long: absent. */
static int status_for_open_error(int rc)
{
    if (rc == -ENOENT || rc == -ENOTDIR || rc == -ENAMETOOLONG)
        return 404;
    /* out of descriptors or memory: the server's trouble, and passing;
     * 403 would tell the client the file is forbidden */
    if (rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM || rc == -ENOBUFS)
        return 503;
    if (rc == -EIO)
        return 500;
    return 403;
}

/* A path naming a directory: its index.html, else a listing (or 403 with
 * listings off). */
static http_response *serve_directory(const piocp_http_server *s, const http_request *req,
                                      const char *path, size_t path_len, bool head_only,
                                      bool keep_alive)
{
    static const char index_name[] = "index.html";
    char index[PIOCP_SERVED_NAME_MAX];
    if (path_len + 1 + sizeof index_name > sizeof index)
        return error_page(req, 414, keep_alive, "");
    size_t index_len = 0;
    if (path_len) {
        memcpy(index, path, path_len);
        index[path_len] = '/';
        index_len = path_len + 1;
    }
    memcpy(index + index_len, index_name, sizeof index_name);
    index_len += sizeof index_name - 1;
    const piocp_cached_file *file;
    const char *reason;
    int rc = piocp_file_cache_open(s->root.files, index, index_len, &file, &reason);
    if (rc == 0)
        return serve_file(s->root.files, req, index, index_len, file, head_only, keep_alive);
    if (rc == -ENOENT && s->listing)
        return serve_listing(s->root.dir, req, path, path_len, head_only, keep_alive);
    if (rc == -ENOENT)
        rc = -EACCES; /* the directory exists but listing it is off */
    return error_page(req, status_for_open_error(rc), keep_alive, "");
}

http_response *http_respond(const piocp_http_server *s, const http_request *req)
{
    bool keep_alive = wants_keep_alive(req);
    bool head_only = method_is(req, "HEAD");
    if (!head_only && !method_is(req, "GET"))
        return error_page(req, 405, keep_alive, "Allow: GET, HEAD\r\n");
    char path[PIOCP_SERVED_NAME_MAX];
    size_t path_len;
    bool trailing_slash;
    int rc = http_decode_path(req->target, req->target_len, path, sizeof path, &path_len,
                              &trailing_slash);
    if (rc < 0)
        return error_page(req, http_error_status(rc), keep_alive, "");
    if (path_len == 0 || trailing_slash)
        return serve_directory(s, req, path, path_len, head_only, keep_alive);
    const piocp_cached_file *file;
    const char *reason;
    rc = piocp_file_cache_open(s->root.files, path, path_len, &file, &reason);
    if (rc == 0)
        return serve_file(s->root.files, req, path, path_len, file, head_only, keep_alive);
    if (rc == -EISDIR)
        return redirect_to_directory(req, path, path_len, keep_alive);
    return error_page(req, status_for_open_error(rc), keep_alive, "");
}

/* ------------------------------------------------------- access log -- */

uint64_t http_response_body_sent(const http_response *r, ssize_t result)
{
    /* a failed send or transmit still says how far it got (pyiocp.h) */
    uint64_t moved = result >= 0 ? (uint64_t)result : (uint64_t)r->req.done;
    /* data[] holds the head, then any body that is not in a file */
    uint64_t head = r->file ? r->head_len : r->head_len - r->body_bytes;
    uint64_t body = moved > head ? moved - head : 0;
    return body < r->body_bytes ? body : r->body_bytes;
}

/* ASCII case-insensitive equality of a header name with a lower-case one. */
static bool name_is(const http_header *h, const char *lower, size_t len)
{
    if (h->name_len != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = h->name[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lower[i])
            return false;
    }
    return true;
}

http_response *http_keep_log_fields(http_response *r, const http_request *req, bool timed)
{
    const http_header *referer = NULL, *agent = NULL;
    for (size_t i = 0; i < req->header_count && !(referer && agent); i++) {
        const http_header *h = &req->headers[i];
        /* the first of a repeated field, as nginx's $http_ variables */
        if (!referer && name_is(h, "referer", 7))
            referer = h;
        else if (!agent && name_is(h, "user-agent", 10))
            agent = h;
    }
    /* No more than a line can show: escaping never shortens a value. */
    size_t referer_len = referer ? referer->value_len : 0;
    size_t agent_len = agent ? agent->value_len : 0;
    if (referer_len > PIOCP_LOG_FIELD_MAX)
        referer_len = PIOCP_LOG_FIELD_MAX;
    if (agent_len > PIOCP_LOG_FIELD_MAX)
        agent_len = PIOCP_LOG_FIELD_MAX;
    size_t at = r->head_len + r->request_line_len;
    http_response *moved =
        realloc(r, sizeof *r + at + sizeof(http_log_fields) + referer_len + agent_len);
    if (!moved)
        return r;
    r = moved;
    http_log_fields f = {
        .referer_len = referer_len,
        .user_agent_len = agent_len,
        .has_referer = referer != NULL,
        .has_user_agent = agent != NULL,
        .started_us = timed ? piocp_monotonic_us() : 0,
    };
    char *p = r->data + at;
    memcpy(p, &f, sizeof f);
    p += sizeof f;
    if (referer)
        memcpy(p, referer->value, referer_len);
    if (agent)
        memcpy(p + referer_len, agent->value, agent_len);
    r->has_log_fields = true;
    return r;
}

void http_log_response(const piocp_http_server *s, piocp_conn *conn, const http_response *r,
                       ssize_t result)
{
    if (!s->root.log)
        return;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    piocp_conn_peer(conn, &peer, &peer_len);
    /* CLF counts body bytes; a cut-off answer logs what went out */
    uint64_t sent = http_response_body_sent(r, result);
    const char *request_line = r->data + r->head_len;
    int64_t now = (int64_t)time(NULL);
    if (s->log_format == PIOCP_LOG_COMMON) {
        char line[1024 + 4 * 256];
        size_t n = piocp_clf_line(line, sizeof line, &peer, peer_len, now, request_line,
                                  r->request_line_len, r->status, sent);
        piocp_access_log_write(s->root.log, line, n);
        return;
    }
    /* answers to requests that could not be read have no fields */
    http_log_fields f = {0};
    const char *values = request_line + r->request_line_len;
    if (r->has_log_fields) {
        memcpy(&f, values, sizeof f);
        values += sizeof f;
    }
    piocp_log_entry e = {
        .peer = &peer,
        .peer_len = peer_len,
        .unix_seconds = now,
        .request_line = r->request_line_len ? request_line : NULL,
        .request_line_len = r->request_line_len,
        .status = r->status,
        .bytes = sent,
        .referer = f.has_referer ? values : NULL,
        .referer_len = f.referer_len,
        .user_agent = f.has_user_agent ? values + f.referer_len : NULL,
        .user_agent_len = f.user_agent_len,
        .duration_us = f.started_us ? piocp_monotonic_us() - f.started_us : -1,
    };
    char line[PIOCP_LOG_LINE_MAX];
    size_t n = s->log_format == PIOCP_LOG_JSON ? piocp_json_line(line, sizeof line, &e)
                                               : piocp_combined_line(line, sizeof line, &e);
    piocp_access_log_write(s->root.log, line, n);
}
