/* The device allow-list on cgroup v2, which has no devices controller: a BPF_CGROUP_DEVICE
 * program attached to the instance's cgroup decides each open and mknod. The program is built
 * here from raw instructions (the kernel's documented interface, no compiler needed) and stays
 * attached until the cgroup is removed (or replaced by one with other extra devices). The rules
 * are the v1 driver's: mknod of anything, open only of the standard character devices and ptys,
 * and of the instance's unix devices. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cgroup/cgroup-internal.h"
#include "cleanup.h"

/* A device (type, major, minor) that may be opened; minor -1 means any. */
struct dev_rule {
	uint32_t type;	/* BPF_DEVCG_DEV_CHAR or BPF_DEVCG_DEV_BLOCK */
	uint32_t major; /* device major */
	int64_t minor;	/* device minor, -1: any */
};

static const struct dev_rule allowed[] = {
	{ BPF_DEVCG_DEV_CHAR, 1, 3 },	 /* null */
	{ BPF_DEVCG_DEV_CHAR, 1, 5 },	 /* zero */
	{ BPF_DEVCG_DEV_CHAR, 1, 7 },	 /* full */
	{ BPF_DEVCG_DEV_CHAR, 1, 8 },	 /* random */
	{ BPF_DEVCG_DEV_CHAR, 1, 9 },	 /* urandom */
	{ BPF_DEVCG_DEV_CHAR, 5, 0 },	 /* tty */
	{ BPF_DEVCG_DEV_CHAR, 5, 1 },	 /* console */
	{ BPF_DEVCG_DEV_CHAR, 5, 2 },	 /* ptmx */
	{ BPF_DEVCG_DEV_CHAR, 136, -1 }, /* pts */
	{ BPF_DEVCG_DEV_CHAR, 10, 229 }, /* fuse */
};

#define INSN(c, d, s, o, i)                                                                        \
	((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })

/* Room for the fixed part plus three instructions per rule. */
#define FIXED_INSNS 16
#define RULE_INSNS  3

/* Emits: r2 = type/access word, r3 = type, r4 = access, r5 = major, r6 = minor; mknod-only
 * requests pass; then one test per rule jumping to "allow"; "deny" returns 0, "allow" 1. Jump
 * offsets are relative to the next instruction, so the jumps to "allow" (listed in jumps) are
 * fixed up once the end is known. */
static size_t build_program(struct bpf_insn *p, const struct dev_rule *rules, size_t n_rules,
			    size_t *jumps)
{
	size_t n = 0, nj = 0, allow;

	p[n++] = INSN(BPF_LDX | BPF_MEM | BPF_W, 2, 1, 0, 0); /* access_type */
	p[n++] = INSN(BPF_LDX | BPF_MEM | BPF_W, 5, 1, 4, 0); /* major */
	p[n++] = INSN(BPF_LDX | BPF_MEM | BPF_W, 6, 1, 8, 0); /* minor */
	p[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, 3, 2, 0, 0);
	p[n++] = INSN(BPF_ALU64 | BPF_AND | BPF_K, 3, 0, 0, 0xffff); /* device type */
	p[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, 4, 2, 0, 0);
	p[n++] = INSN(BPF_ALU64 | BPF_RSH | BPF_K, 4, 0, 0, 16); /* access bits */
	/* Creating a node opens nothing: mknod alone is allowed for every device. */
	p[n++] = INSN(BPF_ALU64 | BPF_AND | BPF_K, 4, 0, 0, ~(int32_t)BPF_DEVCG_ACC_MKNOD);
	jumps[nj++] = n;
	p[n++] = INSN(BPF_JMP | BPF_JEQ | BPF_K, 4, 0, 0 /* -> allow */, 0);
	for (size_t i = 0; i < n_rules; i++) {
		const struct dev_rule *r = &rules[i];

		if (r->minor < 0) {
			/* type differs: skip the major test; major equal: allow. */
			p[n++] = INSN(BPF_JMP | BPF_JNE | BPF_K, 3, 0, 1, (int32_t)r->type);
			jumps[nj++] = n;
			p[n++] = INSN(BPF_JMP | BPF_JEQ | BPF_K, 5, 0, 0, (int32_t)r->major);
			continue;
		}
		/* type or major differs: skip the rest of the rule; minor equal: allow. */
		p[n++] = INSN(BPF_JMP | BPF_JNE | BPF_K, 3, 0, 2, (int32_t)r->type);
		p[n++] = INSN(BPF_JMP | BPF_JNE | BPF_K, 5, 0, 1, (int32_t)r->major);
		jumps[nj++] = n;
		p[n++] = INSN(BPF_JMP | BPF_JEQ | BPF_K, 6, 0, 0, (int32_t)r->minor);
	}
	/* deny: */
	p[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0);
	p[n++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
	allow = n;
	p[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 1);
	p[n++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
	for (size_t j = 0; j < nj; j++)
		p[jumps[j]].off = (int16_t)(allow - (jumps[j] + 1));
	return n;
}

static int load_program(const struct bpf_insn *prog, size_t n, char *log, size_t log_size)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
	attr.insns = (uint64_t)(uintptr_t)prog;
	attr.insn_cnt = (uint32_t)n;
	attr.license = (uint64_t)(uintptr_t) "GPL";
	if (log) {
		attr.log_buf = (uint64_t)(uintptr_t)log;
		attr.log_size = (uint32_t)log_size;
		attr.log_level = 1;
	}
	return (int)syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
}

int cgroup_bpf_devices(const char *dir, const struct lxm_cgroup_device *extra, size_t n_extra,
		       struct lxm_error **err)
{
	size_t n_rules = ARRAY_SIZE(allowed) + n_extra;
	_cleanup_free_ struct dev_rule *rules = calloc(n_rules, sizeof(*rules));
	_cleanup_free_ struct bpf_insn *prog =
		calloc(FIXED_INSNS + RULE_INSNS * n_rules, sizeof(*prog));
	_cleanup_free_ size_t *jumps = calloc(n_rules + 1, sizeof(*jumps));
	_cleanup_close_ int prog_fd = -1, dir_fd = -1;
	union bpf_attr attr;
	size_t n;

	if (!rules || !prog || !jumps)
		return lxm_error_set(err, -ENOMEM, 500, "device filter: out of memory");
	memcpy(rules, allowed, sizeof(allowed));
	for (size_t i = 0; i < n_extra; i++)
		rules[ARRAY_SIZE(allowed) + i] = (struct dev_rule){
			.type = extra[i].type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR,
			.major = extra[i].major,
			.minor = extra[i].minor,
		};
	n = build_program(prog, rules, n_rules, jumps);
	prog_fd = load_program(prog, n, NULL, 0);
	if (prog_fd < 0) {
		/* Load again with the verifier's log, only to say why. */
		_cleanup_free_ char *log = calloc(1, 65536);
		int e = errno;

		if (log && load_program(prog, n, log, 65535) < 0 && *log)
			return lxm_error_setx(err, -e, 500, "load the device filter (BPF): %s",
					      log);
		return lxm_error_setx(err, -e, 500, "load the device filter (BPF)");
	}
	dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0)
		return lxm_error_setx(err, -errno, 500, "open %s", dir);
	memset(&attr, 0, sizeof(attr));
	attr.target_fd = (uint32_t)dir_fd;
	attr.attach_bpf_fd = (uint32_t)prog_fd;
	attr.attach_type = BPF_CGROUP_DEVICE;
	if (syscall(SYS_bpf, BPF_PROG_ATTACH, &attr, sizeof(attr)) < 0)
		return lxm_error_setx(err, -errno, 500, "attach the device filter to %s", dir);
	return 0;
}
