/*
 * test_http_helpers.c - engine/protocols/http/mime_types.c, engine/protocols/http/listing.c,
 * engine/log/clf.c and the access log's byte count (http_response_body_sent):
 * the helpers of the native HTTP handler.
 * `test_http_helpers NAME` runs one case (ctest runs each in its own
 * process); `test_http_helpers list` names them.
 *
 * Inputs are passed as heap copies of exactly their length, and outputs
 * written into buffers of exactly their capacity, so that under
 * AddressSanitizer a read or write past either fails the test.
 */
#include "protocols/http/internal.h"
#include "protocols/http/listing.h"
#include "log/clf.h"
#include "protocols/http/mime_types.h"
#include "test_util.h"

#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FFFD "\xef\xbf\xbd" /* U+FFFD in UTF-8 */

static char *dup_exact(const char *s, size_t len)
{
    char *b = malloc(len ? len : 1);
    CHECK(b != NULL);
    memcpy(b, s, len);
    return b;
}

static size_t count_of(const char *hay, size_t hay_len, const char *needle)
{
    size_t n = 0, nl = strlen(needle);
    for (const char *p = hay; (p = memmem(p, hay_len - (size_t)(p - hay), needle, nl)); p += nl)
        n++;
    return n;
}

/* ---------------------------------------------------------------- MIME -- */

static const char *mime(const char *name)
{
    size_t len = strlen(name);
    char *copy = dup_exact(name, len);
    const char *type = piocp_mime_type(copy, len);
    free(copy);
    return type;
}

#define HTML "text/html; charset=utf-8"
#define OCTET "application/octet-stream"

static void test_mime_names(void)
{
    static const struct {
        const char *name, *type;
    } cases[] = {
        {"index.html", HTML},
        {"INDEX.HTML", HTML},
        {"Index.HtMl", HTML},
        {"page.htm", HTML},
        {"/var/www/site/index.html", HTML},
        {"app.min.js", "text/javascript; charset=utf-8"},
        {"archive.tar.gz", "application/gzip"},
        {"archive.tar", "application/x-tar"},
        {"photo.JPG", "image/jpeg"},
        {"photo.jpeg", "image/jpeg"},
        {"font.WOFF2", "font/woff2"},
        {"a.b/c", OCTET},          /* the dot is in a directory name */
        {"a.b/c.d/README", OCTET},
        {"v1.2/style.css", "text/css; charset=utf-8"},
        {"README", OCTET},
        {"", OCTET},
        {"/", OCTET},
        {"dir.html/", OCTET},      /* the last segment is empty */
        {".bashrc", OCTET},        /* dotfiles have no extension */
        {".html", OCTET},
        {"..html", OCTET},
        {"dir/.gitignore", OCTET},
        {".config.json", "application/json; charset=utf-8"},
        {"..x.svg", "image/svg+xml; charset=utf-8"},
        {"trailing.", OCTET},
        {"a..", OCTET},
        {"weird.unknownext", OCTET},
        {"long.woff2woff2", OCTET}, /* longer than any extension */
        {"toolong.abcdefghi", OCTET},
        {"x.h", "text/plain; charset=utf-8"},
        {"x.H", "text/plain; charset=utf-8"},
        {"x.ht", OCTET},
        {"x.html5", OCTET},
        {"x.js ", OCTET},
        {"x.j-s", OCTET},
        {"x.\xff\xfe", OCTET},
        {"x.7Z", "application/x-7z-compressed"},
        {"x.mp3", "audio/mpeg"},
        {"x.bin", OCTET},
        {"x.xml", "application/xml; charset=utf-8"},
        {"x.json", "application/json; charset=utf-8"},
        {"x.txt", "text/plain; charset=utf-8"},
        {"x.png", "image/png"},
        {"x.wasm", "application/wasm"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = mime(cases[i].name);
        if (strcmp(got, cases[i].type) != 0)
            fprintf(stderr, "%s: got %s, want %s\n", cases[i].name, got, cases[i].type);
        CHECK(strcmp(got, cases[i].type) == 0);
    }

    /* Only name_len bytes count: no NUL needed, none looked for. */
    CHECK(strcmp(piocp_mime_type("index.html.gz", 10), HTML) == 0);
    CHECK(strcmp(piocp_mime_type("a.jsonx", 6), "application/json; charset=utf-8") == 0);
    CHECK(strcmp(piocp_mime_type("index.html", 8), OCTET) == 0); /* "index.ht" */
    CHECK(strcmp(piocp_mime_type(NULL, 0), OCTET) == 0);
    /* An embedded NUL does not read as the key's zero padding. */
    CHECK(strcmp(piocp_mime_type("x.js\0", 5), OCTET) == 0);
    CHECK(strcmp(piocp_mime_type("x.j\0s", 5), OCTET) == 0);
    CHECK(strcmp(piocp_mime_type("a/\0.css", 7), "text/css; charset=utf-8") == 0);
    /* The same pointer every time: static strings. */
    CHECK(mime("a.png") == mime("b.PNG"));
    CHECK(mime("a") == mime("b.nope"));
}

static const struct {
    const char *ext, *type;
} mime_expected[] = {
    {"7z", "application/x-7z-compressed"},
    {"aac", "audio/aac"},
    {"apk", "application/vnd.android.package-archive"},
    {"avi", "video/x-msvideo"},
    {"avif", "image/avif"},
    {"bin", "application/octet-stream"},
    {"bmp", "image/bmp"},
    {"bz2", "application/x-bzip2"},
    {"c", "text/plain; charset=utf-8"},
    {"cc", "text/plain; charset=utf-8"},
    {"cfg", "text/plain; charset=utf-8"},
    {"conf", "text/plain; charset=utf-8"},
    {"cpp", "text/plain; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"deb", "application/vnd.debian.binary-package"},
    {"dmg", "application/x-apple-diskimage"},
    {"doc", "application/msword"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"eot", "application/vnd.ms-fontobject"},
    {"epub", "application/epub+zip"},
    {"exe", "application/vnd.microsoft.portable-executable"},
    {"flac", "audio/flac"},
    {"gif", "image/gif"},
    {"go", "text/plain; charset=utf-8"},
    {"gz", "application/gzip"},
    {"h", "text/plain; charset=utf-8"},
    {"heic", "image/heic"},
    {"hpp", "text/plain; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"html", "text/html; charset=utf-8"},
    {"ico", "image/vnd.microsoft.icon"},
    {"ics", "text/calendar; charset=utf-8"},
    {"ini", "text/plain; charset=utf-8"},
    {"iso", "application/x-iso9660-image"},
    {"jar", "application/java-archive"},
    {"java", "text/plain; charset=utf-8"},
    {"jpeg", "image/jpeg"},
    {"jpg", "image/jpeg"},
    {"js", "text/javascript; charset=utf-8"},
    {"json", "application/json; charset=utf-8"},
    {"jxl", "image/jxl"},
    {"log", "text/plain; charset=utf-8"},
    {"m4a", "audio/mp4"},
    {"m4v", "video/mp4"},
    {"map", "application/json; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"mid", "audio/midi"},
    {"midi", "audio/midi"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"mkv", "video/x-matroska"},
    {"mov", "video/quicktime"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"mpeg", "video/mpeg"},
    {"mpg", "video/mpeg"},
    {"msi", "application/x-msi"},
    {"odp", "application/vnd.oasis.opendocument.presentation"},
    {"ods", "application/vnd.oasis.opendocument.spreadsheet"},
    {"odt", "application/vnd.oasis.opendocument.text"},
    {"oga", "audio/ogg"},
    {"ogg", "audio/ogg"},
    {"ogv", "video/ogg"},
    {"opus", "audio/ogg"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"png", "image/png"},
    {"ppt", "application/vnd.ms-powerpoint"},
    {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
    {"py", "text/plain; charset=utf-8"},
    {"rar", "application/vnd.rar"},
    {"rpm", "application/x-rpm"},
    {"rs", "text/plain; charset=utf-8"},
    {"rtf", "application/rtf"},
    {"sh", "text/plain; charset=utf-8"},
    {"svg", "image/svg+xml; charset=utf-8"},
    {"tar", "application/x-tar"},
    {"tgz", "application/gzip"},
    {"tif", "image/tiff"},
    {"tiff", "image/tiff"},
    {"toml", "application/toml"},
    {"ts", "text/plain; charset=utf-8"},
    {"ttf", "font/ttf"},
    {"txt", "text/plain; charset=utf-8"},
    {"vtt", "text/vtt; charset=utf-8"},
    {"wasm", "application/wasm"},
    {"wav", "audio/wav"},
    {"webm", "video/webm"},
    {"webp", "image/webp"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"xls", "application/vnd.ms-excel"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"xml", "application/xml; charset=utf-8"},
    {"xz", "application/x-xz"},
    {"yaml", "application/yaml"},
    {"yml", "application/yaml"},
    {"zip", "application/zip"},
    {"zst", "application/zstd"},
};

static void test_mime_table(void)
{
    CHECK(piocp_mime_table_check() == 0);
    size_t n = sizeof mime_expected / sizeof mime_expected[0];
    for (size_t i = 0; i < n; i++) {
        const char *ext = mime_expected[i].ext;
        char name[64], upper[64];
        snprintf(name, sizeof name, "dir.d/some.file.%s", ext);
        snprintf(upper, sizeof upper, "DIR.D/SOME.FILE.%s", ext);
        for (char *p = upper; *p; p++)
            if (*p >= 'a' && *p <= 'z')
                *p = (char)(*p - 'a' + 'A');
        if (strcmp(mime(name), mime_expected[i].type) != 0)
            fprintf(stderr, "%s: got %s\n", name, mime(name));
        CHECK(strcmp(mime(name), mime_expected[i].type) == 0);
        CHECK(mime(upper) == mime(name));
        /* One character more is not the same extension. */
        snprintf(name, sizeof name, "f.%sq", ext);
        CHECK(strcmp(mime(name), OCTET) == 0);
        /* The text types, and only they, carry the charset. */
        const char *t = mime_expected[i].type;
        bool texty = strncmp(t, "text/", 5) == 0 || strncmp(t, "application/json", 16) == 0 ||
                     strncmp(t, "application/xml", 15) == 0 ||
                     strncmp(t, "image/svg+xml", 13) == 0;
        CHECK(texty == (strstr(t, "; charset=utf-8") != NULL));
    }
    CHECK(n >= 90);
}

/* ------------------------------------------------------------- listing -- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void rm_tree(const char *dir)
{
    CHECK(nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
}

static int make_file(int dir_fd, const char *name)
{
    int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

/* A temporary directory holding names that need escaping; returns its fd
 * and its path in `path`. */
static int make_tricky_dir(char path[64])
{
    static const char *const files[] = {
        "<script>", "a&b", "\"quote\"", "100%", "sp ace", "new\nline", "bad\xff\xfe",
        "caf\xc3\xa9", "it's", "q?x#y", ".hidden", "javascript:alert(1)", "Zed",
        "\xc0\xaf", "\xed\xa0\x80", "\xf0\x9f\x98\x80", "tab\there",
    };
    strcpy(path, "/tmp/piocp-listing-XXXXXX");
    CHECK(mkdtemp(path) != NULL);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(fd >= 0);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        CHECK(make_file(fd, files[i]) == 0);
    CHECK(mkdirat(fd, "sub dir", 0755) == 0);
    CHECK(mkdirat(fd, "dir<x>", 0755) == 0);
    CHECK(make_file(fd, "sub dir/inner") == 0);
    CHECK(symlinkat("sub dir", fd, "link") == 0);     /* to a directory */
    CHECK(symlinkat("nowhere", fd, "dangling") == 0); /* to nothing */
    return fd;
}

#define LI(href, text) "<li><a href=\"" href "\">" text "</a></li>\n"

static const char tricky_url[] = "/x/<\"&'\x01\xff/";

/* The whole page make_tricky_dir's directory must give under tricky_url. */
static const char tricky_page[] =
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<title>Index of /x/&lt;&quot;&amp;&#x27;" FFFD FFFD "/</title>\n</head>\n<body>\n"
    "<h1>Index of /x/&lt;&quot;&amp;&#x27;" FFFD FFFD "/</h1>\n<hr>\n<ul>\n"
    LI("../", "../")
    LI("%22quote%22", "&quot;quote&quot;")
    LI(".hidden", ".hidden")
    LI("100%25", "100%")
    LI("%3Cscript%3E", "&lt;script&gt;")
    LI("Zed", "Zed")
    LI("a%26b", "a&amp;b")
    LI("bad%FF%FE", "bad" FFFD FFFD)
    LI("caf%C3%A9", "caf\xc3\xa9")
    LI("dangling", "dangling")
    LI("dir%3Cx%3E/", "dir&lt;x&gt;/")
    LI("it%27s", "it&#x27;s")
    LI("javascript%3Aalert%281%29", "javascript:alert(1)")
    LI("link", "link")
    LI("new%0Aline", "new" FFFD "line")
    LI("q%3Fx%23y", "q?x#y")
    LI("sp%20ace", "sp ace")
    LI("sub%20dir/", "sub dir/")
    LI("tab%09here", "tab" FFFD "here")
    LI("%C0%AF", FFFD FFFD)                 /* overlong '/' */
    LI("%ED%A0%80", FFFD FFFD FFFD)         /* a surrogate */
    LI("%F0%9F%98%80", "\xf0\x9f\x98\x80")  /* U+1F600, valid */
    "</ul>\n<hr>\n</body>\n</html>\n";

/* Strict UTF-8: no stray bytes, overlongs, surrogates or code points past
 * U+10FFFF. */
static bool valid_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 2, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 3, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 4, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + k > n)
            return false;
        for (size_t j = 1; j < k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + j] & 0x3f);
        }
        if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k;
    }
    return true;
}

/* Lists dir_fd under url (a heap copy of exactly its length) and checks
 * the invariants every page has. */
static char *list(int dir_fd, const char *url, size_t url_len, size_t *len)
{
    char *u = dup_exact(url, url_len);
    char *page = (char *)1;
    int rc = piocp_http_listing(dir_fd, u, url_len, &page, len);
    free(u);
    if (rc != 0)
        fprintf(stderr, "piocp_http_listing: %s\n", strerror(-rc));
    CHECK(rc == 0 && page != NULL);
    CHECK(page[*len] == '\0' && strlen(page) == *len);
    /* Valid UTF-8, and no control characters but the line ends. */
    CHECK(valid_utf8(page, *len));
    for (size_t i = 0; i < *len; i++) {
        unsigned char c = (unsigned char)page[i];
        CHECK(c == '\n' || (c >= 0x20 && c != 0x7f));
    }
    return page;
}

static void check_tricky_listing(int force_stat)
{
    char path[64];
    int fd = make_tricky_dir(path);
    piocp_http_listing_force_stat(force_stat);
    int fds = count_fds();
    size_t len;
    char *page = list(fd, tricky_url, sizeof tricky_url - 1, &len);
    CHECK(count_fds() == fds);
    if (len != sizeof tricky_page - 1 || memcmp(page, tricky_page, len) != 0)
        fprintf(stderr, "got:\n%s\nwant:\n%s\n", page, tricky_page);
    CHECK(len == sizeof tricky_page - 1 && memcmp(page, tricky_page, len) == 0);
    CHECK(valid_utf8(page, len));
    /* Nothing a name holds comes through raw. */
    CHECK(strstr(page, "<script>") == NULL && strstr(page, "a&b") == NULL);
    CHECK(strstr(page, "new\nline") == NULL && strstr(page, "\"quote\"") == NULL);
    CHECK(memmem(page, len, "\xff", 1) == NULL && memmem(page, len, "\x01", 1) == NULL);
    free(page);
    /* The descriptor is still the caller's, open, and unmoved. */
    CHECK(fcntl(fd, F_GETFD) >= 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 0);
    close(fd);
    rm_tree(path);
}

static void test_listing_names(void)
{
    check_tricky_listing(0);
}

static void test_listing_stat_fallback(void)
{
    check_tricky_listing(1);
}

static void test_listing_root(void)
{
    char path[64] = "/tmp/piocp-listing-XXXXXX";
    CHECK(mkdtemp(path) != NULL);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(fd >= 0);
    int fds = count_fds();
    size_t len;

    /* "/" has no "../"; an empty directory lists nothing. */
    static const char empty_root[] =
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<title>Index of /</title>\n</head>\n<body>\n<h1>Index of /</h1>\n<hr>\n<ul>\n"
        "</ul>\n<hr>\n</body>\n</html>\n";
    char *page = list(fd, "/", 1, &len);
    CHECK(len == sizeof empty_root - 1 && strcmp(page, empty_root) == 0);
    free(page);

    /* Any other path has it, first. */
    CHECK(make_file(fd, "-") == 0); /* would sort before "../" */
    CHECK(mkdirat(fd, "...", 0755) == 0);
    page = list(fd, "/docs/", 6, &len);
    CHECK(strstr(page, "<title>Index of /docs/</title>") != NULL);
    CHECK(strstr(page, "<h1>Index of /docs/</h1>") != NULL);
    CHECK(strstr(page, "<ul>\n" LI("../", "../") LI("-", "-") LI(".../", ".../") "</ul>\n"));
    CHECK(count_of(page, len, "<li>") == 3);
    free(page);
    page = list(fd, "//", 2, &len);
    CHECK(count_of(page, len, "href=\"../\"") == 1);
    free(page);
    page = list(fd, "/", 1, &len);
    CHECK(count_of(page, len, "href=\"../\"") == 0 && count_of(page, len, "<li>") == 2);
    free(page);

    /* An O_PATH descriptor does too, and gives the same page. */
    int opath = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    CHECK(opath >= 0);
    size_t len2;
    char *a = list(fd, "/d/", 3, &len), *b = list(opath, "/d/", 3, &len2);
    CHECK(len == len2 && memcmp(a, b, len) == 0);
    free(a);
    free(b);
    close(opath);

    CHECK(count_fds() == fds);
    close(fd);
    rm_tree(path);
}

static void test_listing_errors(void)
{
    char path[64] = "/tmp/piocp-listing-XXXXXX";
    CHECK(mkdtemp(path) != NULL);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(fd >= 0);
    CHECK(make_file(fd, "file") == 0);
    int file_fd = openat(fd, "file", O_RDONLY | O_CLOEXEC);
    CHECK(file_fd >= 0);
    int fds = count_fds();

    static const struct {
        const char *url;
        size_t len;
    } bad_urls[] = {{"", 0}, {"docs/", 5}, {"/docs", 5}, {"docs", 4}, {"/docs/", 0}};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        char *out = (char *)1;
        size_t out_len = 99;
        CHECK(piocp_http_listing(fd, bad_urls[i].url, bad_urls[i].len, &out, &out_len) ==
              -EINVAL);
        CHECK(out == NULL && out_len == 0);
    }
    char *out = (char *)1;
    size_t out_len = 99;
    CHECK(piocp_http_listing(fd, NULL, 1, &out, &out_len) == -EINVAL);
    CHECK(piocp_http_listing(fd, "/", 1, NULL, &out_len) == -EINVAL);
    CHECK(piocp_http_listing(fd, "/", 1, &out, NULL) == -EINVAL);
    CHECK(piocp_http_listing(-1, "/", 1, &out, &out_len) == -EBADF);
    CHECK(out == NULL && out_len == 0);
    CHECK(piocp_http_listing(file_fd, "/", 1, &out, &out_len) == -ENOTDIR);
    CHECK(piocp_http_listing(999999, "/", 1, &out, &out_len) == -EBADF);

    /* A directory that cannot be read (root reads anything: skipped). */
    if (geteuid() != 0) {
        CHECK(mkdirat(fd, "locked", 0) == 0);
        int locked = openat(fd, "locked", O_PATH | O_DIRECTORY | O_CLOEXEC);
        CHECK(locked >= 0);
        CHECK(piocp_http_listing(locked, "/", 1, &out, &out_len) == -EACCES);
        close(locked);
        CHECK(fchmodat(fd, "locked", 0755, 0) == 0);
    }

    CHECK(count_fds() == fds);
    close(file_fd);
    close(fd);
    rm_tree(path);
}

static void test_listing_truncation(void)
{
    char path[64] = "/tmp/piocp-listing-XXXXXX";
    CHECK(mkdtemp(path) != NULL);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(fd >= 0);
    char name[32];
    /* Created in an order unrelated to the names' (i * 7919 mod 10050). */
    for (int i = 0; i < PIOCP_HTTP_LISTING_MAX; i++) {
        snprintf(name, sizeof name, "f%05d", (int)((long)i * 7919 % 10050));
        CHECK(make_file(fd, name) == 0);
    }
    int fds = count_fds();
    size_t len;

    /* Exactly the maximum: all of it, not truncated. */
    char *page = list(fd, "/big/", 5, &len);
    CHECK(count_of(page, len, "<li>") == PIOCP_HTTP_LISTING_MAX + 1);
    CHECK(strstr(page, "truncated") == NULL);
    free(page);

    for (int i = PIOCP_HTTP_LISTING_MAX; i < 10050; i++) {
        snprintf(name, sizeof name, "f%05d", (int)((long)i * 7919 % 10050));
        CHECK(make_file(fd, name) == 0);
    }
    page = list(fd, "/big/", 5, &len);
    CHECK(count_of(page, len, "<li>") == PIOCP_HTTP_LISTING_MAX + 1); /* and ../ */
    CHECK(count_of(page, len, "<p>(listing truncated)</p>\n") == 1);
    CHECK(strstr(page, "</ul>\n<p>(listing truncated)</p>\n<hr>\n</body>\n</html>\n") != NULL);
    /* Sorted: each name after the one before. */
    const char *p = strstr(page, LI("../", "../"));
    CHECK(p != NULL);
    char prev[16] = "";
    size_t seen = 0;
    while ((p = strstr(p, "<li><a href=\"f"))) {
        p += strlen("<li><a href=\"");
        char cur[16];
        CHECK(sscanf(p, "%6[f0-9]", cur) == 1 && strlen(cur) == 6);
        CHECK(strcmp(prev, cur) < 0);
        strcpy(prev, cur);
        seen++;
    }
    CHECK(seen == PIOCP_HTTP_LISTING_MAX);
    free(page);

    CHECK(count_fds() == fds);
    close(fd);
    rm_tree(path);
}

typedef struct lister {
    int fd;
    const char *want;
    size_t want_len;
    int failures;
} lister;

static void *list_many(void *arg)
{
    lister *l = arg;
    for (int i = 0; i < 100; i++) {
        char *page;
        size_t len;
        if (piocp_http_listing(l->fd, tricky_url, sizeof tricky_url - 1, &page, &len) != 0) {
            l->failures++;
            continue;
        }
        l->failures += len != l->want_len || memcmp(page, l->want, len) != 0;
        free(page);
    }
    return NULL;
}

/* Threads listing one descriptor at once do not disturb each other. */
static void test_listing_concurrent(void)
{
    char path[64];
    int fd = make_tricky_dir(path);
    int fds = count_fds();
    enum { N = 4 };
    pthread_t threads[N];
    lister listers[N];
    for (int i = 0; i < N; i++) {
        listers[i] = (lister){fd, tricky_page, sizeof tricky_page - 1, 0};
        CHECK(pthread_create(&threads[i], NULL, list_many, &listers[i]) == 0);
    }
    for (int i = 0; i < N; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        CHECK(listers[i].failures == 0);
    }
    CHECK(count_fds() == fds);
    close(fd);
    rm_tree(path);
}

/* ----------------------------------------------------------------- CLF -- */

static struct sockaddr_storage v4(const char *ip, socklen_t *len)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(54321);
    CHECK(inet_pton(AF_INET, ip, &sin->sin_addr) == 1);
    *len = sizeof *sin;
    return ss;
}

static struct sockaddr_storage v6(const char *ip, socklen_t *len)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(443);
    CHECK(inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1);
    *len = sizeof *sin6;
    return ss;
}

/* One line into a heap buffer of exactly cap bytes; returns a copy. */
static char *clf(size_t cap, const struct sockaddr_storage *peer, socklen_t peer_len,
                 int64_t t, const char *req, size_t req_len, int status, uint64_t bytes,
                 size_t *n)
{
    char *buf = malloc(cap ? cap : 1);
    CHECK(buf != NULL);
    char *r = req ? dup_exact(req, req_len) : NULL;
    *n = piocp_clf_line(buf, cap, peer, peer_len, t, r, req_len, status, bytes);
    free(r);
    char *copy = malloc(*n + 1);
    CHECK(copy != NULL);
    if (cap == 0) {
        CHECK(*n == 0);
    } else {
        CHECK(*n < cap && buf[*n] == '\0' && strlen(buf) == *n);
        CHECK(*n == 0 || buf[*n - 1] == '\n');
        CHECK(cap < 2 || *n >= 1);
    }
    memcpy(copy, buf, *n);
    copy[*n] = '\0';
    free(buf);
    return copy;
}

static void expect_line(const struct sockaddr_storage *peer, socklen_t peer_len, int64_t t,
                        const char *req, size_t req_len, int status, uint64_t bytes,
                        const char *want)
{
    size_t n;
    char *got = clf(PIOCP_CLF_LINE_MAX(req_len), peer, peer_len, t, req, req_len, status,
                    bytes, &n);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "got  %s\nwant %s\n", got, want);
    CHECK(n == strlen(want) && strcmp(got, want) == 0);
    free(got);
}

#define REQ(lit) lit, sizeof(lit) - 1

static void test_clf_peers(void)
{
    socklen_t len;
    struct sockaddr_storage ss = v4("127.0.0.1", &len);
    expect_line(&ss, len, 971186136, REQ("GET /a.html HTTP/1.1"), 200, 2326,
                "127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /a.html HTTP/1.1\" 200 2326\n");
    ss = v4("255.255.255.255", &len);
    expect_line(&ss, len, 0, REQ("GET / HTTP/1.0"), 404, 0,
                "255.255.255.255 - - [01/Jan/1970:00:00:00 +0000] \"GET / HTTP/1.0\" 404 -\n");
    ss = v6("2001:db8::1", &len);
    expect_line(&ss, len, 0, REQ("GET / HTTP/1.1"), 200, 1,
                "2001:db8::1 - - [01/Jan/1970:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n");
    ss = v6("::1", &len);
    expect_line(&ss, len, 0, REQ("GET / HTTP/1.1"), 200, 1,
                "::1 - - [01/Jan/1970:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n");
    ss = v6("fe80:1234:5678:9abc:def0:1234:5678:9abc", &len);
    expect_line(&ss, len, 0, REQ("GET / HTTP/1.1"), 200, 1,
                "fe80:1234:5678:9abc:def0:1234:5678:9abc - - [01/Jan/1970:00:00:00 +0000] "
                "\"GET / HTTP/1.1\" 200 1\n");
    /* A dual-stack socket's IPv4 client is logged as IPv4. */
    ss = v6("::ffff:10.1.2.3", &len);
    expect_line(&ss, len, 0, REQ("GET / HTTP/1.1"), 200, 1,
                "10.1.2.3 - - [01/Jan/1970:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n");

    /* No usable address: "-". */
    expect_line(NULL, 0, 0, REQ("GET / HTTP/1.1"), 200, 1,
                "- - - [01/Jan/1970:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n");
    ss = v4("1.2.3.4", &len);
    expect_line(&ss, len - 1, 0, REQ("GET / HTTP/1.1"), 200, 1,
                "- - - [01/Jan/1970:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n");
    expect_line(&ss, 0, 0, REQ("GET / HTTP/1.1"), 200, 1,
                "- - - [01/Jan/1970:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n");
    ss = v6("::1", &len);
    expect_line(&ss, (socklen_t)sizeof(struct sockaddr_in), 0, REQ("GET / HTTP/1.1"), 200, 1,
                "- - - [01/Jan/1970:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n");
    memset(&ss, 0, sizeof ss);
    struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
    sun->sun_family = AF_UNIX;
    strcpy(sun->sun_path, "/run/x.sock");
    expect_line(&ss, (socklen_t)sizeof *sun, 0, REQ("GET / HTTP/1.1"), 200, 1,
                "- - - [01/Jan/1970:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n");
}

static void test_clf_time(void)
{
    static const struct {
        int64_t t;
        const char *date;
    } cases[] = {
        {0, "01/Jan/1970:00:00:00"},
        {971186136, "10/Oct/2000:13:55:36"},
        {951782400, "29/Feb/2000:00:00:00"},
        {951868799, "29/Feb/2000:23:59:59"},
        {951868800, "01/Mar/2000:00:00:00"},
        {1709251199, "29/Feb/2024:23:59:59"},
        {1735689599, "31/Dec/2024:23:59:59"},
        {1735689600, "01/Jan/2025:00:00:00"},
        {2147483647, "19/Jan/2038:03:14:07"},
        {2147483648, "19/Jan/2038:03:14:08"},
        {4107542400, "01/Mar/2100:00:00:00"}, /* 2100 is not a leap year */
        {-1, "31/Dec/1969:23:59:59"},
        {-2208988800, "01/Jan/1900:00:00:00"},
        {-62167219200, "01/Jan/0000:00:00:00"},
        {INT64_MIN, "01/Jan/0000:00:00:00"}, /* clamped */
        {253402300799, "31/Dec/9999:23:59:59"},
        {253402300800, "31/Dec/9999:23:59:59"},
        {INT64_MAX, "31/Dec/9999:23:59:59"},
    };
    socklen_t len;
    struct sockaddr_storage ss = v4("10.0.0.1", &len);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char want[128];
        snprintf(want, sizeof want, "10.0.0.1 - - [%s +0000] \"GET / HTTP/1.1\" 200 5\n",
                 cases[i].date);
        expect_line(&ss, len, cases[i].t, REQ("GET / HTTP/1.1"), 200, 5, want);
    }

    /* Against the C library, a step of a little over a day apart from
     * 1900 to 2200 (every date, every second of the day in turn). */
    for (int64_t t = -2208988800; t < INT64_C(7258118400); t += 86400 + 7) {
        time_t tt = (time_t)t;
        struct tm tm;
        CHECK(gmtime_r(&tt, &tm) != NULL);
        char date[64], want[160];
        CHECK(strftime(date, sizeof date, "%d/%b/%Y:%H:%M:%S", &tm) == 20);
        snprintf(want, sizeof want, "10.0.0.1 - - [%s +0000] \"-\" 304 -\n", date);
        size_t n;
        char *got = clf(PIOCP_CLF_LINE_MAX(0), &ss, len, t, "", 0, 304, 0, &n);
        if (strcmp(got, want) != 0)
            fprintf(stderr, "t=%lld got  %s want %s\n", (long long)t, got, want);
        CHECK(strcmp(got, want) == 0);
        free(got);
    }
}

static void test_clf_request(void)
{
    socklen_t len;
    struct sockaddr_storage ss = v4("127.0.0.1", &len);
    /* Quotes, backslashes, controls, DEL and non-ASCII bytes: \xNN. */
    expect_line(&ss, len, 0, REQ("GET /a\"b\\c\x01\x7f\xff\n HTTP/1.1\r"), 400, 11,
                "127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] "
                "\"GET /a\\x22b\\x5cc\\x01\\x7f\\xff\\x0a HTTP/1.1\\x0d\" 400 11\n");
    /* Embedded NUL. */
    expect_line(&ss, len, 0, REQ("GET /\0 HTTP/1.1"), 400, 0,
                "127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] \"GET /\\x00 HTTP/1.1\" 400 -\n");
    /* No request line at all. */
    expect_line(&ss, len, 0, NULL, 0, 408, 0,
                "127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] \"-\" 408 -\n");
    expect_line(&ss, len, 0, "", 0, 400, 0,
                "127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] \"-\" 400 -\n");
    /* Big counts and odd statuses. */
    expect_line(&ss, len, 0, REQ("GET /big HTTP/1.1"), 206, UINT64_MAX,
                "127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] \"GET /big HTTP/1.1\" 206 "
                "18446744073709551615\n");
    expect_line(&ss, len, 0, REQ("X"), 0, 0,
                "127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] \"X\" 0 -\n");
    expect_line(&ss, len, 0, REQ("X"), -1, 1,
                "127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] \"X\" -1 1\n");
    expect_line(&ss, len, 0, REQ("X"), INT32_MIN, 1,
                "127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] \"X\" -2147483648 1\n");

    /* A long line fits PIOCP_CLF_LINE_MAX, every byte escaped or not. */
    enum { LONG = 8192 };
    char *req = malloc(LONG);
    CHECK(req != NULL);
    for (int fill = 0; fill < 2; fill++) {
        memset(req, fill ? '"' : 'a', LONG);
        size_t n;
        char *got = clf(PIOCP_CLF_LINE_MAX(LONG), &ss, len, 0, req, LONG, 200, 1, &n);
        CHECK(n == strlen("127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] \"\" 200 1\n") +
                       (size_t)LONG * (fill ? 4 : 1));
        free(got);
    }
    free(req);
}

/* Every capacity from 0 to past the full line: still one NUL-terminated
 * line, ending in '\n', the request cut between escapes. */
static void test_clf_truncation(void)
{
    static const char req[] = "GET /\"\\\x01x\xffy HTTP/1.1";
    socklen_t len;
    struct sockaddr_storage ss = v6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", &len);
    size_t full_len;
    char *full = clf(1024, &ss, len, 971186136, req, sizeof req - 1, 200, 2326, &full_len);
    const char *open = strchr(full, '"'), *close = strrchr(full, '"');
    size_t head_len = (size_t)(open + 1 - full), tail_len = full_len - (size_t)(close - full);
    CHECK(strcmp(close, "\" 200 2326\n") == 0);
    for (size_t cap = 0; cap <= full_len + 3; cap++) {
        size_t n;
        char *got = clf(cap, &ss, len, 971186136, req, sizeof req - 1, 200, 2326, &n);
        if (cap > full_len) {
            CHECK(n == full_len && strcmp(got, full) == 0);
        } else if (cap > head_len + tail_len) {
            /* The fixed fields whole; the request a prefix, cut at an escape. */
            CHECK(n + 1 <= cap && n + 1 + 3 >= cap);
            CHECK(memcmp(got, full, head_len) == 0);
            CHECK(strcmp(got + n - tail_len, close) == 0);
            size_t req_len = n - head_len - tail_len;
            CHECK(memcmp(got + head_len, full + head_len, req_len) == 0);
            const char *last = NULL;
            for (size_t i = 0; i < req_len; i++)
                if (got[head_len + i] == '\\')
                    last = got + head_len + i;
            CHECK(last == NULL || last + 4 <= got + head_len + req_len);
        } else if (cap >= 2) {
            /* As much of the line as fits, then '\n'. */
            CHECK(n == cap - 1);
            CHECK(memcmp(got, full, n - 1 < head_len ? n - 1 : head_len) == 0);
        } else {
            CHECK(n == 0);
        }
        free(got);
    }
    free(full);
}

/* ------------------------------------------------- logged body bytes -- */

/* An answer as respond.c builds it: head_len bytes of data[] go out first
 * (for a send-only answer they end with its body_bytes of body), then, for
 * a file answer, body_bytes from the file. */
static http_response *answer(size_t head_len, uint64_t body_bytes, bool from_file)
{
    static piocp_cached_file file; /* only its address matters here */
    http_response *r = calloc(1, sizeof *r + head_len);
    CHECK(r != NULL);
    r->head_len = head_len;
    r->body_bytes = body_bytes;
    r->file = from_file ? &file : NULL;
    return r;
}

static uint64_t body_sent(http_response *r, ssize_t result, size_t done)
{
    r->req.done = done;
    return http_response_body_sent(r, result);
}

static void test_log_body_bytes(void)
{
    /* a file answer: 200 bytes of head, then 1000 from the file */
    http_response *r = answer(200, 1000, true);
    CHECK(body_sent(r, 1200, 1200) == 1000);
    CHECK(body_sent(r, -ECONNRESET, 0) == 0);       /* cancelled before it ran */
    CHECK(body_sent(r, -ECONNRESET, 150) == 0);     /* cut inside the head */
    CHECK(body_sent(r, -ECONNRESET, 200) == 0);     /* the head alone */
    CHECK(body_sent(r, -EPIPE, 700) == 500);        /* cut inside the body */
    CHECK(body_sent(r, -EIO, 1200) == 1000);        /* everything went, then it failed */
    CHECK(body_sent(r, -EIO, 5000) == 1000);        /* never more than the body */
    free(r);

    /* a send-only answer: 130 bytes of head and 20 of body in data[] */
    r = answer(150, 20, false);
    CHECK(body_sent(r, 150, 150) == 20);
    CHECK(body_sent(r, -ECONNRESET, 100) == 0);
    CHECK(body_sent(r, -ECONNRESET, 140) == 10);
    CHECK(body_sent(r, -ECONNRESET, 150) == 20);
    free(r);

    /* HEAD, 304: a head and no body */
    r = answer(180, 0, false);
    CHECK(body_sent(r, 180, 180) == 0);
    CHECK(body_sent(r, -ECONNRESET, 90) == 0);
    free(r);
}

static const test_case cases[] = {
    {"mime_names", test_mime_names},
    {"mime_table", test_mime_table},
    {"listing_names", test_listing_names},
    {"listing_stat_fallback", test_listing_stat_fallback},
    {"listing_root", test_listing_root},
    {"listing_errors", test_listing_errors},
    {"listing_truncation", test_listing_truncation},
    {"listing_concurrent", test_listing_concurrent},
    {"clf_peers", test_clf_peers},
    {"clf_time", test_clf_time},
    {"clf_request", test_clf_request},
    {"clf_truncation", test_clf_truncation},
    {"log_body_bytes", test_log_body_bytes},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return run_test_case(cases, argc > 1 ? argv[1] : "list");
}
