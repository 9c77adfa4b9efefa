/* SPDX-License-Identifier: GPL-2.0 */
/* ioctl interface of the pfnaudit_test module, shared with pfnaudit-scenario. */
#ifndef PFNAUDIT_UAPI_H
#define PFNAUDIT_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Pages of one mapping of /dev/pfnaudit (and of one request). */
#define PFNAUDIT_MAX_PAGES 64

struct pfnaudit_req {
	__u64 addr;		/* user address (page aligned) */
	__u64 npages;		/* pages from addr */
	__u32 use_follow_pte;	/* PIN_TRACKED: look up with follow_pte() (5.10..6.11) */
	__u32 storm;		/* PIN_TRACKED: after each page, this many lookups of ordinary
				 * memory (never pins), each from a kernel stack of its own */
	__s64 result;		/* out: pages handled, or -errno */
};

#define PFNAUDIT_MAGIC 'P'
/* Raw lookups kept in the file (the bug): released only by UNPIN_TRACKED / close. */
#define PFNAUDIT_PIN_TRACKED		_IOWR(PFNAUDIT_MAGIC, 1, struct pfnaudit_req)
#define PFNAUDIT_UNPIN_TRACKED		_IOWR(PFNAUDIT_MAGIC, 2, struct pfnaudit_req)
/* Raw lookups kept with no release function at all. */
#define PFNAUDIT_LOOKUP_UNTRACKED	_IOWR(PFNAUDIT_MAGIC, 3, struct pfnaudit_req)
/* get_vaddr_frames() / put_vaddr_frames(). */
#define PFNAUDIT_PIN_FRAMES		_IOWR(PFNAUDIT_MAGIC, 4, struct pfnaudit_req)
#define PFNAUDIT_UNPIN_FRAMES		_IOWR(PFNAUDIT_MAGIC, 5, struct pfnaudit_req)
/* unmap_mapping_range() of the whole device file: the owner claims the region back. */
#define PFNAUDIT_REVOKE			_IOWR(PFNAUDIT_MAGIC, 6, struct pfnaudit_req)
/* zap_vma_ptes() of [addr, addr + npages pages). */
#define PFNAUDIT_ZAP			_IOWR(PFNAUDIT_MAGIC, 7, struct pfnaudit_req)

#endif
