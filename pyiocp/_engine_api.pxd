# Declarations of engine/pyiocp.h (the whole C API) and of the dispatch
# queue; no code.  Kept apart from _core.pyx as uvloop keeps includes/uv.pxd.
# Written by hand, as Cython requires: tests/test_api_declarations.py fails
# when a declaration here stops matching its header.
from libc.stdint cimport uint64_t, int64_t

# pyiocp.h includes what names these on each platform (<sys/types.h> and
# <sys/socket.h>, or Winsock's headers and its own ssize_t on Windows)
cdef extern from "pyiocp.h":
    ctypedef long ssize_t

cdef extern from "pyiocp.h":
    ctypedef unsigned int socklen_t
    struct sockaddr:
        unsigned short sa_family
    struct sockaddr_storage:
        unsigned short ss_family

cdef extern from "pyiocp.h" nogil:
    const char *PIOCP_VERSION
    ctypedef int piocp_socket
    ctypedef int piocp_file
    piocp_socket PIOCP_INVALID_SOCKET
    piocp_file PIOCP_INVALID_FILE
    ctypedef struct piocp_engine:
        pass
    ctypedef struct piocp_conn:
        pass
    ctypedef struct piocp_listener:
        pass
    ctypedef void (*piocp_complete_fn)(piocp_request *req, ssize_t result) noexcept nogil
    ctypedef struct piocp_request:
        piocp_complete_fn complete
        void *user
        piocp_conn *conn
        size_t done
    uint64_t PIOCP_TRANSMIT_TO_EOF
    int PIOCP_MAX_THREADS
    int PIOCP_RAW_MAX_NAME

    ctypedef struct piocp_config:
        int threads
        const char *backend
        int max_connections
        int idle_timeout_ms
        int linger_ms
        void (*batch_end)(void *user) noexcept nogil
        void (*worker_start)(void *user) noexcept nogil
        void (*worker_stop)(void *user) noexcept nogil
        void (*stopping)(void *user) noexcept nogil
        void *user

    void piocp_config_init(piocp_config *config)
    int piocp_default_threads()
    ctypedef struct piocp_cpu_info:
        int online
        int affinity
        double quota_cpus
        int usable
    void piocp_cpu_info_read(piocp_cpu_info *out, const char *cgroup_root,
                             const char *proc_self_cgroup)
    int piocp_engine_new(piocp_engine **out, const piocp_config *config)
    int piocp_engine_start(piocp_engine *engine)
    int piocp_engine_stop(piocp_engine *engine, int drain_ms)
    ctypedef struct piocp_engine_stats:
        uint64_t accepted
        uint64_t refused
        uint64_t accept_errors
        uint64_t accept_pauses
        uint64_t connections
        uint64_t transmit_file_bytes
        uint64_t borrowed
        uint64_t borrowed_bytes
        uint64_t transmit_copied_bytes
        uint64_t completed_inline
    void piocp_engine_get_stats(const piocp_engine *engine, piocp_engine_stats *out)
    void piocp_engine_free(piocp_engine *engine)
    const char *piocp_engine_backend(const piocp_engine *engine)
    const char *piocp_engine_backend_note(const piocp_engine *engine)
    const char *piocp_backend_describe(const char *name, char *buf, size_t len)
    int piocp_engine_threads(const piocp_engine *engine)
    int piocp_engine_connections(const piocp_engine *engine)
    int piocp_backends_available(const char **names, int max)
    int piocp_backend_names(const char **names, int max)
    int piocp_worker_index()
    int piocp_post(piocp_engine *engine, piocp_request *req, ssize_t result)
    int piocp_post_after(piocp_engine *engine, piocp_request *req, int64_t delay_ms)
    int piocp_timer_cancel(piocp_engine *engine, piocp_request *req)

    ctypedef struct piocp_listener_callbacks:
        void (*on_connection)(piocp_listener *listener, piocp_conn *conn, void *user) noexcept nogil

    int piocp_listen(piocp_engine *engine, const sockaddr *addr, socklen_t addrlen, int backlog,
                     const piocp_listener_callbacks *callbacks, void *user, piocp_listener **out)
    ctypedef struct piocp_listen_options:
        const sockaddr *addr
        socklen_t addrlen
        int backlog
        int reuse_port
        piocp_socket fd
    void piocp_listen_options_init(piocp_listen_options *options)
    int piocp_listen_ex(piocp_engine *engine, const piocp_listen_options *options,
                        const piocp_listener_callbacks *callbacks, void *user,
                        piocp_listener **out)
    int piocp_listener_address(const piocp_listener *listener, sockaddr_storage *addr,
                               socklen_t *addrlen)
    uint64_t piocp_listener_refused(const piocp_listener *listener)

    ctypedef void (*piocp_closed_fn)(piocp_conn *conn, int error) noexcept nogil
    void piocp_conn_set_callbacks(piocp_conn *conn, piocp_closed_fn on_closed, void *user)
    void *piocp_conn_user(const piocp_conn *conn)
    int piocp_conn_peer(const piocp_conn *conn, sockaddr_storage *addr, socklen_t *addrlen)
    int piocp_conn_sockname(piocp_conn *conn, sockaddr_storage *addr, socklen_t *addrlen)
    int piocp_conn_set_deadline(piocp_conn *conn, int timeout_ms)
    int piocp_conn_set_close_deadline(piocp_conn *conn, int timeout_ms)
    int piocp_adopt(piocp_engine *engine, piocp_socket fd, piocp_conn **out)
    int piocp_borrow(piocp_engine *engine, piocp_socket fd, piocp_conn **out)
    int piocp_cancel(piocp_conn *conn, piocp_request *req)
    ctypedef void (*piocp_connect_fn)(piocp_conn *conn, int error, void *user) noexcept nogil
    int piocp_connect(piocp_engine *engine, const sockaddr *addr, socklen_t addrlen,
                      int timeout_ms, piocp_connect_fn done, void *user)
    int piocp_shutdown(piocp_conn *conn, piocp_request *req)
    void piocp_conn_retain(piocp_conn *conn)
    void piocp_conn_release(piocp_conn *conn)
    int piocp_recv(piocp_conn *conn, piocp_request *req, void *buf, size_t len)
    int piocp_send(piocp_conn *conn, piocp_request *req, const void *buf, size_t len)
    int piocp_transmit(piocp_conn *conn, piocp_request *req, const void *head, size_t head_len,
                       piocp_file fd, uint64_t offset, uint64_t count)
    int piocp_close(piocp_conn *conn)
    int piocp_abort(piocp_conn *conn)

    ctypedef struct piocp_raw_server:
        pass
    ctypedef struct piocp_raw_options:
        size_t max_name
        piocp_file access_log_fd
    void piocp_raw_options_init(piocp_raw_options *options)
    int piocp_raw_server_new(piocp_raw_server **out, const char *root, const piocp_raw_options *options)
    void piocp_raw_server_free(piocp_raw_server *server)
    const piocp_listener_callbacks piocp_raw_server_callbacks
    uint64_t piocp_raw_server_requests(const piocp_raw_server *server)
    piocp_file piocp_raw_server_swap_access_log(piocp_raw_server *server, piocp_file fd)

    ctypedef struct piocp_http_server:
        pass
    ctypedef struct piocp_http_options:
        int listing
        size_t max_head
        int header_timeout_ms
        int keepalive_timeout_ms
        uint64_t max_discard
        piocp_file access_log_fd
        int cache_valid_ms
        int log_format
    int PIOCP_LOG_COMMON, PIOCP_LOG_COMBINED, PIOCP_LOG_JSON
    void piocp_http_options_init(piocp_http_options *options)
    int piocp_http_server_new(piocp_http_server **out, const char *root,
                              const piocp_http_options *options)
    void piocp_http_server_free(piocp_http_server *server)
    const piocp_listener_callbacks piocp_http_server_callbacks
    uint64_t piocp_http_server_requests(const piocp_http_server *server)
    piocp_file piocp_http_server_swap_access_log(piocp_http_server *server, piocp_file fd)

    # metrics
    int PIOCP_METRICS, PIOCP_M_DISPATCHED, PIOCP_M_BATCHES
    ctypedef struct piocp_metric_desc:
        const char *name
        const char *help
        const char *label_name[2]
        const char *label_value[2]
    int piocp_metric_describe(int index, piocp_metric_desc *out)
    void piocp_engine_read_metrics(const piocp_engine *engine, uint64_t *values)
    void piocp_metric_add(piocp_engine *engine, int index, uint64_t n)
    int piocp_engine_use_metrics_cell(piocp_engine *engine, void *cell, size_t size)
    size_t piocp_metrics_area_size(int slots, int threads)
    int piocp_metrics_area_init(void *area, size_t size, int slots, int threads)
    int piocp_metrics_area_claim(void *area, int slot, void **cell, size_t *cell_size)
    int piocp_metrics_area_cell(void *area, int index, void **cell, size_t *cell_size)
    int piocp_metrics_area_release(void *area, int index)
    size_t piocp_metrics_render(const piocp_engine *engine, const void *area, char *buf,
                                size_t cap)
    ctypedef struct piocp_metrics_server:
        pass
    int piocp_metrics_server_new(piocp_metrics_server **out, const piocp_engine *engine,
                                 const void *area)
    void piocp_metrics_server_free(piocp_metrics_server *server)
    const piocp_listener_callbacks piocp_metrics_server_callbacks

cdef extern from "dispatch_queue.h" nogil:
    ctypedef struct dispatch_node:
        dispatch_node *next
        int kind
        void *owner
        ssize_t result
    ctypedef struct dispatch_queue:
        pass
    void dispatch_node_init(dispatch_node *node, int kind, void *owner)
    int dispatch_queue_init(dispatch_queue *q)
    void dispatch_queue_destroy(dispatch_queue *q)
    void dispatch_queue_push(dispatch_queue *q, dispatch_node *node, ssize_t result)
    int dispatch_queue_pending(dispatch_queue *q)
    dispatch_node *dispatch_queue_claim(dispatch_queue *q)
    void dispatch_queue_release(dispatch_queue *q)

cdef extern from "write_flow.h" nogil:
    ctypedef struct write_flow:
        pass
    void write_flow_init(write_flow *f, size_t low)
    size_t write_flow_add(write_flow *f, size_t n)
    void write_flow_undo(write_flow *f, size_t n)
    size_t write_flow_queued(write_flow *f)
    void write_flow_set_low(write_flow *f, size_t low)
    int write_flow_arm_resume(write_flow *f)
    int write_flow_claim_resume_item(write_flow *f)
    void write_flow_resume_item_ran(write_flow *f)
    int write_flow_done(write_flow *f, size_t n)
    ctypedef struct write_budget:
        size_t cap
    void write_budget_init(write_budget *b, size_t cap)
    int write_budget_take(write_budget *b, size_t n)
    void write_budget_give(write_budget *b, size_t n)
    size_t write_budget_used(write_budget *b)
