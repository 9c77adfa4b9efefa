// SPDX-License-Identifier: GPL-2.0
/*
 * pfnaudit-intree NAME: raw-PFN scenarios with Debian's own drivers only, on QEMU's q35 machine with
 * an emulated VT-d (intel-iommu), the `edu` test device bound to vfio-pci by the guest's init, an
 * `e1000` whose driver this program loads itself (the "driver claims the region" step), and KVM
 * (kvm_amd on QEMU's emulated SVM). tests/vm/scenarios.toml says what the auditor must report.
 *
 * Every step the scenario relies on is checked against what the kernel must have done (the syscall
 * results, SIGBUS on the user mapping after a revocation, the IOMMU range still there for
 * UNMAP_DMA...): a rig failure exits 1 with a line starting "RIG:" and never reads as a product
 * result. Each step is logged on stdout.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/dma-heap.h>
#include <linux/kvm.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

/* The two DRM ioctls used on vgem, as in include/uapi/drm/drm_mode.h (the build host has no DRM
 * UAPI headers). */
struct drm_mode_create_dumb {
	uint32_t height, width, bpp, flags, handle, pitch;
	uint64_t size;
};
struct drm_mode_map_dumb {
	uint32_t handle, pad;
	uint64_t offset;
};
#define DRM_IOCTL_MODE_CREATE_DUMB _IOWR('d', 0xB2, struct drm_mode_create_dumb)
#define DRM_IOCTL_MODE_MAP_DUMB _IOWR('d', 0xB3, struct drm_mode_map_dumb)

#define PAGE 4096UL
/* Pages of a BAR mapped for DMA: enough for several lookups, few enough for TCG. */
#define DMA_PAGES 16
#define IOVA 0x10000000UL
#define E1000_MODULE "/modules/intree/e1000.ko"

static const char *scenario;

static void rig(const char *fmt, ...)
{
	va_list ap;

	fprintf(stdout, "RIG: %s: ", scenario);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
	exit(1);
}

static void step(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

#define CHECK(cond, ...) do { if (!(cond)) rig(__VA_ARGS__); } while (0)

/* Kernel version as major * 100 + minor (5.10 -> 510). */
static int kernel_version(void)
{
	struct utsname u;
	int major = 0, minor = 0;

	uname(&u);
	sscanf(u.release, "%d.%d", &major, &minor);
	return major * 100 + minor;
}

/* Since 5.12 ("PCI: Revoke mappings like devmem") sysfs resource files map through the iomem inode,
 * which a driver's request_mem_region() revokes (revoke_iomem -> unmap_mapping_range). */
static int sysfs_resources_revocable(void)
{
	return kernel_version() >= 512;
}

/* ---- reading a mapping: 0 = read fine, 1 = SIGBUS ---- */

static sigjmp_buf probe_jmp;
static volatile sig_atomic_t probing;

static void on_fault(int sig)
{
	if (probing)
		siglongjmp(probe_jmp, sig);
	_exit(99);
}

static int probe_read(volatile void *addr, uint32_t *value)
{
	struct sigaction sa = { .sa_handler = on_fault };
	int sig;

	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	sig = sigsetjmp(probe_jmp, 1);
	if (sig) {
		probing = 0;
		if (sig == SIGSEGV)
			rig("reading %p gave SIGSEGV (expected data or SIGBUS)", (void *)addr);
		return 1;
	}
	probing = 1;
	*value = *(volatile uint32_t *)addr;
	probing = 0;
	return 0;
}

static uint32_t expect_readable(void *addr, const char *what)
{
	uint32_t v = 0;

	CHECK(!probe_read(addr, &v), "%s at %p faulted (SIGBUS); the mapping should be live", what, addr);
	step("read %s at %p: 0x%08x", what, addr, v);
	return v;
}

static void expect_sigbus(void *addr, const char *what)
{
	uint32_t v;

	CHECK(probe_read(addr, &v), "%s at %p still reads 0x%08x: the kernel did not revoke it", what, addr, v);
	step("read %s at %p: SIGBUS (revoked, as expected)", what, addr);
}

/* ---- PCI devices in sysfs ---- */

static unsigned long sysfs_ulong(const char *bdf, const char *attr)
{
	char path[PATH_MAX], buf[64] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", bdf, attr);
	f = fopen(path, "r");
	if (!f || !fgets(buf, sizeof(buf), f))
		rig("cannot read %s: %s", path, strerror(errno));
	fclose(f);
	return strtoul(buf, NULL, 0);
}

/* The first PCI device with this vendor:device; its bus address goes to @bdf. */
static void find_pci(unsigned vendor, unsigned device, char bdf[32], const char *what)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;

	CHECK(d, "no /sys/bus/pci/devices");
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (sysfs_ulong(e->d_name, "vendor") == vendor && sysfs_ulong(e->d_name, "device") == device) {
			snprintf(bdf, 32, "%.31s", e->d_name);
			closedir(d);
			return;
		}
	}
	rig("no %s (%04x:%04x) on the PCI bus: is the VM started with -device %s?", what, vendor, device, what);
}

/* The driver bound to @bdf ("" when none). */
static void pci_driver(const char *bdf, char *out, size_t len)
{
	char path[PATH_MAX], link[PATH_MAX];
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	n = readlink(path, link, sizeof(link) - 1);
	out[0] = 0;
	if (n > 0) {
		link[n] = 0;
		snprintf(out, len, "%s", strrchr(link, '/') + 1);
	}
}

static int iommu_group(const char *bdf)
{
	char path[PATH_MAX], link[PATH_MAX];
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	n = readlink(path, link, sizeof(link) - 1);
	CHECK(n > 0, "%s has no iommu_group (is intel_iommu=on on the command line?)", bdf);
	link[n] = 0;
	return atoi(strrchr(link, '/') + 1);
}

static char edu[32], nic[32];

static void find_devices(void)
{
	char drv[64];

	find_pci(0x1234, 0x11e8, edu, "edu");
	pci_driver(edu, drv, sizeof(drv));
	CHECK(!strcmp(drv, "vfio-pci"), "edu %s is bound to \"%s\", not vfio-pci (the guest init binds it)", edu, drv);
	find_pci(0x8086, 0x100e, nic, "e1000");
	step("edu %s (vfio-pci, iommu group %d), e1000 %s", edu, iommu_group(edu), nic);
}

/* ---- e1000: the in-tree driver that claims its BAR ---- */

static int e1000_loaded(void)
{
	return access("/sys/module/e1000", F_OK) == 0;
}

static void e1000_unload(void)
{
	if (!e1000_loaded())
		return;
	CHECK(!syscall(SYS_delete_module, "e1000", O_NONBLOCK), "rmmod e1000: %s", strerror(errno));
	step("rmmod e1000 (left loaded by an earlier scenario)");
}

static void e1000_load(void)
{
	char drv[64];
	int fd = open(E1000_MODULE, O_RDONLY | O_CLOEXEC);

	CHECK(fd >= 0, "open %s: %s", E1000_MODULE, strerror(errno));
	CHECK(!syscall(SYS_finit_module, fd, "", 0), "insmod e1000: %s", strerror(errno));
	close(fd);
	pci_driver(nic, drv, sizeof(drv));
	CHECK(!strcmp(drv, "e1000"), "e1000 loaded but %s is bound to \"%s\"", nic, drv);
	step("insmod e1000: bound to %s (it requested its BAR regions)", nic);
}

/* mmap of /sys/bus/pci/devices/<bdf>/resource0 (a VM_IO|VM_PFNMAP mapping by io_remap_pfn_range). */
static void *map_resource0(const char *bdf, size_t *size)
{
	char link[PATH_MAX], path[PATH_MAX];
	struct stat st;
	void *p;
	int fd;

	/* The canonical path (/sys/devices/pci.../resource0), the one /proc/PID/maps shows. */
	snprintf(link, sizeof(link), "/sys/bus/pci/devices/%s/resource0", bdf);
	CHECK(realpath(link, path), "realpath %s: %s", link, strerror(errno));
	fd = open(path, O_RDWR | O_SYNC | O_CLOEXEC);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	CHECK(!fstat(fd, &st) && st.st_size >= (off_t)(DMA_PAGES * PAGE), "%s is too small", path);
	*size = st.st_size;
	p = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED, "mmap %s: %s", path, strerror(errno));
	close(fd);
	step("mmap %s: %zu bytes at %p", path, *size, p);
	return p;
}

/* ---- VFIO ---- */

struct vfio {
	int container, group, device;
	struct vfio_region_info bar0, config;
};

/* A type1 container holding edu's group; the device fd too when @with_device. */
static void vfio_open(struct vfio *v, int with_device)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	char path[64];
	int type;

	memset(v, 0, sizeof(*v));
	v->device = -1;
	v->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	CHECK(v->container >= 0, "open /dev/vfio/vfio: %s", strerror(errno));
	CHECK(ioctl(v->container, VFIO_GET_API_VERSION) == VFIO_API_VERSION, "VFIO API version mismatch");
	type = ioctl(v->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 1 ? VFIO_TYPE1v2_IOMMU : VFIO_TYPE1_IOMMU;
	snprintf(path, sizeof(path), "/dev/vfio/%d", iommu_group(edu));
	v->group = open(path, O_RDWR | O_CLOEXEC);
	CHECK(v->group >= 0, "open %s: %s", path, strerror(errno));
	CHECK(!ioctl(v->group, VFIO_GROUP_GET_STATUS, &status), "VFIO_GROUP_GET_STATUS: %s", strerror(errno));
	CHECK(status.flags & VFIO_GROUP_FLAGS_VIABLE, "group %s is not viable", path);
	CHECK(!ioctl(v->group, VFIO_GROUP_SET_CONTAINER, &v->container), "VFIO_GROUP_SET_CONTAINER: %s", strerror(errno));
	CHECK(!ioctl(v->container, VFIO_SET_IOMMU, type), "VFIO_SET_IOMMU(type1%s): %s",
	      type == VFIO_TYPE1v2_IOMMU ? "v2" : "", strerror(errno));
	step("vfio: container with group %s, %s", path, type == VFIO_TYPE1v2_IOMMU ? "type1v2" : "type1");
	if (!with_device)
		return;
	v->device = ioctl(v->group, VFIO_GROUP_GET_DEVICE_FD, edu);
	CHECK(v->device >= 0, "VFIO_GROUP_GET_DEVICE_FD %s: %s", edu, strerror(errno));
	v->bar0 = (struct vfio_region_info){ .argsz = sizeof(v->bar0), .index = VFIO_PCI_BAR0_REGION_INDEX };
	CHECK(!ioctl(v->device, VFIO_DEVICE_GET_REGION_INFO, &v->bar0), "GET_REGION_INFO BAR0: %s", strerror(errno));
	CHECK(v->bar0.flags & VFIO_REGION_INFO_FLAG_MMAP, "edu BAR0 is not mmap-able through vfio");
	v->config = (struct vfio_region_info){ .argsz = sizeof(v->config), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	CHECK(!ioctl(v->device, VFIO_DEVICE_GET_REGION_INFO, &v->config), "GET_REGION_INFO config: %s", strerror(errno));
	step("vfio: device fd for %s, BAR0 %llu bytes at region offset 0x%llx", edu,
	     (unsigned long long)v->bar0.size, (unsigned long long)v->bar0.offset);
}

static void vfio_close(struct vfio *v)
{
	if (v->device >= 0)
		close(v->device);
	close(v->group);
	close(v->container);
}

static void *vfio_map_bar0(struct vfio *v)
{
	void *p = mmap(NULL, v->bar0.size, PROT_READ | PROT_WRITE, MAP_SHARED, v->device, v->bar0.offset);

	CHECK(p != MAP_FAILED, "mmap of edu BAR0 through the vfio device fd: %s", strerror(errno));
	step("mmap edu BAR0 through the vfio device: %p", p);
	return p;
}

/* PCI_COMMAND_MEMORY on or off through the device's config region (vfio emulates the write). */
static void vfio_set_memory(struct vfio *v, int on)
{
	uint16_t cmd;
	off_t at = v->config.offset + PCI_COMMAND;

	CHECK(pread(v->device, &cmd, 2, at) == 2, "pread PCI_COMMAND: %s", strerror(errno));
	cmd = on ? (cmd | PCI_COMMAND_MEMORY) : (cmd & ~PCI_COMMAND_MEMORY);
	CHECK(pwrite(v->device, &cmd, 2, at) == 2, "pwrite PCI_COMMAND: %s", strerror(errno));
	CHECK(pread(v->device, &cmd, 2, at) == 2, "pread PCI_COMMAND: %s", strerror(errno));
	CHECK(!!(cmd & PCI_COMMAND_MEMORY) == on, "PCI_COMMAND_MEMORY did not turn %s", on ? "on" : "off");
	step("PCI_COMMAND_MEMORY %s through the config region (command 0x%04x)", on ? "set" : "cleared", cmd);
}

/* VFIO_IOMMU_MAP_DMA; 0 or -errno. */
static int map_dma(struct vfio *v, void *vaddr, size_t size)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (unsigned long)vaddr,
		.iova = IOVA,
		.size = size,
	};
	int ret = ioctl(v->container, VFIO_IOMMU_MAP_DMA, &map) ? -errno : 0;

	step("VFIO_IOMMU_MAP_DMA vaddr %p iova 0x%lx size 0x%zx: %s", vaddr, IOVA, size, ret ? strerror(-ret) : "ok");
	return ret;
}

/* VFIO_IOMMU_UNMAP_DMA; must find exactly the @size bytes mapped at IOVA. */
static void unmap_dma(struct vfio *v, size_t size)
{
	struct vfio_iommu_type1_dma_unmap unmap = { .argsz = sizeof(unmap), .iova = IOVA, .size = size };

	CHECK(!ioctl(v->container, VFIO_IOMMU_UNMAP_DMA, &unmap), "VFIO_IOMMU_UNMAP_DMA: %s", strerror(errno));
	step("VFIO_IOMMU_UNMAP_DMA iova 0x%lx: unmapped 0x%llx bytes", IOVA, (unsigned long long)unmap.size);
	CHECK(unmap.size == size, "UNMAP_DMA found 0x%llx bytes, not the 0x%zx mapped: the IOMMU did not keep the range",
	      (unsigned long long)unmap.size, size);
}

/* ---- scenarios ---- */

/* a (keep) / c (unmap first): edu BAR0 mapped by vfio, the same range mapped for (peer-to-peer) DMA,
 * then memory decoding turned off: vfio zaps the CPU mapping (zap_vma_ptes on 5.10/6.1,
 * unmap_mapping_range on the device inode on 6.12) while the IOMMU keeps the PFNs until UNMAP_DMA. */
static void vfio_memory_disable(int unmap_first)
{
	struct vfio v;
	void *bar;

	vfio_open(&v, 1);
	bar = vfio_map_bar0(&v);
	CHECK(expect_readable(bar, "edu BAR0 identification") == 0x010000ed, "edu BAR0 is not edu's (id != 0x010000ed)");
	CHECK(!map_dma(&v, bar, DMA_PAGES * PAGE), "MAP_DMA of the vfio BAR mapping failed (peer-to-peer map)");
	if (unmap_first)
		unmap_dma(&v, DMA_PAGES * PAGE);
	vfio_set_memory(&v, 0);
	expect_sigbus(bar, "edu BAR0 with memory decoding off");
	if (!unmap_first)
		unmap_dma(&v, DMA_PAGES * PAGE);
	vfio_set_memory(&v, 1);
	expect_readable(bar, "edu BAR0 with memory decoding on again");
	CHECK(!munmap(bar, v.bar0.size), "munmap: %s", strerror(errno));
	vfio_close(&v);
}

/* b / c: e1000's resource0 mapped through sysfs and for DMA in a container (edu's group), then e1000
 * is loaded and claims the BAR: since 5.12 the kernel revokes the sysfs mappings (revoke_iomem). */
static void iomem_claim(int unmap_first)
{
	struct vfio v;
	size_t size;
	void *res;

	e1000_unload();
	res = map_resource0(nic, &size);
	expect_readable(res, "e1000 BAR0 (CTRL) through sysfs");
	vfio_open(&v, 0);
	CHECK(!map_dma(&v, res, DMA_PAGES * PAGE), "MAP_DMA of the sysfs resource mapping failed");
	if (unmap_first)
		unmap_dma(&v, DMA_PAGES * PAGE);
	e1000_load();
	if (sysfs_resources_revocable())
		expect_sigbus(res, "e1000 BAR0 through sysfs after the driver claimed it");
	else
		expect_readable(res, "e1000 BAR0 through sysfs after the claim (< 5.12: not revoked)");
	if (!unmap_first)
		unmap_dma(&v, DMA_PAGES * PAGE);
	CHECK(!munmap(res, size), "munmap: %s", strerror(errno));
	vfio_close(&v);
}

/* The VmFlags of the mapping at @addr (/proc/self/smaps), e.g. "rd wr sh mr mw me ms pf dd". */
static void vm_flags(void *addr, char *out, size_t len)
{
	char line[512], want[32];
	FILE *f = fopen("/proc/self/smaps", "r");
	int found = 0;

	CHECK(f, "open /proc/self/smaps: %s", strerror(errno));
	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	out[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, want, strlen(want)))
			found = 1;
		else if (found && !strncmp(line, "VmFlags:", 8)) {
			snprintf(out, len, "%s", line + 9);
			out[strcspn(out, "\n")] = 0;
			break;
		}
	}
	fclose(f);
	CHECK(out[0], "no VmFlags for the mapping at %p in /proc/self/smaps", addr);
}

/* RAM behind a PFN map: the system dma-heap (remap_pfn_range of its pages at mmap, 6.12) or a vgem
 * dumb buffer (drm_gem_shmem: vmf_insert_pfn at fault time, 6.1+). */
static void *map_ram_pfnmap(const char *source, size_t len)
{
	void *buf;
	int fd;

	if (!strcmp(source, "dma-heap")) {
		struct dma_heap_allocation_data alloc = { .len = len, .fd_flags = O_RDWR | O_CLOEXEC };
		int heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);

		CHECK(heap >= 0, "open /dev/dma_heap/system: %s", strerror(errno));
		CHECK(!ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &alloc), "DMA_HEAP_IOCTL_ALLOC: %s", strerror(errno));
		close(heap);
		fd = alloc.fd;
		buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	} else if (!strcmp(source, "vgem")) {
		struct drm_mode_create_dumb create = { .height = len / PAGE, .width = PAGE / 4, .bpp = 32 };
		struct drm_mode_map_dumb map = { 0 };
		char path[64], link[PATH_MAX];
		int card;

		/* vgem's card hangs off a platform device named "vgem" (with no driver bound). */
		for (card = 0; card < 8; card++) {
			ssize_t n;

			snprintf(path, sizeof(path), "/sys/class/drm/card%d/device", card);
			n = readlink(path, link, sizeof(link) - 1);
			if (n > 0 && (link[n] = 0, !strncmp(strrchr(link, '/') + 1, "vgem", 4)))
				break;
		}
		CHECK(card < 8, "no vgem DRM card in /sys/class/drm (is vgem loaded?)");
		snprintf(path, sizeof(path), "/dev/dri/card%d", card);
		fd = open(path, O_RDWR | O_CLOEXEC);
		CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
		CHECK(!ioctl(fd, DRM_IOCTL_MODE_CREATE_DUMB, &create), "DRM_IOCTL_MODE_CREATE_DUMB: %s", strerror(errno));
		CHECK(create.size >= len, "vgem dumb buffer of %llu bytes", (unsigned long long)create.size);
		map.handle = create.handle;
		CHECK(!ioctl(fd, DRM_IOCTL_MODE_MAP_DUMB, &map), "DRM_IOCTL_MODE_MAP_DUMB: %s", strerror(errno));
		buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, map.offset);
	} else {
		rig("unknown RAM PFN map source %s (dma-heap or vgem)", source);
	}
	CHECK(buf != MAP_FAILED, "mmap of the %s buffer: %s", source, strerror(errno));
	close(fd);
	return buf;
}

/* c: RAM behind a PFN map: vfio's type1 looks the PFNs up (follow_fault_pfn), sees they are
 * ordinary RAM and refuses with EFAULT. */
static void ram_pfnmap_refused(const char *source)
{
	size_t len = DMA_PAGES * PAGE;
	char flags[512];
	struct vfio v;
	void *buf;
	int ret;

	buf = map_ram_pfnmap(source, len);
	memset(buf, 0x5a, len);
	vm_flags(buf, flags, sizeof(flags));
	step("%s: %zu bytes of RAM mapped at %p, VmFlags %s", source, len, buf, flags);
	CHECK(strstr(flags, " pf") || !strncmp(flags, "pf", 2), "the %s mapping is not VM_PFNMAP (no \"pf\" in VmFlags)", source);
	vfio_open(&v, 0);
	ret = map_dma(&v, buf, len);
	CHECK(ret == -EFAULT, "MAP_DMA of RAM behind a PFN map returned %s, expected EFAULT", ret ? strerror(-ret) : "success");
	CHECK(!munmap(buf, len), "munmap: %s", strerror(errno));
	vfio_close(&v);
}

/* A KVM VM whose vCPU, in real mode, reads the first word of memslot 1 (guest 0x10000) and halts. */
struct guest {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	long run_size;
	void *ram;
};

/* Creates the VM with memslot 1 backed by @backing (64 KiB) and runs the vCPU once: KVM resolves the
 * host PFN by a raw lookup (hva_to_pfn). Returns what the vCPU read. */
static uint32_t guest_run(struct guest *g, void *backing, const char *what)
{
	/* Real mode at 0: mov ax,0x1000; mov ds,ax; mov eax,[0]; hlt */
	static const uint8_t code[] = { 0xb8, 0x00, 0x10, 0x8e, 0xd8, 0x66, 0xa1, 0x00, 0x00, 0xf4 };
	struct kvm_userspace_memory_region ram_slot, pfn_slot;
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = 0, .rflags = 2 };

	g->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	CHECK(g->kvm >= 0, "open /dev/kvm: %s (is kvm_amd loaded?)", strerror(errno));
	CHECK(ioctl(g->kvm, KVM_GET_API_VERSION, 0) == KVM_API_VERSION, "KVM API version");
	g->vm = ioctl(g->kvm, KVM_CREATE_VM, 0);
	CHECK(g->vm >= 0, "KVM_CREATE_VM: %s", strerror(errno));
	g->ram = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(g->ram != MAP_FAILED, "mmap guest RAM: %s", strerror(errno));
	memcpy(g->ram, code, sizeof(code));
	ram_slot = (struct kvm_userspace_memory_region){ .slot = 0, .guest_phys_addr = 0, .memory_size = 0x10000,
							.userspace_addr = (unsigned long)g->ram };
	pfn_slot = (struct kvm_userspace_memory_region){ .slot = 1, .guest_phys_addr = 0x10000, .memory_size = 0x10000,
							.userspace_addr = (unsigned long)backing };
	CHECK(!ioctl(g->vm, KVM_SET_USER_MEMORY_REGION, &ram_slot), "KVM_SET_USER_MEMORY_REGION ram: %s", strerror(errno));
	CHECK(!ioctl(g->vm, KVM_SET_USER_MEMORY_REGION, &pfn_slot), "KVM_SET_USER_MEMORY_REGION %s: %s", what,
	      strerror(errno));
	step("kvm: memslot 1 at guest 0x10000 backed by %s at %p", what, backing);
	g->vcpu = ioctl(g->vm, KVM_CREATE_VCPU, 0);
	CHECK(g->vcpu >= 0, "KVM_CREATE_VCPU: %s", strerror(errno));
	g->run_size = ioctl(g->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	g->run = mmap(NULL, g->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, g->vcpu, 0);
	CHECK(g->run != MAP_FAILED, "mmap kvm_run: %s", strerror(errno));
	CHECK(!ioctl(g->vcpu, KVM_GET_SREGS, &sregs), "KVM_GET_SREGS: %s", strerror(errno));
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	CHECK(!ioctl(g->vcpu, KVM_SET_SREGS, &sregs), "KVM_SET_SREGS: %s", strerror(errno));
	CHECK(!ioctl(g->vcpu, KVM_SET_REGS, &regs), "KVM_SET_REGS: %s", strerror(errno));
	CHECK(!ioctl(g->vcpu, KVM_RUN, 0), "KVM_RUN: %s", strerror(errno));
	CHECK(!ioctl(g->vcpu, KVM_GET_REGS, &regs), "KVM_GET_REGS: %s", strerror(errno));
	step("kvm: vCPU exit %u, eax 0x%08llx", g->run->exit_reason, (unsigned long long)regs.rax);
	CHECK(g->run->exit_reason == KVM_EXIT_HLT, "vCPU stopped with exit reason %u, not HLT", g->run->exit_reason);
	return regs.rax;
}

static void guest_destroy(struct guest *g)
{
	munmap(g->run, g->run_size);
	close(g->vcpu);
	close(g->vm);
	close(g->kvm);
	munmap(g->ram, 0x10000);
}

/* d: a KVM memslot backed by a PFN map, read by the vCPU, then revoked while the VM lives: KVM drops
 * its mapping from the mmu notifier (correct use, which the catalog suppresses). @backing "vfio":
 * edu's BAR0 mapped through vfio, revoked by turning memory decoding off (all kernels); "sysfs":
 * e1000's resource0, revoked by e1000's claim (5.12+; nothing is revoked on 5.10). */
static void kvm_memslot(const char *backing)
{
	struct guest g;
	uint32_t read;

	if (!strcmp(backing, "vfio")) {
		struct vfio v;
		void *bar;

		vfio_open(&v, 1);
		bar = vfio_map_bar0(&v);
		read = guest_run(&g, bar, "the vfio BAR mapping");
		CHECK(read == 0x010000ed, "the vCPU read 0x%08x from the BAR memslot, not edu's id", read);
		vfio_set_memory(&v, 0);
		expect_sigbus(bar, "edu BAR0 with memory decoding off, VM alive");
		vfio_set_memory(&v, 1);
		guest_destroy(&g);
		CHECK(!munmap(bar, v.bar0.size), "munmap: %s", strerror(errno));
		vfio_close(&v);
	} else if (!strcmp(backing, "sysfs")) {
		size_t size;
		void *res;

		e1000_unload();
		res = map_resource0(nic, &size);
		read = guest_run(&g, res, "e1000's sysfs resource0 mapping");
		CHECK(read == expect_readable(res, "e1000 BAR0 (CTRL) through sysfs"),
		      "the vCPU read 0x%08x from the BAR memslot, not what the CPU reads there", read);
		e1000_load();
		if (sysfs_resources_revocable())
			expect_sigbus(res, "e1000 BAR0 through sysfs after the driver claimed it, VM alive");
		else
			expect_readable(res, "e1000 BAR0 through sysfs after the claim (< 5.12: not revoked)");
		guest_destroy(&g);
		CHECK(!munmap(res, size), "munmap: %s", strerror(errno));
	} else {
		rig("unknown memslot backing %s (vfio or sysfs)", backing);
	}
}

/* Reads 4 bytes at @addr of process @pid through /proc/PID/mem (ptrace access: a VM_IO mapping is
 * read by its vm_ops->access, generic_access_phys for sysfs resources); -errno on failure. */
static long proc_mem_read(pid_t pid, void *addr, uint32_t *value)
{
	char path[64];
	long n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/mem", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	n = pread(fd, value, 4, (off_t)(unsigned long)addr);
	n = n < 0 ? -errno : n;
	close(fd);
	return n;
}

/* e: kernel-internal lookups of a PFN map (ptrace access, fork's PAT copy, exit's untrack) on
 * e1000's sysfs resource0, across the revocation by e1000's claim (5.12+): the forked child holds
 * the mapping through the revocation and exits after it. */
static void kernel_internal(void)
{
	int ready[2], go[2];
	uint32_t v;
	size_t size;
	void *res;
	pid_t child;
	long n;
	int status;
	char c = 0;

	e1000_unload();
	res = map_resource0(nic, &size);
	expect_readable(res, "e1000 BAR0 (CTRL) through sysfs");
	n = proc_mem_read(getpid(), res, &v);
	CHECK(n == 4, "/proc/self/mem read of the PFN map: %s", n < 0 ? strerror(-n) : "short");
	step("/proc/self/mem read of the PFN map: 0x%08x", v);
	CHECK(!pipe(ready) && !pipe(go), "pipe: %s", strerror(errno));
	child = fork();
	CHECK(child >= 0, "fork: %s", strerror(errno));
	if (child == 0) {
		uint32_t w;

		if (probe_read(res, &w))
			_exit(3);
		if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(4);
		/* After the revocation: the inherited mapping is revoked too (5.12+). */
		if (probe_read(res, &w) != sysfs_resources_revocable())
			_exit(5);
		_exit(0); /* exit_mmap of the inherited PFN map */
	}
	CHECK(read(ready[0], &c, 1) == 1, "the child did not get ready (it could not read the inherited mapping)");
	n = proc_mem_read(child, res, &v);
	CHECK(n == 4, "/proc/%d/mem read of the child's PFN map: %s", child, n < 0 ? strerror(-n) : "short");
	step("fork: child %d read the inherited PFN map; /proc/%d/mem read: 0x%08x", child, child, v);
	e1000_load();
	n = proc_mem_read(getpid(), res, &v);
	if (sysfs_resources_revocable()) {
		expect_sigbus(res, "e1000 BAR0 through sysfs after the driver claimed it");
		CHECK(n < 0, "/proc/self/mem still reads the revoked PFN map (0x%08x)", v);
		step("/proc/self/mem read after the revocation: %s (as expected)", strerror(-n));
	} else {
		expect_readable(res, "e1000 BAR0 through sysfs after the claim (< 5.12: not revoked)");
		CHECK(n == 4, "/proc/self/mem read after the claim: %s", n < 0 ? strerror(-n) : "short");
	}
	CHECK(write(go[1], &c, 1) == 1, "write: %s", strerror(errno));
	CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status), "the child died (status 0x%x)", status);
	CHECK(WEXITSTATUS(status) == 0, "the child exited %d (5: its inherited mapping %s after the claim)",
	      WEXITSTATUS(status), sysfs_resources_revocable() ? "still read" : "faulted");
	step("child %d saw its inherited mapping %s after the claim and exited holding it", child,
	     sysfs_resources_revocable() ? "revoked" : "still live");
	CHECK(!munmap(res, size), "munmap: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: pfnaudit-intree vfio-zap-keep|vfio-zap-unmap-first|iomem-claim-keep|"
				"iomem-claim-unmap-first|ram-pfnmap-refused dma-heap|vgem|kvm-memslot vfio|sysfs|kernel-internal\n");
		return 2;
	}
	scenario = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	find_devices();
	if (!strcmp(scenario, "vfio-zap-keep"))
		vfio_memory_disable(0);
	else if (!strcmp(scenario, "vfio-zap-unmap-first"))
		vfio_memory_disable(1);
	else if (!strcmp(scenario, "iomem-claim-keep"))
		iomem_claim(0);
	else if (!strcmp(scenario, "iomem-claim-unmap-first"))
		iomem_claim(1);
	else if (!strcmp(scenario, "ram-pfnmap-refused"))
		ram_pfnmap_refused(argc > 2 ? argv[2] : "dma-heap");
	else if (!strcmp(scenario, "kvm-memslot"))
		kvm_memslot(argc > 2 ? argv[2] : "vfio");
	else if (!strcmp(scenario, "kernel-internal"))
		kernel_internal();
	else
		rig("unknown scenario");
	step("%s: done", scenario);
	return 0;
}
