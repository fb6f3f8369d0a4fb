/*
 * path_names.c - the lexical rules for client-supplied file names (see
 * path_names.h): checked once, before a resolver touches the file system.
 */
#include "files/path_names.h"

#include "errors.h"

#include <ctype.h>
#include <string.h>

static int refuse(int err, const char *why, const char **reason)
{
    *reason = why;
    return -err;
}

/* DOS device names Windows resolves in every directory, also with an
 * extension ("nul.txt" is NUL): CON, PRN, AUX, NUL, COM1-9, LPT1-9 (and
 * the superscript digits Windows also accepts are not ASCII, so a
 * byte-wise name never matches them). */
static bool reserved_device(const char *c, size_t len)
{
    size_t base = 0;
    while (base < len && c[base] != '.')
        base++;
    while (base > 0 && c[base - 1] == ' ') /* "CON .txt" is CON too */
        base--;
    char up[5] = {0};
    if (base < 3 || base > 4)
        return false;
    for (size_t i = 0; i < base; i++)
        up[i] = (char)toupper((unsigned char)c[i]);
    if (base == 3)
        return !strcmp(up, "CON") || !strcmp(up, "PRN") || !strcmp(up, "AUX") ||
               !strcmp(up, "NUL");
    return (!memcmp(up, "COM", 3) || !memcmp(up, "LPT", 3)) && up[3] >= '1' && up[3] <= '9';
}

static int check_component(const char *c, size_t len, bool windows_rules, const char **reason)
{
    if (len == 2 && c[0] == '.' && c[1] == '.')
        return refuse(PIOCP_EXDEV, "path escapes root", reason);
    if (!windows_rules || len == 0)
        return 0;
    if (memchr(c, '\\', len) || memchr(c, ':', len))
        return refuse(PIOCP_EINVAL, "invalid name", reason);
    if (c[len - 1] == '.' || c[len - 1] == ' ') {
        if (len == 1 && c[0] == '.')
            return 0; /* "./a": the component itself, as on POSIX */
        return refuse(PIOCP_EINVAL, "invalid name", reason);
    }
    if (reserved_device(c, len))
        return refuse(PIOCP_EPERM, "not a regular file", reason);
    return 0;
}

int piocp_check_served_name(const char *name, size_t name_len, size_t max_len,
                            bool windows_rules, const char **reason)
{
    if (name_len == 0 || memchr(name, '\0', name_len) != NULL)
        return refuse(PIOCP_EINVAL, "invalid name", reason);
    if (name_len >= max_len)
        return refuse(PIOCP_ENAMETOOLONG, "name too long", reason);
    if (name[0] == '/' || (windows_rules && name[0] == '\\'))
        return refuse(PIOCP_EPERM, "absolute path not allowed", reason);
    /* A name ending in '/' can only name a directory. */
    if (name[name_len - 1] == '/')
        return refuse(PIOCP_EISDIR, "not a regular file", reason);
    const char *p = name, *end = name + name_len;
    while (p < end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *stop = slash ? slash : end;
        int rc = check_component(p, (size_t)(stop - p), windows_rules, reason);
        if (rc)
            return rc;
        p = stop + 1;
    }
    return 0;
}
