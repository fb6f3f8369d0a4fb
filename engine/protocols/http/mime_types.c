/*
 * mime_types.c - Content-Type by file extension: a binary search over a
 * sorted static table keyed by the extension, lower-cased and zero-padded
 * to 8 bytes (so a comparison is one of two 64-bit integers).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "protocols/http/mime_types.h"

#include <stdint.h>
#include <string.h>

#define EXT_MAX 8

#define TEXT "text/plain; charset=utf-8"

typedef struct mime_entry {
    char ext[EXT_MAX]; /* lower case, zero-padded, not NUL-terminated when 8 long */
    const char *type;
} mime_entry;

/* Sorted by ext, byte order (of the zero-padded keys).  Source files
 * and configuration are served as text/plain so that browsers show them
 * rather than run or download them.  Text types say charset=utf-8. */
static const mime_entry mime_table[] = {
    {"7z", "application/x-7z-compressed"},
    {"aac", "audio/aac"},
    {"apk", "application/vnd.android.package-archive"},
    {"avi", "video/x-msvideo"},
    {"avif", "image/avif"},
    {"bin", "application/octet-stream"},
    {"bmp", "image/bmp"},
    {"bz2", "application/x-bzip2"},
    {"c", TEXT},
    {"cc", TEXT},
    {"cfg", TEXT},
    {"conf", TEXT},
    {"cpp", TEXT},
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
    {"go", TEXT},
    {"gz", "application/gzip"},
    {"h", TEXT},
    {"heic", "image/heic"},
    {"hpp", TEXT},
    {"htm", "text/html; charset=utf-8"},
    {"html", "text/html; charset=utf-8"},
    {"ico", "image/vnd.microsoft.icon"},
    {"ics", "text/calendar; charset=utf-8"},
    {"ini", TEXT},
    {"iso", "application/x-iso9660-image"},
    {"jar", "application/java-archive"},
    {"java", TEXT},
    {"jpeg", "image/jpeg"},
    {"jpg", "image/jpeg"},
    {"js", "text/javascript; charset=utf-8"},
    {"json", "application/json; charset=utf-8"},
    {"jxl", "image/jxl"},
    {"log", TEXT},
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
    {"py", TEXT},
    {"rar", "application/vnd.rar"},
    {"rpm", "application/x-rpm"},
    {"rs", TEXT},
    {"rtf", "application/rtf"},
    {"sh", TEXT},
    {"svg", "image/svg+xml; charset=utf-8"},
    {"tar", "application/x-tar"},
    {"tgz", "application/gzip"},
    {"tif", "image/tiff"},
    {"tiff", "image/tiff"},
    {"toml", "application/toml"},
    {"ts", TEXT},
    {"ttf", "font/ttf"},
    {"txt", TEXT},
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

#define MIME_COUNT (sizeof mime_table / sizeof mime_table[0])

/* A table key as a big-endian integer: comparing these compares the keys
 * byte by byte, zero padding first (compilers make this a load and a byte
 * swap). */
static uint64_t key_value(const char k[EXT_MAX])
{
    const unsigned char *u = (const unsigned char *)k;
    return (uint64_t)u[0] << 56 | (uint64_t)u[1] << 48 | (uint64_t)u[2] << 40 |
           (uint64_t)u[3] << 32 | (uint64_t)u[4] << 24 | (uint64_t)u[5] << 16 |
           (uint64_t)u[6] << 8 | (uint64_t)u[7];
}

/* The key_value of the extension of name[0..len), lower-cased, or 0 if it
 * has none that could be in the table.  Only the end of the name is looked
 * at: the extension, and the dots just before it. */
static uint64_t extension_key(const char *name, size_t len)
{
    size_t dot = len; /* just after the last '.', if it is near enough */
    while (dot > 0 && len - dot <= EXT_MAX && name[dot - 1] != '.' && name[dot - 1] != '/')
        dot--;
    size_t n = len - dot;
    if (dot == 0 || name[dot - 1] != '.' || n == 0 || n > EXT_MAX)
        return 0; /* no '.' in the last segment, or nothing after it, or too long */
    /* Leading dots do not start an extension (".bashrc", "..x"). */
    size_t before = dot - 1;
    while (before > 0 && name[before - 1] == '.')
        before--;
    if (before == 0 || name[before - 1] == '/')
        return 0;
    uint64_t key = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[dot + i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + ('a' - 'A'));
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return 0; /* every key is [a-z0-9]: also keeps a NUL from padding */
        key = key << 8 | c;
    }
    return key << (8 * (EXT_MAX - n)); /* n >= 1: a shift by 56 at most */
}

/* Branch-free binary search (the comparisons become conditional moves, so
 * no misprediction however the requested types vary): the last entry whose
 * key is <= key, then whether it is equal. */
static const char *lookup(uint64_t key)
{
    const mime_entry *base = mime_table;
    size_t n = MIME_COUNT;
    while (n > 1) {
        size_t half = n / 2;
        base = key_value(base[half].ext) <= key ? base + half : base;
        n -= half;
    }
    return key_value(base->ext) == key ? base->type : NULL;
}

const char *piocp_mime_type(const char *name, size_t name_len)
{
    uint64_t key = name ? extension_key(name, name_len) : 0;
    const char *type = key ? lookup(key) : NULL;
    return type ? type : PIOCP_MIME_DEFAULT;
}

size_t piocp_mime_table_check(void)
{
    for (size_t i = 0; i < MIME_COUNT; i++) {
        const mime_entry *e = &mime_table[i];
        if (i > 0 && key_value(mime_table[i - 1].ext) >= key_value(e->ext))
            return i + 1;
        if (e->ext[0] == '\0' || lookup(key_value(e->ext)) != e->type)
            return i + 1;
        char name[EXT_MAX + 2] = "x.";
        size_t n = strnlen(e->ext, EXT_MAX);
        memcpy(name + 2, e->ext, n);
        if (piocp_mime_type(name, n + 2) != e->type)
            return i + 1;
    }
    return 0;
}
