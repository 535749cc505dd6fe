/* Helpers shared by the files of network/: netlink sockets and libnl error codes. */
#pragma once

#include <sys/types.h>

#include <netlink/netlink.h>

#include "cleanup.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct nl_sock *, nl_socket_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nl_cache *, nl_cache_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nl_addr *, nl_addr_put)

/* libnl's negative NLE_ codes as -errno, so callers can tell "exists" from "missing". */
int network_nl_errno(int nle);
