/*
 * Measures one freeze -> clone -> thaw cycle, two ways, for bench-freeze.sh.
 *
 *   freeze_floor floor MNT IMG [MNT IMG]...
 *       The raw floor: syncfs every volume, FIFREEZE them all, FICLONE each
 *       backing image on the pool, FITHAW them all. Nothing else.
 *   freeze_floor api SOCKET MNT IMG [MNT IMG]...
 *       The same cut through a running stasis-agent: POST /v1/freeze over
 *       its Unix socket (the agent syncs and freezes), FICLONE each image,
 *       POST /v1/thaw.
 *
 * Prints one line: "total_ms window_ms". total is what the caller sees, from
 * the start of the cycle to the end of the thaw; window is first FIFREEZE to
 * last FITHAW (floor: measured here; api: as reported by the agent).
 * Built by the bench script with cc; not part of the product.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAXV 64

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* One HTTP request over the agent's socket; returns the status, body in out. */
static int call(const char *sock, const char *method, const char *path, const char *body, char *out,
                size_t cap)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char req[512];
	size_t got = 0;
	ssize_t n;
	int fd, status = 0;
	char *p;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s",
	             method, path, strlen(body), body);
	if (write(fd, req, (size_t)n) != n)
		die("write");
	while (got + 1 < cap && (n = read(fd, out + got, cap - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(fd);
	sscanf(out, "HTTP/1.%*d %d", &status);
	p = strstr(out, "\r\n\r\n");
	if (p != NULL)
		memmove(out, p + 4, strlen(p + 4) + 1);
	return status;
}

int main(int argc, char **argv)
{
	int dirs[MAXV], src[MAXV], dst[MAXV], nv = 0, first;
	char clone[MAXV][4200], resp[8192];
	const char *sock = NULL;
	double t0, t1 = 0, t2, window;
	int api;

	if (argc < 4)
		return 2;
	api = strcmp(argv[1], "api") == 0;
	first = api ? 3 : 2;
	if (api)
		sock = argv[2];
	for (int i = first; i + 1 < argc && nv < MAXV; i += 2, nv++) {
		dirs[nv] = open(argv[i], O_RDONLY | O_DIRECTORY);
		src[nv] = open(argv[i + 1], O_RDONLY);
		snprintf(clone[nv], sizeof(clone[nv]), "%s.bench-clone", argv[i + 1]);
		unlink(clone[nv]);
		dst[nv] = open(clone[nv], O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (dirs[nv] < 0 || src[nv] < 0 || dst[nv] < 0)
			die(argv[i]);
	}
	t0 = now_ms();
	if (api) {
		if (call(sock, "POST", "/v1/freeze", "{\"deadlineSeconds\":60}", resp,
		         sizeof(resp)) != 200) {
			fprintf(stderr, "freeze: %s\n", resp);
			return 1;
		}
	} else {
		for (int i = 0; i < nv; i++)
			if (syncfs(dirs[i]) < 0)
				die("syncfs");
		t1 = now_ms();
		for (int i = 0; i < nv; i++)
			if (ioctl(dirs[i], FIFREEZE, 0) < 0)
				die("FIFREEZE");
	}
	for (int i = 0; i < nv; i++)
		if (ioctl(dst[i], FICLONE, src[i]) < 0)
			die("FICLONE");
	if (api) {
		if (call(sock, "POST", "/v1/thaw", "{}", resp, sizeof(resp)) != 200) {
			fprintf(stderr, "thaw: %s\n", resp);
			return 1;
		}
		t2 = now_ms();
		window = strstr(resp, "\"windowMs\":") != NULL
		                 ? strtod(strstr(resp, "\"windowMs\":") + 11, NULL)
		                 : -1;
	} else {
		for (int i = 0; i < nv; i++)
			if (ioctl(dirs[i], FITHAW, 0) < 0)
				die("FITHAW");
		t2 = now_ms();
		window = t2 - t1;
	}
	printf("%.3f %.3f\n", t2 - t0, window);
	for (int i = 0; i < nv; i++) {
		close(dst[i]);
		unlink(clone[i]);
	}
	return 0;
}
