/* The KVM usability probe: a tiny long-mode guest through the KVM API, in a child under a
 * deadline (kvm-probe.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"
#include "vm/kvm-probe.h"

#define PAGE 4096ULL
/* Page-table entry flags: present, writable. */
#define PTE_P	 (1ULL << 0)
#define PTE_RW	 (1ULL << 1)
#define CR0_PE	 (1ULL << 0)
#define CR0_MP	 (1ULL << 1)
#define CR0_ET	 (1ULL << 4)
#define CR0_NE	 (1ULL << 5)
#define CR0_WP	 (1ULL << 16)
#define CR0_PG	 (1ULL << 31)
#define CR4_PAE	 (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)
/* GDT descriptors: 64-bit code (present, DPL 0, code execute/read, L) and flat data (present,
 * read/write, 4 KiB granularity, 32-bit default size; ignored in long mode but kept sane). */
#define GDT_CODE64 0x00209a0000000000ULL
#define GDT_DATA   0x00cf92000000ffffULL
#define SEL_CODE   0x08
#define SEL_DATA   0x10
/* One page directory maps 1 GiB: 512 page tables. */
#define MAX_PAGES (131072U)

/* The guest's code, its bytes assembled by hand. In: RSI = first data page, RDX = pages per pass,
 * R8 = passes, AL = the byte. Out: one "out 0xf5, al" after each pass, then hlt. */
/* clang-format off */
static const uint8_t guest_code[] = {
	/* pass: (offset 0) */
	0x48, 0x89, 0xf7,			/* mov rdi, rsi    ; rdi: from the first page */
	0x48, 0x89, 0xd1,			/* mov rcx, rdx    ; rcx: pages left in this pass */
	/* page: (offset 6) */
	0x88, 0x07,				/* mov [rdi], al   ; one byte into this page */
	0x48, 0x81, 0xc7, 0x00, 0x10, 0x00, 0x00, /* add rdi, 0x1000 ; the next page */
	0x48, 0xff, 0xc9,			/* dec rcx */
	0x75, 0xf2,				/* jnz page        ; -14: 20 - 14 = 6 */
	0xe6, LXM_KVM_DONE_PORT,		/* out 0xf5, al    ; pass done (an I/O exit) */
	0x49, 0xff, 0xc8,			/* dec r8 */
	0x75, 0xe5,				/* jnz pass        ; -27: 27 - 27 = 0 */
	0xf4,					/* hlt             ; all passes done */
};
/* clang-format on */

const char *lxm_kvm_probe_device(void)
{
	/* LXMD_TEST_KVM_DEV: for tests, which point the probe at a device that does not exist (or
	 * at another node) to see what lxmd makes of a host without KVM. */
	const char *dev = getenv("LXMD_TEST_KVM_DEV");

	return dev && *dev ? dev : LXM_KVM_DEV;
}

int lxm_kvm_guest_layout(unsigned pages, struct lxm_kvm_guest_layout *ret)
{
	struct lxm_kvm_guest_layout l = {
		.gdt = 1 * PAGE,
		.pml4 = 2 * PAGE,
		.pdpt = 3 * PAGE,
		.pd = 4 * PAGE,
		.code = 5 * PAGE,
		.pt = 6 * PAGE,
		.n_pt = 1,
		.pages = pages,
	};

	if (pages < 1 || pages > MAX_PAGES)
		return -EINVAL;
	/* The page tables map themselves too: grow them until they cover everything. */
	while ((6 + l.n_pt + pages + 511) / 512 > l.n_pt)
		l.n_pt++;
	l.data = l.pt + l.n_pt * PAGE;
	l.size = l.data + pages * PAGE;
	*ret = l;
	return 0;
}

void lxm_kvm_guest_build(const struct lxm_kvm_guest_layout *l, void *mem)
{
	uint8_t *m = mem;
	uint64_t *gdt = (uint64_t *)(m + l->gdt), *pml4 = (uint64_t *)(m + l->pml4);
	uint64_t *pdpt = (uint64_t *)(m + l->pdpt), *pd = (uint64_t *)(m + l->pd);
	uint64_t *pt = (uint64_t *)(m + l->pt);

	gdt[0] = 0;
	gdt[1] = GDT_CODE64;
	gdt[2] = GDT_DATA;
	pml4[0] = l->pdpt | PTE_P | PTE_RW;
	pdpt[0] = l->pd | PTE_P | PTE_RW;
	for (unsigned i = 0; i < l->n_pt; i++)
		pd[i] = (l->pt + i * PAGE) | PTE_P | PTE_RW;
	/* The page tables lie one after the other: entry j of them all maps page j. */
	for (uint64_t j = 0; j < l->size / PAGE; j++)
		pt[j] = (j * PAGE) | PTE_P | PTE_RW;
	memcpy(m + l->code, guest_code, sizeof(guest_code));
}

void lxm_kvm_guest_sregs(const struct lxm_kvm_guest_layout *l, struct kvm_sregs *s)
{
	struct kvm_segment code = {
		.base = 0,
		.limit = 0xffffffff,
		.selector = SEL_CODE,
		.type = 11, /* execute/read, accessed */
		.present = 1,
		.dpl = 0,
		.db = 0, /* must be 0 with l = 1 */
		.s = 1,
		.l = 1,
		.g = 1,
	};
	struct kvm_segment data = code;

	data.selector = SEL_DATA;
	data.type = 3; /* read/write, accessed */
	data.db = 1;
	data.l = 0;
	s->cs = code;
	s->ds = s->es = s->fs = s->gs = s->ss = data;
	s->gdt.base = l->gdt;
	s->gdt.limit = 3 * 8 - 1;
	s->cr3 = l->pml4;
	s->cr4 = CR4_PAE;
	s->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	s->efer = EFER_LME | EFER_LMA;
}

void lxm_kvm_guest_regs(const struct lxm_kvm_guest_layout *l, struct kvm_regs *r)
{
	memset(r, 0, sizeof(*r));
	r->rip = l->code;
	r->rsi = l->data;
	r->rdx = l->pages;
	r->r8 = LXM_KVM_PROBE_PASSES;
	r->rax = LXM_KVM_GUEST_BYTE;
	r->rflags = 2; /* bit 1 is always set */
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Records a failed step; with errnum > 0 its strerror follows the message. Returns -1. */
static __attribute__((format(printf, 3, 4))) int fail(struct lxm_kvm_measurement *m, int errnum,
						      const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(m->message, sizeof(m->message), fmt, ap);
	va_end(ap);
	if (errnum > 0 && n >= 0 && (size_t)n < sizeof(m->message))
		snprintf(m->message + n, sizeof(m->message) - (size_t)n, ": %s", strerror(errnum));
	m->error = errnum > 0 ? errnum : EIO;
	return -1;
}

/* The guest needs long mode in its CPUID, or KVM may refuse EFER.LME. */
static int set_cpuid(int kvm, int vcpu, struct lxm_kvm_measurement *m)
{
	enum { NENT = 256 };
	_Alignas(struct kvm_cpuid2)
		uint8_t buf[sizeof(struct kvm_cpuid2) + NENT * sizeof(struct kvm_cpuid_entry2)];
	struct kvm_cpuid2 *c = (struct kvm_cpuid2 *)buf;

	memset(buf, 0, sizeof(buf));
	c->nent = NENT;
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) < 0)
		return fail(m, errno, "KVM_GET_SUPPORTED_CPUID");
	if (ioctl(vcpu, KVM_SET_CPUID2, c) < 0)
		return fail(m, errno, "KVM_SET_CPUID2");
	return 0;
}

/* Runs the vCPU until its next exit that is not an interruption; *ns gets the time in KVM_RUN.
 * want is the exit that ends this step. */
static int run_until(int vcpu, struct kvm_run *run, uint32_t want, const char *step, uint64_t *ns,
		     struct lxm_kvm_measurement *m)
{
	uint64_t t = now_ns();

	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return fail(m, errno, "KVM_RUN (%s)", step);
		}
		if (run->exit_reason != KVM_EXIT_INTR)
			break;
	}
	*ns = now_ns() - t;
	if (run->exit_reason == want) {
		const uint8_t *data = (const uint8_t *)run + run->io.data_offset;

		if (want != KVM_EXIT_IO ||
		    (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == LXM_KVM_DONE_PORT &&
		     run->io.size == 1 && *data == LXM_KVM_GUEST_BYTE))
			return 0;
		return fail(m, 0, "KVM_RUN (%s): the guest wrote to port 0x%x instead of 0x%x",
			    step, run->io.port, LXM_KVM_DONE_PORT);
	}
	switch (run->exit_reason) {
	case KVM_EXIT_SHUTDOWN:
		fail(m, 0,
		     "KVM_RUN (%s): the guest stopped with a triple fault (KVM did not accept its "
		     "page tables or segments)",
		     step);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		fail(m, 0, "KVM_RUN (%s): the CPU refused to enter the guest (reason 0x%llx)", step,
		     (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		fail(m, 0, "KVM_RUN (%s): KVM internal error %u", step, run->internal.suberror);
		break;
	default:
		fail(m, 0, "KVM_RUN (%s): the guest stopped unexpectedly (exit reason %u)", step,
		     run->exit_reason);
	}
	return -1;
}

static void unmap(void *p, size_t size)
{
	if (p && p != MAP_FAILED)
		munmap(p, size);
}

/* The guest's steps after the device is open; the caller closes and unmaps. */
static int measure_on(int kvm, const struct lxm_kvm_guest_layout *l, uint8_t **mem,
		      struct kvm_run **run, size_t *run_size, struct lxm_kvm_measurement *m,
		      uint64_t t0)
{
	struct kvm_userspace_memory_region region = { .slot = 0 };
	_cleanup_close_ int vm = -1, vcpu = -1;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	uint64_t ns;
	int k;

	k = ioctl(kvm, KVM_GET_API_VERSION, 0);
	if (k < 0)
		return fail(m, errno, "KVM_GET_API_VERSION");
	if (k != KVM_API_VERSION)
		return fail(m, 0, "KVM_GET_API_VERSION: version %d, lxm speaks %d", k,
			    KVM_API_VERSION);
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return fail(m, errno, "KVM_CREATE_VM");
	/* Populated up front: the host's own page faults are not what is measured. */
	*mem = mmap(NULL, l->size, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_POPULATE, -1, 0);
	if (*mem == MAP_FAILED)
		return fail(m, errno, "allocate %llu bytes of guest memory",
			    (unsigned long long)l->size);
	lxm_kvm_guest_build(l, *mem);
	region.memory_size = l->size;
	region.userspace_addr = (uintptr_t)*mem;
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return fail(m, errno, "KVM_SET_USER_MEMORY_REGION");
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		return fail(m, errno, "KVM_CREATE_VCPU");
	if (set_cpuid(kvm, vcpu, m) < 0)
		return -1;
	k = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (k < (int)sizeof(struct kvm_run))
		return fail(m, k < 0 ? errno : 0, "KVM_GET_VCPU_MMAP_SIZE%s",
			    k < 0 ? "" : ": smaller than struct kvm_run");
	*run_size = (size_t)k;
	*run = mmap(NULL, *run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (*run == MAP_FAILED)
		return fail(m, errno, "mmap the vCPU's kvm_run area");
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		return fail(m, errno, "KVM_GET_SREGS");
	lxm_kvm_guest_sregs(l, &sregs);
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		return fail(m, errno, "KVM_SET_SREGS");
	lxm_kvm_guest_regs(l, &regs);
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		return fail(m, errno, "KVM_SET_REGS");
	m->setup_ns = now_ns() - t0;
	if (run_until(vcpu, *run, KVM_EXIT_IO, "first pass", &m->first_ns, m) < 0)
		return -1;
	for (unsigned pass = 1; pass < LXM_KVM_PROBE_PASSES; pass++) {
		if (run_until(vcpu, *run, KVM_EXIT_IO, "repeat pass", &ns, m) < 0)
			return -1;
		if (pass == 1 || ns < m->repeat_ns)
			m->repeat_ns = ns;
	}
	if (run_until(vcpu, *run, KVM_EXIT_HLT, "hlt", &ns, m) < 0)
		return -1;
	/* The guest really wrote its pages: the times are of real work. */
	for (unsigned i = 0; i < l->pages; i++)
		if ((*mem)[l->data + i * PAGE] != LXM_KVM_GUEST_BYTE)
			return fail(m, 0, "the guest ran but did not write page %u of %u", i,
				    l->pages);
	return 0;
}

void lxm_kvm_measure(const char *dev, unsigned pages, struct lxm_kvm_measurement *m)
{
	struct lxm_kvm_guest_layout l;
	_cleanup_close_ int kvm = -1;
	struct kvm_run *run = NULL;
	uint8_t *mem = NULL;
	size_t run_size = 0;
	uint64_t t0 = now_ns();

	memset(m, 0, sizeof(*m));
	m->pages = pages;
	if (lxm_kvm_guest_layout(pages, &l) < 0) {
		fail(m, EINVAL, "a guest writing %u pages", pages);
		return;
	}
	kvm = open(dev, O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		fail(m, errno, "open %s", dev);
		return;
	}
	measure_on(kvm, &l, &mem, &run, &run_size, m, t0);
	unmap(run, run_size);
	unmap(mem, l.size);
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

void lxm_kvm_classify(const struct lxm_kvm_measurement *m, struct lxm_kvm_probe_result *ret)
{
	struct lxm_kvm_probe_result r = {
		.pages = m->pages,
		.limit_ns = (uint64_t)m->pages * LXM_KVM_LIMIT_NS_PER_PAGE,
	};

	if (m->error) {
		snprintf(r.reason, sizeof(r.reason), "kvm probe: %.*s", (int)sizeof(m->message),
			 m->message);
		*ret = r;
		return;
	}
	r.measured = true;
	r.setup_ns = m->setup_ns;
	r.first_ns = m->first_ns;
	r.repeat_ns = m->repeat_ns;
	r.usable = m->repeat_ns <= r.limit_ns;
	if (r.usable)
		snprintf(r.reason, sizeof(r.reason),
			 "KVM runs guests at speed: writing %u guest pages again took %.2f ms "
			 "(limit %.1f ms)",
			 m->pages, ms(m->repeat_ns), ms(r.limit_ns));
	else
		snprintf(r.reason, sizeof(r.reason),
			 "KVM is slow here: writing %u guest pages again took %.1f ms (limit %.1f "
			 "ms, the first time %.1f ms): nested virtualization without EPT?",
			 m->pages, ms(m->repeat_ns), ms(r.limit_ns), ms(m->first_ns));
	*ret = r;
}

/* Reads the child's whole measurement, or fails (EOF: it died first). Non-blocking fd. */
static int read_measurement(int fd, struct lxm_kvm_measurement *m, size_t *have)
{
	for (;;) {
		ssize_t n = read(fd, (uint8_t *)m + *have, sizeof(*m) - *have);

		if (n < 0)
			return errno == EINTR ? 0 : errno == EAGAIN ? 0 : -errno;
		if (n == 0)
			return -EPIPE;
		*have += (size_t)n;
		if (*have == sizeof(*m))
			return 1;
	}
}

/* How the child ended, for a reason: "exited with status 3", "was killed by signal 11". */
static void describe_status(int status, char *buf, size_t size)
{
	if (WIFSIGNALED(status))
		snprintf(buf, size, "was killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
}

static void child(lxm_kvm_measure_fn measure, const char *dev, unsigned pages, int fd)
{
	struct lxm_kvm_measurement m;
	size_t done = 0;

	/* Dies with the caller: a guest stuck in KVM must not outlive lxmd. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Holds none of the caller's sockets and pipes (a readiness pipe must see its EOF). */
	if (fd > 3)
		close_range(3, (unsigned)fd - 1, 0);
	close_range((unsigned)fd + 1, ~0U, 0);
	measure(dev, pages, &m);
	while (done < sizeof(m)) {
		ssize_t n = write(fd, (uint8_t *)&m + done, sizeof(m) - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(1);
		done += (size_t)n;
	}
	_exit(0);
}

/* Waits for the child's answer until the deadline. 1: read, 0: deadline, <0: -errno. */
static int wait_answer(int fd, uint64_t deadline, struct lxm_kvm_measurement *m)
{
	size_t have = 0;

	for (;;) {
		uint64_t now = now_ns();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int k;

		if (now >= deadline)
			return 0;
		k = poll(&p, 1, (int)((deadline - now + 999999) / 1000000));
		if (k < 0 && errno != EINTR)
			return -errno;
		if (k <= 0)
			continue;
		k = read_measurement(fd, m, &have);
		if (k != 0)
			return k;
	}
}

int lxm_kvm_probe_with(lxm_kvm_measure_fn measure, const char *dev, unsigned pages,
		       unsigned deadline_ms, struct lxm_kvm_probe_result *ret)
{
	struct lxm_kvm_measurement m;
	uint64_t t0 = now_ns();
	char how[96];
	int p[2], status = 0, k;
	pid_t pid;

	memset(ret, 0, sizeof(*ret));
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		k = -errno;
		snprintf(ret->reason, sizeof(ret->reason), "kvm probe: create pipe: %s",
			 strerror(-k));
		return k;
	}
	pid = fork();
	if (pid < 0) {
		k = -errno;
		close(p[0]);
		close(p[1]);
		snprintf(ret->reason, sizeof(ret->reason), "kvm probe: fork: %s", strerror(-k));
		return k;
	}
	if (pid == 0) {
		close(p[0]);
		child(measure, dev, pages, p[1]);
	}
	close(p[1]);
	k = wait_answer(p[0], t0 + (uint64_t)deadline_ms * 1000000ULL, &m);
	close(p[0]);
	if (k <= 0)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (k > 0) {
		lxm_kvm_classify(&m, ret);
	} else if (k == 0) {
		snprintf(ret->reason, sizeof(ret->reason),
			 "KVM probe did not finish within %u ms (a guest writing %u pages; its "
			 "process was killed)",
			 deadline_ms, pages);
	} else if (k == -EPIPE) {
		describe_status(status, how, sizeof(how));
		snprintf(ret->reason, sizeof(ret->reason),
			 "kvm probe: the probe process %s before it answered", how);
	} else {
		snprintf(ret->reason, sizeof(ret->reason), "kvm probe: read its answer: %s",
			 strerror(-k));
		ret->elapsed_ns = now_ns() - t0;
		return k;
	}
	ret->elapsed_ns = now_ns() - t0;
	return 0;
}

int lxm_kvm_probe(const char *dev, unsigned deadline_ms, struct lxm_kvm_probe_result *ret)
{
	return lxm_kvm_probe_with(lxm_kvm_measure, dev, LXM_KVM_PROBE_PAGES, deadline_ms, ret);
}

void lxm_kvm_probe_print(FILE *f, const char *dev, const struct lxm_kvm_probe_result *r)
{
	fprintf(f, "kvm: %s\nreason: %s\ndevice: %s\n", r->usable ? "usable" : "unusable",
		r->reason, dev);
	if (r->measured)
		fprintf(f,
			"pages per pass: %u\nset-up: %.2f ms\nfirst pass: %.2f ms\n"
			"fastest repeat pass: %.2f ms (limit %.2f ms)\n",
			r->pages, ms(r->setup_ns), ms(r->first_ns), ms(r->repeat_ns),
			ms(r->limit_ns));
	fprintf(f, "probe took: %.2f ms\n", ms(r->elapsed_ns));
}
