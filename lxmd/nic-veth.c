/* A nic's veth pair, shared by lxm-monitor (a start: before init runs) and lxmd (hot-plug); see
 * nic.h. Only the network library: lxm-monitor links this without the rest of lxmd. */
#include "config.h"

#include <errno.h>
#include <unistd.h>

#include "network/network.h"
#include "nic.h"

int lxmd_nic_veth_create(const struct lxm_spec_nic *n, pid_t pid, struct lxm_error **err)
{
	struct lxm_veth v = {
		.host_name = n->host_name,
		.bridge = n->bridge,
		.netns_pid = pid,
		.inner_name = n->inner,
		.hwaddr = n->hwaddr,
		.mtu = n->mtu,
	};
	const char *key = NULL;

	/* After a restart the host end of the last run may still exist: the kernel tears down a
	 * dead network namespace in the background. Give it a moment to go. */
	for (int i = 0; i < 60 && lxm_link_exists(n->host_name); i++)
		usleep(50 * 1000);
	if (lxm_veth_create(&v, err) < 0)
		return lxm_error_prefix(err, "nic device '%s': create veth %s on %s", n->device,
					n->host_name, n->bridge);
	/* limits.ingress shapes what the host end sends into the instance; limits.egress what
	 * the instance sends, at its own end of the veth. */
	if (n->ingress && lxm_link_set_rate(0, n->host_name, n->ingress, err) < 0)
		key = "limits.ingress";
	else if (n->egress && lxm_link_set_rate(pid, n->inner, n->egress, err) < 0)
		key = "limits.egress";
	if (key) {
		struct lxm_error *e2 = NULL;

		if (lxm_link_delete(n->host_name, &e2) < 0)
			lxm_error_free(e2);
		return lxm_error_prefix(err, "nic device '%s': key '%s'", n->device, key);
	}
	return 0;
}
