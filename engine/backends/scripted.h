/*
 * scripted.h - the "scripted" backend's controls, for C tests only.
 *
 * The scripted backend has no kernel: the test plays it.  A connection's
 * socket is a real descriptor (of /dev/null: closing it and counting open
 * descriptors stay real), but what a recv reads and how much a send may
 * write come from the test through these calls, so a test can lay out
 * partial sends, a full socket, a reset or an EOF at an exact point.
 *
 * Each call acts on an open connection and schedules its turn; on a closed
 * one it does nothing.  The test keeps the connection's memory valid with
 * piocp_conn_retain while it uses it from its own thread.
 */
#ifndef PYIOCP_BACKENDS_SCRIPTED_H
#define PYIOCP_BACKENDS_SCRIPTED_H

#include "pyiocp.h"

#include <stdbool.h>

/* Bytes a connection buffers each way: input the test gave that no recv has
 * read yet, and output the test has not collected (a full output buffer is
 * a full socket: sends wait). */
#define PIOCP_SCRIPTED_BUFFER 65536

/* A peer connects: a worker hands a new connection to the listener's
 * on_connection.  Returns 0, or -errno (no descriptor, no memory). */
int piocp_scripted_connect(piocp_listener *listener);
/* The peer sends `len` bytes (at most the free input space: returns how
 * many were taken). */
size_t piocp_scripted_input(piocp_conn *conn, const void *data, size_t len);
/* The peer closes its side (a recv with nothing left to read returns 0)... */
void piocp_scripted_input_eof(piocp_conn *conn);
/* ... or the connection breaks: the next recv fails with `error` (-errno). */
void piocp_scripted_input_error(piocp_conn *conn, int error);
/* How sends proceed: at most `limit` bytes per step (0: as many as fit). */
void piocp_scripted_send_limit(piocp_conn *conn, size_t limit);
/* The next send step fails with `error` (-errno). */
void piocp_scripted_send_error(piocp_conn *conn, int error);
/* Bytes sent and not yet taken. */
size_t piocp_scripted_output_pending(piocp_conn *conn);
/* Whether the connection sent its FIN (piocp_shutdown reached the head of
 * its send queue). */
bool piocp_scripted_output_shut(piocp_conn *conn);
/* Takes up to `cap` bytes the connection sent (the peer reads them, making
 * room for more).  Returns the count. */
size_t piocp_scripted_output(piocp_conn *conn, void *buf, size_t cap);

#endif
