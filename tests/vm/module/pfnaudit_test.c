// SPDX-License-Identifier: GPL-2.0
/*
 * pfnaudit_test: a deliberately misbehaving driver for pfn-auditor's VM tests.
 *
 * /dev/pfnaudit maps kernel pages with remap_pfn_range() (VM_IO | VM_PFNMAP). Its ioctls look the
 * PFNs up again the way real drivers do (follow_pfn / follow_pte / follow_pfnmap_start, or
 * get_vaddr_frames) and KEEP them, then revoke or zap the mapping on request: exactly the
 * "pretty much broken" pattern pfn-auditor reports. Built against Debian 5.10, 6.1 and 6.12.
 *
 * The raw lookups are made directly inside pfnaudit_pin_tracked() and pfnaudit_lookup_untracked()
 * (raw_lookup() is __always_inline), so the kernel stack names them as the callers: those are the
 * "holders" the test policy talks about.
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 12, 0)
#include <media/frame_vector.h>
#endif

#include "pfnaudit_uapi.h"

#define MAX_KEPT 256

/* One open file: what the "driver" keeps. */
struct pfnaudit_file {
	struct mutex lock;
	unsigned long tracked[MAX_KEPT];	/* released by pfnaudit_unpin_tracked() */
	unsigned int ntracked;
	unsigned long untracked[MAX_KEPT];	/* never released: no release function */
	unsigned int nuntracked;
	struct frame_vector *vec;
};

/* The holders and the release function: global so that kprobes and stacks can name them. */
long pfnaudit_pin_tracked(struct pfnaudit_file *pf, struct pfnaudit_req *req);
long pfnaudit_unpin_tracked(struct pfnaudit_file *pf, unsigned long pfn);
long pfnaudit_lookup_untracked(struct pfnaudit_file *pf, struct pfnaudit_req *req);

/* Backing pages of one mapping, freed when the vma goes away. */
struct pfnaudit_backing {
	struct page *pages;
	unsigned int order;
};

static void pfnaudit_vma_close(struct vm_area_struct *vma)
{
	struct pfnaudit_backing *b = vma->vm_private_data;

	if (b) {
		__free_pages(b->pages, b->order);
		kfree(b);
		vma->vm_private_data = NULL;
	}
}

static const struct vm_operations_struct pfnaudit_vm_ops = {
	.close = pfnaudit_vma_close,
};

static int pfnaudit_mmap(struct file *file, struct vm_area_struct *vma)
{
	unsigned long size = vma->vm_end - vma->vm_start;
	struct pfnaudit_backing *b;
	int ret;

	if (size > PFNAUDIT_MAX_PAGES * PAGE_SIZE || vma->vm_pgoff)
		return -EINVAL;
	b = kzalloc(sizeof(*b), GFP_KERNEL);
	if (!b)
		return -ENOMEM;
	b->order = get_order(size);
	b->pages = alloc_pages(GFP_KERNEL | __GFP_ZERO, b->order);
	if (!b->pages) {
		kfree(b);
		return -ENOMEM;
	}
	ret = remap_pfn_range(vma, vma->vm_start, page_to_pfn(b->pages), size, vma->vm_page_prot);
	if (ret) {
		__free_pages(b->pages, b->order);
		kfree(b);
		return ret;
	}
	vma->vm_private_data = b;
	vma->vm_ops = &pfnaudit_vm_ops;
	return 0;
}

/* One raw lookup of the PFN behind @addr, with the API this kernel has. */
static __always_inline int raw_lookup(struct mm_struct *mm, struct vm_area_struct *vma, unsigned long addr,
				      bool use_follow_pte, unsigned long *pfn)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
	struct follow_pfnmap_args args = { .vma = vma, .address = addr };
	int ret = follow_pfnmap_start(&args);

	if (ret)
		return ret;
	*pfn = args.pfn;
	follow_pfnmap_end(&args);
	return 0;
#else
	if (use_follow_pte) {
		pte_t *ptep;
		spinlock_t *ptl;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 10, 0)
		int ret = follow_pte(vma, addr, &ptep, &ptl);
#else
		int ret = follow_pte(mm, addr, &ptep, &ptl);
#endif
		if (ret)
			return ret;
		*pfn = pte_pfn(*ptep);
		pte_unmap_unlock(ptep, ptl);
		return 0;
	}
	return follow_pfn(vma, addr, pfn);
#endif
}

/*
 * A storm of distinct kernel stacks (the stack-storm scenario): lookup number @n of ordinary memory
 * (the process's stack vma: never a pin) is made STORM_DEPTH calls deep through pfnaudit_storm_a()
 * and pfnaudit_storm_b(), chosen by the bits of @n, so each lookup has a stack of its own. The two
 * count their calls in different variables so that the compiler cannot fold them into one.
 */
#define STORM_DEPTH 18
static unsigned long storm_calls_a, storm_calls_b;
noinline int pfnaudit_storm_a(struct mm_struct *mm, struct vm_area_struct *vma, unsigned long n, int depth);
noinline int pfnaudit_storm_b(struct mm_struct *mm, struct vm_area_struct *vma, unsigned long n, int depth);

static __always_inline int storm_step(struct mm_struct *mm, struct vm_area_struct *vma, unsigned long n, int depth)
{
	unsigned long pfn;
	int ret;

	if (!depth)
		return raw_lookup(mm, vma, vma->vm_start, false, &pfn);
	if (n & 1)
		ret = pfnaudit_storm_a(mm, vma, n >> 1, depth - 1);
	else
		ret = pfnaudit_storm_b(mm, vma, n >> 1, depth - 1);
	barrier(); /* not a tail call: this frame stays on the stack */
	return ret;
}

noinline int pfnaudit_storm_a(struct mm_struct *mm, struct vm_area_struct *vma, unsigned long n, int depth)
{
	WRITE_ONCE(storm_calls_a, storm_calls_a + 1);
	return storm_step(mm, vma, n, depth);
}

noinline int pfnaudit_storm_b(struct mm_struct *mm, struct vm_area_struct *vma, unsigned long n, int depth)
{
	WRITE_ONCE(storm_calls_b, storm_calls_b + 1);
	return storm_step(mm, vma, n, depth);
}

/* @count storm lookups numbered from @first (distinct numbers: distinct stacks). */
static void storm(struct mm_struct *mm, unsigned long first, unsigned int count)
{
	struct vm_area_struct *vma = find_vma(mm, mm->start_stack);
	unsigned int i;

	if (!vma || vma->vm_start > mm->start_stack || (vma->vm_flags & (VM_IO | VM_PFNMAP)))
		return;
	for (i = 0; i < count; i++)
		pfnaudit_storm_a(mm, vma, first + i, STORM_DEPTH);
}

/* Looks up each page and appends its PFN to @kept; returns pages done or -errno. */
#define LOOKUP_PAGES(req, kept, nkept)                                                        \
	({                                                                                     \
		struct mm_struct *mm = current->mm;                                            \
		long done = 0;                                                                 \
		mmap_read_lock(mm);                                                            \
		while (done < (long)(req)->npages && (nkept) < MAX_KEPT) {                     \
			unsigned long addr = (req)->addr + done * PAGE_SIZE;                   \
			struct vm_area_struct *vma = find_vma(mm, addr);                       \
			unsigned long pfn;                                                     \
			int ret;                                                               \
			if (!vma || addr < vma->vm_start) {                                    \
				done = -EFAULT;                                                \
				break;                                                         \
			}                                                                      \
			ret = raw_lookup(mm, vma, addr, (req)->use_follow_pte, &pfn);          \
			barrier();                                                             \
			if (ret) {                                                             \
				done = ret;                                                    \
				break;                                                         \
			}                                                                      \
			(kept)[(nkept)++] = pfn;                                               \
			if ((req)->storm)                                                      \
				storm(mm, done * (req)->storm, (req)->storm);                  \
			done++;                                                                \
		}                                                                              \
		mmap_read_unlock(mm);                                                          \
		done;                                                                          \
	})

/* Holder with a declared release (tests/vm/policy.toml): keeps raw PFNs in the file. */
noinline long pfnaudit_pin_tracked(struct pfnaudit_file *pf, struct pfnaudit_req *req)
{
	long done;

	mutex_lock(&pf->lock);
	done = LOOKUP_PAGES(req, pf->tracked, pf->ntracked);
	mutex_unlock(&pf->lock);
	return done;
}
EXPORT_SYMBOL_GPL(pfnaudit_pin_tracked);

/* The release function the policy names: forgets @pfn (0: all) of this file. */
noinline long pfnaudit_unpin_tracked(struct pfnaudit_file *pf, unsigned long pfn)
{
	unsigned int i, kept = 0;
	long released;

	mutex_lock(&pf->lock);
	for (i = 0; i < pf->ntracked; i++)
		if (pfn && pf->tracked[i] != pfn)
			pf->tracked[kept++] = pf->tracked[i];
	released = pf->ntracked - kept;
	pf->ntracked = kept;
	mutex_unlock(&pf->lock);
	return released;
}
EXPORT_SYMBOL_GPL(pfnaudit_unpin_tracked);

/* Holder WITHOUT a release function: the PFNs are kept until the file is closed. */
noinline long pfnaudit_lookup_untracked(struct pfnaudit_file *pf, struct pfnaudit_req *req)
{
	long done;

	mutex_lock(&pf->lock);
	done = LOOKUP_PAGES(req, pf->untracked, pf->nuntracked);
	mutex_unlock(&pf->lock);
	return done;
}
EXPORT_SYMBOL_GPL(pfnaudit_lookup_untracked);

static long pfnaudit_pin_frames(struct pfnaudit_file *pf, struct pfnaudit_req *req)
{
	struct frame_vector *vec;
	int ret;

	if (pf->vec)
		return -EBUSY;
	vec = frame_vector_create(req->npages);
	if (!vec)
		return -ENOMEM;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
	ret = get_vaddr_frames(req->addr, req->npages, true, vec);
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(5, 12, 0)
	ret = get_vaddr_frames(req->addr, req->npages, vec);
#else
	ret = get_vaddr_frames(req->addr, req->npages, FOLL_WRITE, vec);
#endif
	if (ret <= 0) {
		frame_vector_destroy(vec);
		return ret ? ret : -EFAULT;
	}
	pf->vec = vec;
	return ret;
}

static void pfnaudit_unpin_frames(struct pfnaudit_file *pf)
{
	if (pf->vec) {
		put_vaddr_frames(pf->vec);
		frame_vector_destroy(pf->vec);
		pf->vec = NULL;
	}
}

static long pfnaudit_zap(struct pfnaudit_req *req)
{
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *vma;
	long ret = -EFAULT;

	mmap_read_lock(mm);
	vma = find_vma(mm, req->addr);
	if (vma && vma->vm_start <= req->addr && (vma->vm_flags & VM_PFNMAP)) {
#if LINUX_VERSION_CODE >= KERNEL_VERSION(7, 1, 0)
		zap_special_vma_range(vma, req->addr, req->npages * PAGE_SIZE);
#else
		zap_vma_ptes(vma, req->addr, req->npages * PAGE_SIZE);
#endif
		ret = req->npages;
	}
	mmap_read_unlock(mm);
	return ret;
}

static long pfnaudit_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct pfnaudit_file *pf = file->private_data;
	struct pfnaudit_req req;
	long ret;

	if (copy_from_user(&req, (void __user *)arg, sizeof(req)))
		return -EFAULT;
	if (req.npages > PFNAUDIT_MAX_PAGES)
		return -EINVAL;
	switch (cmd) {
	case PFNAUDIT_PIN_TRACKED:
		ret = pfnaudit_pin_tracked(pf, &req);
		break;
	case PFNAUDIT_UNPIN_TRACKED:
		ret = pfnaudit_unpin_tracked(pf, 0);
		break;
	case PFNAUDIT_LOOKUP_UNTRACKED:
		ret = pfnaudit_lookup_untracked(pf, &req);
		break;
	case PFNAUDIT_PIN_FRAMES:
		ret = pfnaudit_pin_frames(pf, &req);
		break;
	case PFNAUDIT_UNPIN_FRAMES:
		pfnaudit_unpin_frames(pf);
		ret = 0;
		break;
	case PFNAUDIT_REVOKE:
		unmap_mapping_range(file->f_mapping, 0, 0, 1);
		ret = 0;
		break;
	case PFNAUDIT_ZAP:
		ret = pfnaudit_zap(&req);
		break;
	default:
		return -ENOTTY;
	}
	req.result = ret;
	if (copy_to_user((void __user *)arg, &req, sizeof(req)))
		return -EFAULT;
	return ret < 0 ? ret : 0;
}

static int pfnaudit_open(struct inode *inode, struct file *file)
{
	struct pfnaudit_file *pf = kzalloc(sizeof(*pf), GFP_KERNEL);

	if (!pf)
		return -ENOMEM;
	mutex_init(&pf->lock);
	file->private_data = pf;
	return 0;
}

static int pfnaudit_release(struct inode *inode, struct file *file)
{
	struct pfnaudit_file *pf = file->private_data;

	/* A driver that cleans up only at close: after the address space is already gone. */
	pfnaudit_unpin_tracked(pf, 0);
	pfnaudit_unpin_frames(pf);
	kfree(pf);
	return 0;
}

static const struct file_operations pfnaudit_fops = {
	.owner = THIS_MODULE,
	.open = pfnaudit_open,
	.release = pfnaudit_release,
	.mmap = pfnaudit_mmap,
	.unlocked_ioctl = pfnaudit_ioctl,
};

static struct miscdevice pfnaudit_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "pfnaudit",
	.fops = &pfnaudit_fops,
	.mode = 0666,
};

module_misc_device(pfnaudit_dev);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Misbehaving PFN-map driver for pfn-auditor tests");
