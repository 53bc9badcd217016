#include "pkg/dirbackup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "pkg/chunker.h"
#include "pkg/tree.h"
#include "pkg/util/buf.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

#define XATTR_LIST_MAX_ (64u * 1024u)
#define XATTR_VAL_MAX   (64u * 1024u)
#define TREE_CAP        (2u * ST_CHUNK_MAX + ST_TREE_RECORD_MAX + 64u)
/*
 * Where the id of triple i sits in a CHUNKS record (pkg/tree.c): record
 * length (4), type (1), count (4), then per triple offset (8), length (4), id.
 */
#define TREE_ID_AT(i) (9u + (size_t)(i) * (12u + ST_TREE_ID_LEN) + 12u)

/* A manifest id still to fill in: the chunk's id comes from a writer worker. */
struct fixup {
	size_t at; /* byte offset in the manifest buffer */
	uint64_t ticket;
};

struct link_ent {
	dev_t dev;
	ino_t ino;
	char *path;
};

struct bk {
	struct st_repo *r;
	struct st_repo_writer *w;
	struct st_repo_lock *lock;
	const struct st_chunker *ch;
	const struct st_dirbackup_options *o;
	struct st_err *err;
	char root[ST_TREE_PATH_MAX + 1];
	struct st_buf tree; /* manifest bytes not yet cut into chunks */
	uint8_t (*tree_ids)[ST_REPO_ID_LEN];
	size_t ntree;
	struct st_repo_seg *seg; /* file data: [head, seg_len) is read but not yet chunked */
	size_t head;
	size_t seg_len;
	struct st_tree_chunk group[ST_TREE_CHUNKS_PER_RECORD];
	uint64_t tickets[ST_TREE_CHUNKS_PER_RECORD];
	size_t ngroup;
	struct fixup *fix;
	size_t nfix;
	size_t fix_cap;
	struct link_ent *links;
	size_t nlinks;
	size_t links_cap;
	struct st_dir_progress prog;
	struct timespec last_prog;
	uint8_t *xbuf; /* xattr names and values of the current entry */
};

static int add_chunk(struct bk *b, uint8_t id[ST_REPO_ID_LEN], const uint8_t *p, size_t n)
{
	st_repo_chunk_id(id, b->r, p, n);
	return st_repo_writer_add(b->w, id, p, n, b->err);
}

/* Waits for the workers, then writes the ids they computed into the manifest. */
static int resolve_ids(struct bk *b)
{
	int rc;

	if (b->nfix == 0)
		return 0;
	if ((rc = st_repo_writer_drain(b->w, b->err)) < 0)
		return rc;
	for (size_t i = 0; i < b->nfix; i++)
		st_repo_writer_ticket_id((uint8_t *)b->tree.ptr + b->fix[i].at, b->w,
		                         b->fix[i].ticket);
	b->nfix = 0;
	return 0;
}

/*
 * Cuts complete chunks off the manifest buffer; at the end, everything left.
 * The ids in it must be known first, so this is the only place where the
 * walk waits for the workers (once per ~4 MiB of manifest).
 */
static int tree_flush(struct bk *b, bool final)
{
	int rc;

	if (b->tree.len > 0 && (final || b->tree.len >= ST_CHUNK_MAX) && (rc = resolve_ids(b)) < 0)
		return rc;
	while (b->tree.len > 0 && (final || b->tree.len >= ST_CHUNK_MAX)) {
		size_t n = st_chunker_cut(b->ch, (const uint8_t *)b->tree.ptr, b->tree.len);

		b->tree_ids = st_xrealloc(b->tree_ids, (b->ntree + 1) * ST_REPO_ID_LEN);
		if ((rc = add_chunk(b, b->tree_ids[b->ntree], (const uint8_t *)b->tree.ptr, n)) < 0)
			return rc;
		b->ntree++;
		memmove(b->tree.ptr, b->tree.ptr + n, b->tree.len - n);
		b->tree.len -= n;
	}
	return 0;
}

static int flush_group(struct bk *b)
{
	size_t at = b->tree.len;
	int rc;

	if (b->ngroup == 0)
		return 0;
	if ((rc = st_tree_put_chunks(&b->tree, b->group, b->ngroup)) < 0)
		return st_err_set(b->err, rc, "manifest record too large");
	if (b->nfix + b->ngroup > b->fix_cap) {
		b->fix_cap = (b->nfix + b->ngroup) * 2;
		b->fix = st_xrealloc(b->fix, b->fix_cap * sizeof(*b->fix));
	}
	for (size_t i = 0; i < b->ngroup; i++)
		b->fix[b->nfix++] = (struct fixup){ at + TREE_ID_AT(i), b->tickets[i] };
	b->ngroup = 0;
	return tree_flush(b, false);
}

static void progress(struct bk *b, bool force)
{
	struct timespec now;
	struct st_repo_writer_stats ws;

	if (b->o->progress == NULL)
		return;
	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	if (!force && (now.tv_sec - b->last_prog.tv_sec) * 1000 +
	                              (now.tv_nsec - b->last_prog.tv_nsec) / 1000000 <
	                      100)
		return;
	b->last_prog = now;
	st_repo_writer_get_stats(&ws, b->w);
	b->prog.bytes_new = ws.bytes_new;
	b->o->progress(&b->prog, b->o->payload);
}

/*
 * Makes room for the rest of an extent after b->head: when the current
 * segment cannot hold min(max chunk, what is left) past head, the unchunked
 * tail moves to a fresh segment (the old one returns to the pool once its
 * chunks are done).
 */
static int seg_room(struct bk *b, uint64_t left)
{
	struct st_repo_seg *s = NULL;
	size_t have = b->seg_len - b->head;
	uint64_t want = have + left < ST_CHUNK_MAX ? have + left : ST_CHUNK_MAX;
	int rc;

	if (b->seg != NULL && ST_REPO_SEG_SIZE - b->head >= want)
		return 0;
	if ((rc = st_repo_writer_seg_take(&s, b->w, b->err)) < 0)
		return rc;
	if (have > 0)
		memcpy(st_repo_seg_data(s), st_repo_seg_data(b->seg) + b->head, have);
	st_repo_writer_seg_release(b->w, b->seg);
	b->seg = s;
	b->head = 0;
	b->seg_len = have;
	return 0;
}

/* Reads as much of [*pos, *end) as fits in the segment. A short file ends the extent. */
static int seg_fill(struct bk *b, int fd, uint64_t *pos, uint64_t *end, const char *rel)
{
	uint8_t *p = st_repo_seg_data(b->seg);

	while (b->seg_len < ST_REPO_SEG_SIZE && *pos < *end) {
		size_t want = ST_REPO_SEG_SIZE - b->seg_len;
		ssize_t n;

		if (want > *end - *pos)
			want = (size_t)(*end - *pos);
		n = pread(fd, p + b->seg_len, want, (off_t)*pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return st_err_set(b->err, ST_EIO, "read '%s': %s", rel, strerror(errno));
		if (n == 0) {
			*end = *pos; /* the file shrank while we read it */
			break;
		}
		b->seg_len += (size_t)n;
		*pos += (uint64_t)n;
	}
	return 0;
}

/* Length of the first chunk of the have bytes at b->head (0 when there are none). */
static size_t first_cut(const struct bk *b, size_t have)
{
	return have > 0 ? st_chunker_cut(b->ch, st_repo_seg_data(b->seg) + b->head, have) : 0;
}

/*
 * Chunks file bytes [start, end) of fd. Data is read in large pieces into
 * pooled segments (small files share one); the cuts are made here, in file
 * order, and the workers hash and store the chunks.
 */
static int chunk_extent(struct bk *b, int fd, uint64_t start, uint64_t end, const char *rel)
{
	uint64_t pos = start;  /* next byte to read */
	uint64_t coff = start; /* file offset of the byte at b->head */
	int rc;

	b->head = b->seg_len;
	for (;;) {
		size_t have = b->seg_len - b->head;
		size_t n = first_cut(b, have);
		struct st_tree_chunk *c;

		/*
		 * With more of the file to come, a cut before the end of what is
		 * here is the cut a full window gives too, so it is taken now. A
		 * cut only at the end needs more data: then just the tail after the
		 * last cut moves to a fresh segment, not a whole maximum-size chunk.
		 */
		if (n == have && have < ST_CHUNK_MAX && pos < end) {
			if ((rc = seg_room(b, end - pos)) < 0 ||
			    (rc = seg_fill(b, fd, &pos, &end, rel)) < 0)
				return rc;
			have = b->seg_len - b->head;
			n = first_cut(b, have);
		}
		if (have == 0)
			return 0;
		c = &b->group[b->ngroup];
		c->off = coff;
		c->len = (uint32_t)n;
		memset(c->id, 0, sizeof(c->id)); /* filled in by resolve_ids */
		if ((rc = st_repo_writer_add_seg(&b->tickets[b->ngroup], b->w, b->seg, b->head, n,
		                                 b->err)) < 0)
			return rc;
		b->head += n;
		coff += n;
		b->prog.bytes += n;
		if (++b->ngroup == ST_TREE_CHUNKS_PER_RECORD && (rc = flush_group(b)) < 0)
			return rc;
		progress(b, false);
	}
}

/* Stores the data regions of a regular file; holes are left out of the chunk list. */
static int backup_data(struct bk *b, const char *path, const char *rel, uint64_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOATIME);
	uint64_t pos = 0;
	int rc = 0;

	if (fd < 0 && errno == EPERM)
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return st_err_set(b->err, ST_EIO, "open '%s': %s", rel, strerror(errno));
	while (pos < size) {
		off_t data = lseek(fd, (off_t)pos, SEEK_DATA);
		off_t hole;

		if (data < 0 && errno == ENXIO)
			break; /* only a hole remains */
		if (data < 0) {
			data = (off_t)pos; /* no SEEK_DATA support: all data */
			hole = (off_t)size;
		} else {
			hole = lseek(fd, data, SEEK_HOLE);
			if (hole < 0 || (uint64_t)hole > size)
				hole = (off_t)size;
		}
		if ((uint64_t)data >= size)
			break;
		if ((rc = chunk_extent(b, fd, (uint64_t)data, (uint64_t)hole, rel)) < 0)
			break;
		pos = (uint64_t)hole;
	}
	(void)close(fd);
	if (rc == 0)
		rc = flush_group(b);
	return rc;
}

/* Reads the extended attributes of path into e (names and values live in b->xbuf). */
static int read_xattrs(struct bk *b, struct st_tree_entry *e, const char *path, const char *rel)
{
	char names[XATTR_LIST_MAX_];
	ssize_t n = llistxattr(path, names, sizeof(names));
	size_t used = 0;

	e->nxattr = 0;
	if (n < 0) {
		if (errno == ENOTSUP || errno == ENODATA)
			return 0;
		return st_err_set(b->err, ST_EIO, "listxattr '%s': %s", rel, strerror(errno));
	}
	for (ssize_t i = 0; i < n && e->nxattr < ST_TREE_XATTRS_MAX;) {
		const char *name = names + i;
		size_t nl = strlen(name);
		ssize_t vl;

		i += (ssize_t)nl + 1;
		if (used + nl + 1 + XATTR_VAL_MAX > ST_TREE_RECORD_MAX)
			return st_err_set(b->err, ST_ETOOBIG, "'%s': too many xattrs", rel);
		memcpy(b->xbuf + used, name, nl + 1);
		vl = lgetxattr(path, name, b->xbuf + used + nl + 1, XATTR_VAL_MAX);
		if (vl < 0) {
			if (errno == ENODATA)
				continue;
			return st_err_set(b->err, ST_EIO, "getxattr '%s' %s: %s", rel, name,
			                  strerror(errno));
		}
		e->xattrs[e->nxattr].name = (const char *)b->xbuf + used;
		e->xattrs[e->nxattr].value = b->xbuf + used + nl + 1;
		e->xattrs[e->nxattr].len = (uint32_t)vl;
		e->nxattr++;
		used += nl + 1 + (size_t)vl;
	}
	return 0;
}

static enum st_tree_type type_of(mode_t m)
{
	if (S_ISREG(m))
		return ST_TREE_FILE;
	if (S_ISDIR(m))
		return ST_TREE_DIR;
	if (S_ISLNK(m))
		return ST_TREE_SYMLINK;
	if (S_ISCHR(m))
		return ST_TREE_CHR;
	if (S_ISBLK(m))
		return ST_TREE_BLK;
	if (S_ISFIFO(m))
		return ST_TREE_FIFO;
	return ST_TREE_SOCK;
}

/* Returns the first path seen for a multiply-linked inode, or records this one. */
static const char *link_seen(struct bk *b, const struct stat *st, const char *rel)
{
	for (size_t i = 0; i < b->nlinks; i++)
		if (b->links[i].dev == st->st_dev && b->links[i].ino == st->st_ino)
			return b->links[i].path;
	if (b->nlinks == b->links_cap) {
		b->links_cap = b->links_cap ? b->links_cap * 2 : 64;
		b->links = st_xrealloc(b->links, b->links_cap * sizeof(*b->links));
	}
	b->links[b->nlinks++] = (struct link_ent){ st->st_dev, st->st_ino, st_xstrdup(rel) };
	return NULL;
}

static int walk_dir(struct bk *b, const char *path, const char *rel);

static int cmp_names(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

static int backup_one(struct bk *b, const char *path, const char *rel)
{
	struct st_tree_entry e;
	struct stat st;
	char target[ST_TREE_PATH_MAX + 1] = "";
	const char *first = NULL;
	int rc;

	memset(&e, 0, sizeof(e));
	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0; /* vanished during the walk */
		return st_err_set(b->err, ST_EIO, "stat '%s': %s", rel, strerror(errno));
	}
	e.type = type_of(st.st_mode);
	e.mode = st.st_mode;
	e.uid = st.st_uid;
	e.gid = st.st_gid;
	e.mtime_s = st.st_mtim.tv_sec;
	e.mtime_ns = (uint32_t)st.st_mtim.tv_nsec;
	e.atime_s = st.st_atim.tv_sec;
	e.atime_ns = (uint32_t)st.st_atim.tv_nsec;
	e.path = rel;
	e.target = "";
	if (e.type == ST_TREE_FILE)
		e.size = (uint64_t)st.st_size;
	if (e.type == ST_TREE_CHR || e.type == ST_TREE_BLK)
		e.rdev = (uint64_t)st.st_rdev;
	if (e.type == ST_TREE_SYMLINK) {
		ssize_t n = readlink(path, target, sizeof(target) - 1);

		if (n <= 0)
			return st_err_set(b->err, ST_EIO, "readlink '%s': %s", rel,
			                  strerror(errno));
		target[n] = '\0';
		e.target = target;
	}
	if (e.type == ST_TREE_FILE && st.st_nlink > 1 && (first = link_seen(b, &st, rel)) != NULL) {
		e.type = ST_TREE_HARDLINK;
		e.target = first;
		e.size = 0;
	} else if ((rc = read_xattrs(b, &e, path, rel)) < 0) {
		return rc;
	}
	if ((rc = st_tree_put_entry(&b->tree, &e)) < 0)
		return st_err_set(b->err, rc, "'%s': cannot be recorded (name or xattrs too long)",
		                  rel);
	if ((rc = tree_flush(b, false)) < 0)
		return rc;
	if (e.type != ST_TREE_DIR)
		b->prog.files++;
	if (e.type == ST_TREE_FILE && e.size > 0)
		return backup_data(b, path, rel, e.size);
	if (e.type == ST_TREE_DIR)
		return walk_dir(b, path, rel);
	return 0;
}

/* Lists the names in a directory, sorted bytewise. */
static int list_dir(char ***out, size_t *n_out, const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	char **v = NULL;
	size_t n = 0;

	*out = NULL;
	*n_out = 0;
	if (d == NULL)
		return -1;
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		v = st_xrealloc(v, (n + 1) * sizeof(*v));
		v[n++] = st_xstrdup(de->d_name);
	}
	(void)closedir(d);
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_names);
	*out = v;
	*n_out = n;
	return 0;
}

static int walk_dir(struct bk *b, const char *path, const char *rel)
{
	char **names = NULL;
	size_t n = 0;
	struct st_buf cp = ST_BUF_INIT(ST_TREE_PATH_MAX * 2);
	struct st_buf cr = ST_BUF_INIT(ST_TREE_PATH_MAX);
	int rc = 0;

	if (list_dir(&names, &n, path) < 0)
		return st_err_set(b->err, ST_EIO, "read directory '%s': %s", rel, strerror(errno));
	for (size_t i = 0; i < n && rc == 0; i++) {
		st_buf_clear(&cp);
		st_buf_clear(&cr);
		if (st_buf_printf(&cp, "%s/%s", path, names[i]) < 0 ||
		    (strcmp(rel, ".") == 0 ? st_buf_puts(&cr, names[i])
		                           : st_buf_printf(&cr, "%s/%s", rel, names[i])) < 0) {
			rc = st_err_set(b->err, ST_ETOOBIG, "path too long under '%s'", rel);
			break;
		}
		rc = backup_one(b, st_buf_cstr(&cp), st_buf_cstr(&cr));
		if (rc == 0)
			rc = st_repo_lock_refresh(b->lock, b->err);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	st_buf_dispose(&cp);
	st_buf_dispose(&cr);
	return rc;
}

/* Totals for the progress ETA: a metadata-only walk. */
static void count_tree(struct st_dir_progress *p, const char *path)
{
	char **names = NULL;
	size_t n = 0;
	struct stat st;

	if (lstat(path, &st) != 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		p->total_files++;
		if (S_ISREG(st.st_mode))
			p->total_bytes += (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size
			                          ? (uint64_t)st.st_blocks * 512
			                          : (uint64_t)st.st_size;
		return;
	}
	if (list_dir(&names, &n, path) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		char child[2 * ST_TREE_PATH_MAX + 2];

		(void)snprintf(child, sizeof(child), "%s/%s", path, names[i]);
		count_tree(p, child);
		free(names[i]);
	}
	free(names);
}

static void bk_dispose(struct bk *b)
{
	if (b->w != NULL)
		st_repo_writer_seg_release(b->w, b->seg);
	st_repo_writer_free(b->w);
	st_repo_unlock(b->lock);
	st_buf_dispose(&b->tree);
	free(b->tree_ids);
	free(b->fix);
	free(b->xbuf);
	for (size_t i = 0; i < b->nlinks; i++)
		free(b->links[i].path);
	free(b->links);
}

int st_dirbackup_run(struct st_repo_snapshot *out, struct st_repo *r, const char *dir,
                     const struct st_dirbackup_options *o, struct st_err *err)
{
	static const struct st_dirbackup_options dflt = ST_DIRBACKUP_OPTIONS_INIT;
	struct bk b;
	struct st_repo_writer_stats ws;
	struct stat st;
	char host[256] = "";
	struct timespec now;
	unsigned recovered = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	memset(&b, 0, sizeof(b));
	o = o != NULL ? o : &dflt;
	b.r = r;
	b.o = o;
	b.err = err;
	b.ch = st_repo_chunker(r);
	st_buf_init(&b.tree, TREE_CAP);
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		rc = st_err_set(err, ST_EINVAL, "'%s' is not a directory", dir);
		goto out;
	}
	if (o->count_first)
		count_tree(&b.prog, dir);
	if ((rc = st_repo_lock(&b.lock, r, ST_REPO_LOCK_BACKUP, err)) < 0)
		goto out;
	/* Packs a killed backup left behind are reused instead of uploaded again. */
	if ((rc = st_repo_recover_packs(r, &recovered, err)) < 0)
		goto out;
	if (recovered > 0)
		st_log_info("backup: reusing %u pack(s) left by an interrupted backup", recovered);
	if ((rc = st_repo_writer_new(&b.w, r, o->jobs, err)) < 0)
		goto out;
	b.xbuf = st_xmalloc(ST_TREE_RECORD_MAX);
	if ((rc = backup_one(&b, dir, ".")) < 0 || (rc = tree_flush(&b, true)) < 0)
		goto out;
	/* Packs and the index are durable before the snapshot that names them is written. */
	if ((rc = st_repo_writer_finish(b.w, err)) < 0)
		goto out;
	st_repo_writer_get_stats(&ws, b.w);
	(void)gethostname(host, sizeof(host) - 1);
	(void)clock_gettime(CLOCK_REALTIME, &now);
	out->time = (int64_t)now.tv_sec;
	out->time_ns = (int32_t)now.tv_nsec;
	(void)snprintf(out->host, sizeof(out->host), "%s", host);
	(void)snprintf(out->tag, sizeof(out->tag), "%s", o->tag != NULL ? o->tag : "");
	(void)snprintf(out->path, sizeof(out->path), "%s", o->label != NULL ? o->label : dir);
	out->files = b.prog.files;
	out->bytes = b.prog.bytes;
	out->bytes_new = ws.bytes_new;
	out->bytes_stored = ws.bytes_stored;
	out->tree = b.tree_ids;
	out->ntree = b.ntree;
	b.tree_ids = NULL; /* transferred */
	if ((rc = st_repo_snapshot_save(r, out, err)) < 0)
		goto out;
	b.prog.done = true;
	progress(&b, true);
	rc = 0;
out:
	if (rc < 0)
		st_repo_snapshot_dispose(out);
	bk_dispose(&b);
	return rc;
}
