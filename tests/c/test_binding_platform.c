/* test_binding_platform.c - pyiocp/binding_platform.h, the system calls the
 * Cython binding makes, on both platforms: the binding itself cannot be
 * built for Windows on these machines (no Windows Python to link), but its
 * Windows half can run here, under Wine, through this test. */
#include "binding_platform.h"
#include "test_check.h"
#include "test_net.h"

#include <stdio.h>
#include <string.h>

#ifdef _WIN32
#define test_fileno _fileno
#else
#define test_fileno fileno
#endif

static const char FILE_NAME[] = "binding_platform_test.bin"; /* in ctest's working directory */

static long long write_test_file(void)
{
    FILE *f = fopen(FILE_NAME, "wb");
    CHECK(f);
    for (int i = 0; i < 5000; i++)
        CHECK(fputc('a' + i % 26, f) != EOF);
    CHECK(fclose(f) == 0);
    return 5000;
}

static intptr_t os_handle_of(FILE *f)
{
#ifdef _WIN32
    return _get_osfhandle(test_fileno(f)); /* a good descriptor: no invalid-parameter handler */
#else
    return test_fileno(f);
#endif
}

static void test_files(void)
{
    long long size = write_test_file();
    piocp_file file = PIOCP_INVALID_FILE, dup = PIOCP_INVALID_FILE;
    int kind = -1;
    uint64_t got = 0;
    CHECK(binding_open_file(FILE_NAME, &file) == 0);
    CHECK(binding_file_info(file, &kind, &got) == 0);
    CHECK(kind == BINDING_FILE_REGULAR && got == (uint64_t)size);
    /* the dup outlives the original */
    CHECK(binding_dup_file(file, &dup) == 0);
    binding_close_file(file);
    CHECK(binding_file_info(dup, &kind, &got) == 0 && got == (uint64_t)size);
    binding_close_file(dup);

    /* a directory opens, and says so (transmit_file raises IsADirectoryError) */
    CHECK(binding_open_file(".", &file) == 0);
    CHECK(binding_file_info(file, &kind, &got) == 0 && kind == BINDING_FILE_DIRECTORY);
    binding_close_file(file);

    CHECK(binding_open_file("no such file here", &file) == -PIOCP_ENOENT);
    CHECK(binding_open_file("\xff\xfe not UTF-8", &file) < 0);

    /* a C runtime stream's file, borrowed by its OS handle */
    FILE *stream = fopen(FILE_NAME, "rb");
    CHECK(stream);
    file = binding_file_from_os_handle(os_handle_of(stream));
    CHECK(binding_file_info(file, &kind, &got) == 0 && kind == BINDING_FILE_REGULAR &&
          got == (uint64_t)size);
    CHECK(binding_file_readable(file) == 1);
    fclose(stream);

    /* transmit_file refuses a descriptor it cannot read from (POSIX; a
     * Windows handle does not say, and its first read fails instead) */
    stream = fopen(FILE_NAME, "ab");
    CHECK(stream);
    file = binding_file_from_os_handle(os_handle_of(stream));
#ifdef _WIN32
    CHECK(binding_file_readable(file) == 1);
#else
    CHECK(binding_file_readable(file) == 0);
#endif
    fclose(stream);
#ifdef O_PATH
    int path_only = open(FILE_NAME, O_PATH | O_CLOEXEC);
    CHECK(path_only >= 0);
    CHECK(binding_file_readable(path_only) == 0);
    close(path_only);
#endif
    remove(FILE_NAME);
}

/* run()'s wait: returns once the wake-up socket has a byte to read. */
static void test_wait_readable(void)
{
    net_init();
    piocp_socket listener = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(listener != PIOCP_INVALID_SOCKET);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    CHECK(bind(listener, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(listen(listener, 1) == 0);
    CHECK(getsockname(listener, (struct sockaddr *)&addr, &len) == 0);
    piocp_socket client = net_connect_loopback(ntohs(addr.sin_port));
    piocp_socket server = accept(listener, NULL, NULL);
    CHECK(server != PIOCP_INVALID_SOCKET);
    CHECK(net_send_all(client, "s", 1) == 0);
    CHECK(binding_wait_readable(server) == 0);
    char byte = 0;
    CHECK(net_recv_exact(server, &byte, 1) == 0 && byte == 's');
    /* POSIX answers whether a socket is non-blocking; Winsock cannot */
    int nonblocking = binding_socket_is_nonblocking(server);
#ifdef _WIN32
    CHECK(nonblocking == -PIOCP_EOPNOTSUPP);
#else
    CHECK(nonblocking == 0);
#endif
    net_close(server);
    net_close(client);
    net_close(listener);
}

static const test_case cases[] = {
    {"files", test_files},
    {"wait_readable", test_wait_readable},
    {NULL, NULL},
};

int main(int argc, char **argv) { return run_test_main(cases, argc, argv); }
