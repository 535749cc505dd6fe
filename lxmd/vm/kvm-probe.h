/* The KVM usability probe (issue 9): does /dev/kvm run guests at speed here? Its ioctls can all
 * succeed on a host where every guest access to a not-recently-used page costs microseconds
 * (nested virtualization with shadow paging), and a Linux guest then crawls through its boot for
 * minutes; QEMU's TCG is faster there. So the probe runs a real guest: a tiny long-mode guest with
 * paging on writes one byte to each of a few thousand distinct pages, then again, and the
 * repeat passes are timed. It runs in a forked child under a deadline, so a hang or a crash in KVM
 * costs the caller nothing but the deadline. Blocking: lxmd calls it from its thread pool
 * (vm/accel.c). */
#pragma once

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* The device probed unless $LXMD_TEST_KVM_DEV names another (tests point it at a missing one). */
#define LXM_KVM_DEV "/dev/kvm"
/* Pages the guest writes in each of its passes: 16 MiB, a few thousand distinct pages, as an
 * early Linux boot touches them. */
#define LXM_KVM_PROBE_PAGES 4096
/* The whole probe (fork, set-up, both passes) gets this long before its child is killed. */
#define LXM_KVM_PROBE_DEADLINE_MS 1000
/* Passes over those pages: the first maps them, the fastest of the others decides (one pass
 * that a busy host preempted does not). */
#define LXM_KVM_PROBE_PASSES 4
/* The threshold, per page of a repeat pass. A usable KVM (hardware EPT/NPT, on bare metal or in a
 * nested guest with EPT) rewrites a page that it wrote before at the cost of a TLB miss,
 * ~0.03-0.15 us: 4096 pages in well under 1 ms. With nested shadow paging every such write faults
 * out to the hypervisors: 1.6 us per page on the build machine that lxm was written on (6.4 ms
 * for 4096 pages; the issue measured ~9 us there under other loads). 0.5 us per page (2.0 ms for
 * 4096 pages) sits over 3x above the slowest usable figure and over 3x below the slow one, so
 * neither a busy host nor a somewhat faster nested set-up flips the answer. */
#define LXM_KVM_LIMIT_NS_PER_PAGE 500
/* The port the guest writes to after each pass ("out 0xf5, al"), and the byte it writes. */
#define LXM_KVM_DONE_PORT  0xf5
#define LXM_KVM_GUEST_BYTE 0x5a

/* Where the guest's pieces lie in its memory. Guest physical addresses start at 0 and are mapped
 * one to one to virtual addresses by 4 KiB pages over the whole memory. */
struct lxm_kvm_guest_layout {
	uint64_t gdt;	/* GDT: null, 64-bit code (selector 0x08), data (0x10) */
	uint64_t pml4;	/* the one PML4 page (CR3); entry 0 points at pdpt */
	uint64_t pdpt;	/* the one PDPT page; entry 0 points at pd (the first GiB) */
	uint64_t pd;	/* the one page directory; entry i points at page table i */
	uint64_t code;	/* the guest's code (RIP at start) */
	uint64_t pt;	/* the first page table; n_pt follow, each maps 2 MiB */
	unsigned n_pt;	/* page tables: enough to map size */
	uint64_t data;	/* the first page the guest writes; pages follow it */
	unsigned pages; /* pages the guest writes in each pass */
	uint64_t size;	/* bytes of guest memory, every page of it mapped */
};

/* What the probe's child measured (sent to the parent through a pipe, so plain data). */
struct lxm_kvm_measurement {
	int error;	    /* positive errno of the step that failed, 0 when the guest ran */
	char message[240];  /* with error: the step and its cause ("KVM_SET_SREGS: Invalid ...") */
	unsigned pages;	    /* pages written in each pass */
	uint64_t setup_ns;  /* opening the device up to the first KVM_RUN */
	uint64_t first_ns;  /* KVM_RUN of the first pass (first touches: the host maps each page) */
	uint64_t repeat_ns; /* KVM_RUN of the fastest later pass over the same pages: decides */
};

/* The probe's answer. */
struct lxm_kvm_probe_result {
	bool usable;	   /* KVM runs guests at speed: VMs should use it */
	bool measured;	   /* the guest ran: pages and the *_ns times are valid */
	char reason[400];  /* the answer in a user's words, with the figures that decided it */
	unsigned pages;	   /* pages written in each pass */
	uint64_t setup_ns; /* as in lxm_kvm_measurement */
	uint64_t first_ns;
	uint64_t repeat_ns;
	uint64_t limit_ns;   /* the threshold for repeat_ns */
	uint64_t elapsed_ns; /* the whole probe as the caller waited for it (fork to answer) */
};

/* The device to probe: $LXMD_TEST_KVM_DEV when set and non-empty, else LXM_KVM_DEV. */
const char *lxm_kvm_probe_device(void);

/* Lays out a guest writing pages pages (1 .. 131072). -EINVAL for other counts. */
int lxm_kvm_guest_layout(unsigned pages, struct lxm_kvm_guest_layout *ret);
/* Writes the GDT, the page tables and the code into mem (l->size bytes, zeroed). */
void lxm_kvm_guest_build(const struct lxm_kvm_guest_layout *l, void *mem);
/* Sets what the guest starts with on top of KVM_GET_SREGS's answer: long mode with paging
 * (CR0.PE|PG, CR4.PAE, EFER.LME|LMA, CR3), the GDT, 64-bit code and flat data segments. */
void lxm_kvm_guest_sregs(const struct lxm_kvm_guest_layout *l, struct kvm_sregs *s);
/* The general registers at start: RIP at the code, its arguments in RSI, RDX, R8 and AL
 * (LXM_KVM_PROBE_PASSES passes). */
void lxm_kvm_guest_regs(const struct lxm_kvm_guest_layout *l, struct kvm_regs *r);

/* Runs the guest in this process through the KVM API on dev and fills *m. Never exits; may hang
 * or crash with a broken KVM, hence lxm_kvm_probe() runs it in a child. */
void lxm_kvm_measure(const char *dev, unsigned pages, struct lxm_kvm_measurement *m);

/* Turns a measurement into an answer: errors name the step, times above the limit are "slow". */
void lxm_kvm_classify(const struct lxm_kvm_measurement *m, struct lxm_kvm_probe_result *ret);

typedef void (*lxm_kvm_measure_fn)(const char *dev, unsigned pages, struct lxm_kvm_measurement *m);
/* Runs measure in a forked child and waits at most deadline_ms for its answer; a child that has
 * not answered by then is killed and the answer is "did not finish". Returns 0 with the answer
 * in *ret, or -errno when the probe could not be run at all (*ret then says why, not usable). */
int lxm_kvm_probe_with(lxm_kvm_measure_fn measure, const char *dev, unsigned pages,
		       unsigned deadline_ms, struct lxm_kvm_probe_result *ret);
/* lxm_kvm_probe_with(lxm_kvm_measure, dev, LXM_KVM_PROBE_PAGES, ...). */
int lxm_kvm_probe(const char *dev, unsigned deadline_ms, struct lxm_kvm_probe_result *ret);

/* The answer and its figures for a human (lxmd --probe-kvm). */
void lxm_kvm_probe_print(FILE *f, const char *dev, const struct lxm_kvm_probe_result *r);
