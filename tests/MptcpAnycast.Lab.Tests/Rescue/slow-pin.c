// slow-pin.so, preloaded into a rescue agent (LD_PRELOAD): each rename(2) onto a pin of a rescue program
// (rescue_ingress_NAME, rescue_egress_NAME) waits SLOW_PIN_MS milliseconds first. The agent renames its program pins
// right after it has swapped its programs onto the hooks and before its start is done, so this widens that moment from
// microseconds to a time in which a moved flow surely sends segments. Each held rename is written to stderr, so a test
// can tell the wait happened. Built by the lab tests with gcc.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int rename(const char *from, const char *to)
{
	static int (*real_rename)(const char *, const char *);
	if (!real_rename) {
		real_rename = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
		if (!real_rename) {
			errno = ENOSYS;
			return -1;
		}
	}

	const char *name = strrchr(to, '/');
	name = name ? name + 1 : to;
	const char *setting = getenv("SLOW_PIN_MS");
	long ms = setting ? strtol(setting, NULL, 10) : 0;
	if (ms > 0 && ms <= 10000 && (strncmp(name, "rescue_ingress_", 15) == 0 || strncmp(name, "rescue_egress_", 14) == 0)) {
		struct timespec wait = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
		while (nanosleep(&wait, &wait) != 0 && errno == EINTR) {
		}
		fprintf(stderr, "slow-pin: held the rename onto %s for %ld ms\n", name, ms);
	}

	return real_rename(from, to);
}
