/* The KVM probe: the guest image (page tables, GDT, code, registers), the verdict from measured
 * times, the deadline around a probe that hangs or crashes, lxmd's start-up probe, and a real
 * probe of /dev/kvm. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "daemon.h"
#include "tests/unit/tap.h"
#include "util.h"
#include "vm/accel.h"
#include "vm/kvm-probe.h"

#define P_RW 3ULL

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Walks the guest's 4-level page tables as the CPU would: the physical address of va, or ~0 when
 * an entry on the way is not present and writable. */
static uint64_t walk(const uint8_t *mem, const struct lxm_kvm_guest_layout *l, uint64_t va)
{
	uint64_t table = l->pml4;
	unsigned shift[] = { 39, 30, 21, 12 };

	for (unsigned i = 0; i < 4; i++) {
		uint64_t e = ((const uint64_t *)(mem + table))[(va >> shift[i]) & 511];

		if ((e & P_RW) != P_RW)
			return ~0ULL;
		table = e & 0x000ffffffffff000ULL;
		if (table >= l->size)
			return ~0ULL;
	}
	return table | (va & 0xfff);
}

static void test_layout(void)
{
	struct lxm_kvm_guest_layout l;

	ok(lxm_kvm_guest_layout(4096, &l) == 0, "layout: 4096 pages");
	/* 6 set-up pages + 9 page tables + 4096 data pages = 4111 pages: 9 tables of 512. */
	is_int(l.n_pt, 9, "layout: 9 page tables for 4096 pages");
	is_int(l.data, (6 + 9) * 4096, "layout: data after the page tables");
	is_int(l.size, l.data + 4096ULL * 4096, "layout: memory ends after the last data page");
	ok(l.gdt && l.pml4 && l.pdpt && l.pd && l.code && l.pt, "layout: nothing at page 0");
	ok(lxm_kvm_guest_layout(505, &l) == 0 && l.n_pt == 1, "layout: 505 pages fit one table");
	ok(lxm_kvm_guest_layout(506, &l) == 0 && l.n_pt == 2, "layout: 506 pages need two");
	ok(lxm_kvm_guest_layout(0, &l) == -EINVAL, "layout: 0 pages refused");
	ok(lxm_kvm_guest_layout(131073, &l) == -EINVAL, "layout: more than one PD maps refused");
}

static void test_build(unsigned pages)
{
	struct lxm_kvm_guest_layout l;
	const uint64_t *gdt, *pml4, *pdpt, *pd, *pt;
	uint8_t *mem, *code;
	bool all = true;

	lxm_kvm_guest_layout(pages, &l);
	mem = calloc(1, l.size);
	if (!ok(mem != NULL, "build %u: allocate", pages))
		return;
	lxm_kvm_guest_build(&l, mem);
	gdt = (const uint64_t *)(mem + l.gdt);
	pml4 = (const uint64_t *)(mem + l.pml4);
	pdpt = (const uint64_t *)(mem + l.pdpt);
	pd = (const uint64_t *)(mem + l.pd);
	pt = (const uint64_t *)(mem + l.pt);
	is_int(pml4[0], l.pdpt | P_RW, "build: PML4[0] -> PDPT, present, writable");
	is_int(pml4[1], 0, "build: PML4[1] not present");
	is_int(pdpt[0], l.pd | P_RW, "build: PDPT[0] -> PD, present, writable");
	for (unsigned i = 0; i < l.n_pt; i++)
		all &= pd[i] == ((l.pt + i * 4096ULL) | P_RW);
	ok(all, "build %u: PD[i] -> page table i for all %u", pages, l.n_pt);
	is_int(pd[l.n_pt], 0, "build: no PD entry past the last page table");
	all = true;
	for (uint64_t j = 0; j < l.size / 4096; j++)
		all &= pt[j] == ((j * 4096) | P_RW);
	ok(all, "build %u: every PT entry maps its own page, present, writable", pages);
	if (l.size / 4096 < l.n_pt * 512ULL)
		is_int(pt[l.size / 4096], 0, "build: nothing mapped past the memory");
	ok(walk(mem, &l, l.code) == l.code, "build: the code page is identity-mapped");
	ok(walk(mem, &l, l.data) == l.data, "build: the first data page is identity-mapped");
	ok(walk(mem, &l, l.data + (pages - 1) * 4096ULL + 7) == l.data + (pages - 1) * 4096ULL + 7,
	   "build: the last data page is identity-mapped");
	ok(walk(mem, &l, l.size) == ~0ULL, "build: the page after the memory is not mapped");
	/* GDT: null, then 64-bit code (P, S, code, L, not D), then data (P, S, writable). */
	is_int(gdt[0], 0, "gdt: null descriptor");
	ok((gdt[1] >> 47 & 1) && (gdt[1] >> 44 & 1) && (gdt[1] >> 43 & 1) && (gdt[1] >> 53 & 1) &&
		   !(gdt[1] >> 54 & 1) && (gdt[1] >> 45 & 3) == 0,
	   "gdt: 0x08 is present 64-bit ring-0 code");
	ok((gdt[2] >> 47 & 1) && (gdt[2] >> 44 & 1) && !(gdt[2] >> 43 & 1) && (gdt[2] >> 41 & 1),
	   "gdt: 0x10 is present writable data");
	/* The code: its jumps land on their labels, it signals on the done port and halts. */
	code = mem + l.code;
	ok(code[18] == 0x75 && 20 + (int8_t)code[19] == 6, "code: the inner jnz goes to 'page'");
	ok(code[20] == 0xe6 && code[21] == LXM_KVM_DONE_PORT, "code: out to the done port");
	ok(code[25] == 0x75 && 27 + (int8_t)code[26] == 0, "code: the outer jnz goes to 'pass'");
	ok(code[27] == 0xf4, "code: ends with hlt");
	free(mem);
}

static void test_registers(void)
{
	struct lxm_kvm_guest_layout l;
	struct kvm_sregs s;
	struct kvm_regs r;

	lxm_kvm_guest_layout(4096, &l);
	memset(&s, 0, sizeof(s));
	lxm_kvm_guest_sregs(&l, &s);
	ok((s.cr0 & 1) && (s.cr0 >> 31 & 1), "sregs: CR0.PE and CR0.PG");
	ok(s.cr4 >> 5 & 1, "sregs: CR4.PAE");
	ok((s.efer >> 8 & 1) && (s.efer >> 10 & 1), "sregs: EFER.LME and EFER.LMA");
	is_int(s.cr3, l.pml4, "sregs: CR3 is the PML4");
	ok(s.cs.l == 1 && s.cs.db == 0 && s.cs.selector == 0x08 && s.cs.present && s.cs.s,
	   "sregs: CS is the 64-bit code segment");
	ok(s.ss.selector == 0x10 && s.ds.selector == 0x10 && s.ss.present, "sregs: data segments");
	ok(s.gdt.base == l.gdt && s.gdt.limit == 23, "sregs: GDT of three descriptors");
	lxm_kvm_guest_regs(&l, &r);
	ok(r.rip == l.code && r.rsi == l.data && r.rdx == 4096 && r.r8 == LXM_KVM_PROBE_PASSES &&
		   (r.rax & 0xff) == LXM_KVM_GUEST_BYTE && r.rflags == 2,
	   "regs: RIP at the code, its arguments in RSI, RDX, R8, AL");
}

static void test_classify(void)
{
	struct lxm_kvm_measurement m = { .pages = 4096 };
	struct lxm_kvm_probe_result r;
	uint64_t limit = 4096ULL * LXM_KVM_LIMIT_NS_PER_PAGE;

	m.error = EINVAL;
	snprintf(m.message, sizeof(m.message), "KVM_SET_SREGS: Invalid argument");
	lxm_kvm_classify(&m, &r);
	ok(!r.usable && !r.measured, "classify: an error is unusable");
	is_str(r.reason, "kvm probe: KVM_SET_SREGS: Invalid argument", "classify: names the step");

	memset(&m, 0, sizeof(m));
	m.pages = 4096;
	m.first_ns = 3000000;
	m.repeat_ns = 300000;
	lxm_kvm_classify(&m, &r);
	ok(r.usable && r.measured && r.limit_ns == limit, "classify: 0.3 ms for 4096 is usable");
	ok(strstr(r.reason, "KVM runs guests at speed") && strstr(r.reason, "0.30 ms"),
	   "classify: usable reason: %s", r.reason);
	m.repeat_ns = limit;
	lxm_kvm_classify(&m, &r);
	ok(r.usable, "classify: exactly the limit is usable");
	m.repeat_ns = limit + 1;
	lxm_kvm_classify(&m, &r);
	ok(!r.usable, "classify: just over the limit is not");
	m.first_ns = 10300000;
	m.repeat_ns = 6000000;
	lxm_kvm_classify(&m, &r);
	ok(!r.usable && r.measured, "classify: 6 ms for 4096 pages (this build host) is slow");
	ok(strstr(r.reason, "KVM is slow here") && strstr(r.reason, "4096 guest pages") &&
		   strstr(r.reason, "6.0 ms") && strstr(r.reason, "limit 2.0 ms") &&
		   strstr(r.reason, "10.3 ms") && strstr(r.reason, "EPT"),
	   "classify: slow reason: %s", r.reason);
}

static void hang(const char *dev, unsigned pages, struct lxm_kvm_measurement *m)
{
	for (;;)
		pause();
}

static void crash(const char *dev, unsigned pages, struct lxm_kvm_measurement *m)
{
	/* The default action: under ASan its own handler would turn the fault into an abort. */
	signal(SIGSEGV, SIG_DFL);
	raise(SIGSEGV);
}

static void quit(const char *dev, unsigned pages, struct lxm_kvm_measurement *m)
{
	_exit(3);
}

static void fast(const char *dev, unsigned pages, struct lxm_kvm_measurement *m)
{
	memset(m, 0, sizeof(*m));
	m->pages = pages;
	m->first_ns = 1000000;
	m->repeat_ns = 100000;
}

static int inherited_fd = -1;

/* Says whether the caller's fd is still open in the probe's child. */
static void check_fds(const char *dev, unsigned pages, struct lxm_kvm_measurement *m)
{
	fast(dev, pages, m);
	if (fcntl(inherited_fd, F_GETFD) >= 0) {
		m->error = EEXIST;
		snprintf(m->message, sizeof(m->message), "fd %d is open", inherited_fd);
	}
}

static void test_deadline(void)
{
	struct lxm_kvm_probe_result r;
	uint64_t t;
	int k;

	t = now_ms();
	k = lxm_kvm_probe_with(hang, "/dev/null", 4096, 300, &r);
	t = now_ms() - t;
	ok(k == 0 && !r.usable && !r.measured, "deadline: a hanging probe is unusable");
	ok(strstr(r.reason, "did not finish within 300 ms"), "deadline: reason: %s", r.reason);
	ok(t >= 300 && t < 300 + 400, "deadline: answered after %llu ms (300 + slack)",
	   (unsigned long long)t);
	ok(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD, "deadline: the child was reaped");

	t = now_ms();
	k = lxm_kvm_probe_with(crash, "/dev/null", 4096, 2000, &r);
	t = now_ms() - t;
	ok(k == 0 && !r.usable && strstr(r.reason, "killed by signal 11") && t < 1000,
	   "crash: reported at once: %s", r.reason);
	k = lxm_kvm_probe_with(quit, "/dev/null", 4096, 2000, &r);
	ok(k == 0 && !r.usable && strstr(r.reason, "exited with status 3"), "quit: %s", r.reason);
	k = lxm_kvm_probe_with(fast, "/dev/null", 4096, 2000, &r);
	ok(k == 0 && r.usable && r.measured && r.repeat_ns == 100000 && r.pages == 4096,
	   "answer: the child's figures reach the parent: %s", r.reason);
	inherited_fd = open("/dev/null", O_RDONLY); /* without O_CLOEXEC: closed all the same */
	k = lxm_kvm_probe_with(check_fds, "/dev/null", 4096, 2000, &r);
	ok(k == 0 && r.usable, "fds: the child holds none of the caller's: %s", r.reason);
	close(inherited_fd);
	ok(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD, "no child left behind");
}

static void test_device(void)
{
	setenv("LXMD_TEST_KVM_DEV", "/nonexistent/kvm", 1);
	is_str(lxm_kvm_probe_device(), "/nonexistent/kvm", "device: LXMD_TEST_KVM_DEV");
	setenv("LXMD_TEST_KVM_DEV", "", 1);
	is_str(lxm_kvm_probe_device(), "/dev/kvm", "device: empty means /dev/kvm");
	unsetenv("LXMD_TEST_KVM_DEV");
	is_str(lxm_kvm_probe_device(), "/dev/kvm", "device: default /dev/kvm");
}

/* lxmd's start-up probe: "probing" until the loop ran its callback, then the answer. */
static void test_daemon_probe(void)
{
	struct lxmd d;
	uv_loop_t loop;
	const char *reason = NULL, *accel;
	json_t *env = json_object();

	memset(&d, 0, sizeof(d));
	uv_loop_init(&loop);
	d.loop = &loop;
	setenv("LXMD_TEST_KVM_DEV", "/nonexistent/kvm", 1);
	lxmd_vm_accel_start(&d);
	unsetenv("LXMD_TEST_KVM_DEV");
	is_str(lxmd_vm_accel(&d, &reason), "probing", "daemon: probing until answered");
	uv_run(&loop, UV_RUN_DEFAULT);
	accel = lxmd_vm_accel(&d, &reason);
	is_str(accel, "tcg", "daemon: no device: tcg");
	ok(reason && strstr(reason, "open /nonexistent/kvm: No such file or directory"),
	   "daemon: reason: %s", reason);
	ok(lxmd_vm_accel_to_env(&d, env) == 0 &&
		   streq(json_string_value(json_object_get(env, "vm_acceleration")), "tcg") &&
		   strstr(json_string_value(json_object_get(env, "vm_acceleration_reason")),
			  "/nonexistent/kvm"),
	   "daemon: environment fields");
	lxmd_vm_accel_fini(&d);
	json_decref(env);
	ok(uv_loop_close(&loop) == 0, "daemon: loop closes clean");
}

/* The real thing. This build host's KVM is nested without EPT: it must say unusable; on a host
 * with a real KVM set LXM_TEST_KVM_USABLE=1. */
static void test_real(void)
{
	struct lxm_kvm_probe_result r;
	bool want = getenv("LXM_TEST_KVM_USABLE") && streq(getenv("LXM_TEST_KVM_USABLE"), "1");
	uint64_t t;
	int k;

	if (access("/dev/kvm", F_OK) < 0) {
		ok(1, "# SKIP real probe: /dev/kvm does not exist on this host");
		return;
	}
	t = now_ms();
	k = lxm_kvm_probe("/dev/kvm", LXM_KVM_PROBE_DEADLINE_MS, &r);
	t = now_ms() - t;
	lxm_kvm_probe_print(stderr, "/dev/kvm", &r);
	ok(k == 0, "real: the probe ran");
	ok(t < LXM_KVM_PROBE_DEADLINE_MS + 400, "real: answered in %llu ms, within its deadline",
	   (unsigned long long)t);
	ok(r.usable == want, "real: /dev/kvm is %s here: %s", want ? "usable" : "unusable",
	   r.reason);
	if (r.measured)
		ok(r.usable == (r.repeat_ns <= r.limit_ns) && r.first_ns > 0 && r.setup_ns > 0,
		   "real: the verdict follows the figures");
}

int main(void)
{
	test_layout();
	test_build(4096);
	test_build(1);
	test_build(505);
	test_registers();
	test_classify();
	test_deadline();
	test_device();
	test_daemon_probe();
	test_real();
	return tap_done();
}
