# Socket addresses between Python tuples and C sockaddrs.
# Included by _core.pyx (one extension module, several files).

cdef object sockaddr_to_tuple(sockaddr_storage *addr):
    cdef char text[64]
    cdef sockaddr_in *v4
    cdef sockaddr_in6 *v6
    if addr.ss_family == AF_INET:
        v4 = <sockaddr_in *>addr
        inet_ntop(AF_INET, &v4.sin_addr, text, sizeof(text))
        return (text.decode(), ntohs(v4.sin_port))
    if addr.ss_family == AF_INET6:
        v6 = <sockaddr_in6 *>addr
        inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof(text))
        return (text.decode(), ntohs(v6.sin6_port))
    return None


cdef socklen_t tuple_to_sockaddr(object address, sockaddr_storage *out) except 0:
    if not isinstance(address, tuple) or len(address) < 2:
        raise TypeError(f"address must be a (host, port) tuple, not {address!r}")
    host, port = address[0], address[1]
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in 0..65535, not {port!r}")
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return ip_to_sockaddr(family, sockaddr[0], port, out)


cdef socklen_t ip_to_sockaddr(object family, str host, int port,
                              sockaddr_storage *out) except 0:
    """A numeric IPv4/IPv6 address (as getaddrinfo returns it) in C form."""
    ip = host.encode()
    cdef sockaddr_in *v4 = <sockaddr_in *>out
    cdef sockaddr_in6 *v6 = <sockaddr_in6 *>out
    memset(out, 0, sizeof(sockaddr_storage))
    if family != socket.AF_INET and family != socket.AF_INET6:
        raise ValueError(f"not an IPv4 or IPv6 address: {host!r}")
    if family == socket.AF_INET:
        v4.sin_family = AF_INET
        v4.sin_port = htons(port)
        inet_pton(AF_INET, ip, &v4.sin_addr)
        return sizeof(sockaddr_in)
    v6.sin6_family = AF_INET6
    v6.sin6_port = htons(port)
    inet_pton(AF_INET6, ip, &v6.sin6_addr)
    return sizeof(sockaddr_in6)

