/*
 * A test double for the kernel's /dev/udmabuf, loaded with LD_PRELOAD into a process that
 * runs libcamera's virtual camera on a machine whose kernel has no dma-buf provider (no
 * CONFIG_UDMABUF, no CONFIG_DMABUF_HEAPS: this CI machine). libcamera allocates its frame
 * buffers through one (DmaBufAllocator: /dev/dma_heap/{linux,cma, system}, else
 * /dev/udmabuf); on a Raspberry Pi 5 the PiSP pipeline handler allocates from the kernel's
 * /dev/dma_heap, and nothing of this file is involved.
 *
 * What it stands in for (include/uapi/linux/udmabuf.h, drivers/dma-buf/udmabuf.c):
 *   - open("/dev/udmabuf") returns a placeholder descriptor (of /dev/null);
 *   - ioctl(placeholder, UDMABUF_CREATE, {memfd, flags, offset 0, size}) returns a new
 *     descriptor of the same memfd (CLOEXEC with UDMABUF_FLAGS_CLOEXEC): mapping it maps
 *     the memfd's pages, as mapping the real dma-buf would; other offsets are refused
 *     (EINVAL), which libcamera never asks for;
 *   - DMA_BUF_IOCTL_SYNC and DMA_BUF_SET_NAME on any descriptor succeed: CPU access to
 *     plain shared memory needs no cache maintenance, and the name is only for debugging.
 * Everything else goes to the C library unchanged.
 *
 * Build: cc -shared -fPIC -O2 -o udmabuf_double.so udmabuf_double.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* The kernel's UAPI, spelled out: this machine's headers may lack <linux/udmabuf.h>. */
struct udmabuf_create {
	uint32_t memfd;
	uint32_t flags;
	uint64_t offset;
	uint64_t size;
};
#define UDMABUF_FLAGS_CLOEXEC 0x01
#define UDMABUF_CREATE _IOW('u', 0x42, struct udmabuf_create)
/* include/uapi/linux/dma-buf.h */
struct dma_buf_sync {
	uint64_t flags;
};
#define DMA_BUF_BASE 'b'
#define DMA_BUF_IOCTL_SYNC _IOW(DMA_BUF_BASE, 0, struct dma_buf_sync)
#define DMA_BUF_SET_NAME_A _IOW(DMA_BUF_BASE, 1, uint32_t)
#define DMA_BUF_SET_NAME_B _IOW(DMA_BUF_BASE, 1, uint64_t)

static const char UDMABUF[] = "/dev/udmabuf";
/* The placeholder descriptors handed out for /dev/udmabuf (-1: none yet). One is enough
 * for libcamera (one allocator per process); a second open gets a second placeholder. */
#define MAX_PLACEHOLDERS 8
static int placeholders[MAX_PLACEHOLDERS] = {-1, -1, -1, -1, -1, -1, -1, -1};

static int is_placeholder(int fd)
{
	for (int i = 0; i < MAX_PLACEHOLDERS; i++)
		if (placeholders[i] == fd)
			return 1;
	return 0;
}

static int open_placeholder(int flags)
{
	int (*real_open)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
	int fd = real_open("/dev/null", O_RDWR | (flags & O_CLOEXEC));
	if (fd < 0)
		return fd;
	for (int i = 0; i < MAX_PLACEHOLDERS; i++) {
		if (__atomic_compare_exchange_n(&placeholders[i], &(int){-1}, fd, 0,
						__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			return fd;
	}
	close(fd);
	errno = EMFILE;
	return -1;
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	if (strcmp(path, UDMABUF) == 0)
		return open_placeholder(flags);
	int (*real)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
	return real(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	if (strcmp(path, UDMABUF) == 0)
		return open_placeholder(flags);
	int (*real)(const char *, int, ...) = dlsym(RTLD_NEXT, "open64");
	return real(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	if (strcmp(path, UDMABUF) == 0)
		return open_placeholder(flags);
	int (*real)(int, const char *, int, ...) = dlsym(RTLD_NEXT, "openat");
	return real(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	if (strcmp(path, UDMABUF) == 0)
		return open_placeholder(flags);
	int (*real)(int, const char *, int, ...) = dlsym(RTLD_NEXT, "openat64");
	return real(dirfd, path, flags, mode);
}

int close(int fd)
{
	for (int i = 0; i < MAX_PLACEHOLDERS; i++)
		__atomic_compare_exchange_n(&placeholders[i], &(int){fd}, -1, 0,
					    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	int (*real)(int) = dlsym(RTLD_NEXT, "close");
	return real(fd);
}

/* glibc declares ioctl(int, unsigned long, ...); the third argument is a pointer for
 * every request handled here. */
int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (request == UDMABUF_CREATE && is_placeholder(fd)) {
		const struct udmabuf_create *c = arg;
		if (!c || c->offset != 0 || c->size == 0) {
			errno = EINVAL;
			return -1;
		}
		int cloexec = (c->flags & UDMABUF_FLAGS_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD;
		return fcntl((int)c->memfd, cloexec, 0);
	}
	if (request == DMA_BUF_IOCTL_SYNC || request == DMA_BUF_SET_NAME_A ||
	    request == DMA_BUF_SET_NAME_B)
		return 0;
	int (*real)(int, unsigned long, ...) = dlsym(RTLD_NEXT, "ioctl");
	return real(fd, request, arg);
}
