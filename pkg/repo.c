#include "pkg/repo.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <zstd.h>

#include "pkg/chunker.h"
#include "pkg/tree.h"
#include "pkg/util/buf.h"
#include "pkg/util/json.h"
#include "pkg/util/log.h"
#include "pkg/util/mem.h"

#define NONCE_LEN   12
#define TAG_LEN     16
#define SEAL_EXTRA  (NONCE_LEN + TAG_LEN)
#define BLOB_MIN    (SEAL_EXTRA + 1)
#define FLAG_RAW    0
#define FLAG_ZSTD   1
#define ZSTD_LEVEL  3
#define SAMPLE_LEN  (64u * 1024u)
#define PACK_MAGIC  "STPACK01"
#define PACK_FOOT   "STPKEND1"
#define IDX_MAGIC   "STIX"
#define PIDX_MAGIC  "STPI"
#define ENTRY_BYTES (ST_REPO_ID_LEN + 12)
#define PENDING     UINT32_MAX
#define CONFIG_MAX  (64u * 1024u)
#define LOCK_MAX    (64u * 1024u)
#define QUEUE_BYTES (4u * 1024u * 1024u)
#define QUEUE_SLOTS 256
#define SCRYPT_N    16384
#define SCRYPT_R    8
#define SCRYPT_P    1
#define MASTER_LEN  64
#define FORMAT_VER  1

struct ient {
	uint8_t id[ST_REPO_ID_LEN];
	uint32_t pack; /* index into r->packs, PENDING while queued in a writer */
	uint32_t off;
	uint32_t len;
	uint32_t rawlen;
	uint8_t used;
};

struct ipack {
	uint8_t id[ST_REPO_ID_LEN];
	bool fresh; /* not yet named by an index object */
	bool stored;
};

struct st_repo {
	struct st_store *store;
	uint8_t enc_key[32];
	uint8_t mac_key[32];
	struct st_chunker chunker;
	pthread_mutex_t mu; /* guards the index below */
	struct ient *tab;
	size_t tab_cap; /* power of two */
	size_t tab_n;
	struct ipack *packs;
	size_t npacks;
	size_t packs_cap;
	char **index_keys; /* index objects loaded, for gc */
	size_t nindex;
};

/* ---------- small helpers ---------- */

#define le_put st_tree_le_put
#define le_get st_tree_le_get

void st_repo_hex(char *out, const uint8_t *id, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[id[i] >> 4];
		out[2 * i + 1] = digits[id[i] & 15];
	}
	out[2 * n] = '\0';
}

static int unhex(uint8_t *out, size_t n, const char *s)
{
	if (s == NULL || strlen(s) != 2 * n)
		return ST_EINVAL;
	for (size_t i = 0; i < 2 * n; i++) {
		int c = s[i];
		int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

		if (v < 0)
			return ST_EINVAL;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(v << 4);
		else
			out[i / 2] |= (uint8_t)v;
	}
	return 0;
}

static int random_bytes(uint8_t *p, size_t n)
{
	return RAND_bytes(p, (int)n) == 1 ? 0 : ST_EINTERNAL;
}

/*
 * Chunk copies and pack buffers come straight from mmap so that their memory
 * goes back to the system when freed. They are freed by other threads than
 * the ones that allocated them, and glibc's per-thread arenas (and its
 * growing mmap threshold) would otherwise keep that memory resident.
 */
#define BIG_MIN (128u * 1024u)

static void *big_alloc(size_t n)
{
	void *p;

	if (n < BIG_MIN)
		return st_xmalloc(n);
	p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		st_log_err("out of memory mapping %zu bytes", n);
		abort();
	}
	return p;
}

static void big_free(void *p, size_t n)
{
	if (p == NULL)
		return;
	if (n < BIG_MIN)
		free(p);
	else
		(void)munmap(p, n);
}

static void *big_grow(void *p, size_t old, size_t n)
{
	void *q;

	if (old < BIG_MIN || n < BIG_MIN) {
		q = big_alloc(n);
		memcpy(q, p, old < n ? old : n);
		big_free(p, old);
		return q;
	}
	q = mremap(p, old, n, MREMAP_MAYMOVE);
	if (q == MAP_FAILED) {
		st_log_err("out of memory remapping %zu bytes", n);
		abort();
	}
	return q;
}

struct st_store *st_repo_store(const struct st_repo *r)
{
	return r->store;
}

const struct st_chunker *st_repo_chunker(const struct st_repo *r)
{
	return &r->chunker;
}

void st_repo_chunk_id(uint8_t id[ST_REPO_ID_LEN], const struct st_repo *r, const void *data,
                      size_t len)
{
	unsigned int olen = ST_REPO_ID_LEN;

	if (HMAC(EVP_sha256(), r->mac_key, sizeof(r->mac_key), data, len, id, &olen) == NULL)
		memset(id, 0, ST_REPO_ID_LEN); /* never matches a real id: reads then fail */
}

void st_repo_pack_key(char *out, const uint8_t pack[ST_REPO_ID_LEN])
{
	char hex[2 * ST_REPO_ID_LEN + 1];

	st_repo_hex(hex, pack, ST_REPO_ID_LEN);
	(void)snprintf(out, 96, "data/%.2s/%s", hex + 8, hex);
}

/* ---------- AES-256-GCM ---------- */

/* out receives nonce | E(prefix | in) | tag: len + 1 + SEAL_EXTRA bytes (prefix optional). */
static int seal(uint8_t *out, const uint8_t key[32], const void *aad, size_t aad_len,
                const uint8_t *prefix, const void *in, size_t len)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	size_t plen = prefix != NULL ? 1 : 0;
	int n = 0;
	int rc = ST_EINTERNAL;

	if (c == NULL)
		return ST_ENOMEM;
	if (random_bytes(out, NONCE_LEN) < 0 ||
	    EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, out) != 1 ||
	    EVP_EncryptUpdate(c, NULL, &n, aad, (int)aad_len) != 1)
		goto out;
	if (prefix != NULL && EVP_EncryptUpdate(c, out + NONCE_LEN, &n, prefix, 1) != 1)
		goto out;
	if (len > 0 && EVP_EncryptUpdate(c, out + NONCE_LEN + plen, &n, in, (int)len) != 1)
		goto out;
	if (EVP_EncryptFinal_ex(c, out + NONCE_LEN + plen + len, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, out + NONCE_LEN + plen + len) !=
	            1)
		goto out;
	rc = 0;
out:
	EVP_CIPHER_CTX_free(c);
	return rc;
}

/* Opens nonce | ct | tag into out (len - SEAL_EXTRA bytes); ST_EPROTO if it fails to verify. */
static int unseal(uint8_t *out, const uint8_t key[32], const void *aad, size_t aad_len,
                  const uint8_t *in, size_t len)
{
	EVP_CIPHER_CTX *c = NULL;
	size_t clen;
	int n = 0;
	int rc = ST_EPROTO;

	if (len < SEAL_EXTRA)
		return ST_EPROTO;
	clen = len - SEAL_EXTRA;
	c = EVP_CIPHER_CTX_new();
	if (c == NULL)
		return ST_ENOMEM;
	if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, in) != 1 ||
	    EVP_DecryptUpdate(c, NULL, &n, aad, (int)aad_len) != 1 ||
	    (clen > 0 && EVP_DecryptUpdate(c, out, &n, in + NONCE_LEN, (int)clen) != 1) ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
	                        (void *)(uintptr_t)(in + NONCE_LEN + clen)) != 1 ||
	    EVP_DecryptFinal_ex(c, out + clen, &n) != 1)
		goto out;
	rc = 0;
out:
	EVP_CIPHER_CTX_free(c);
	return rc;
}

/* Seals a whole object (index, snapshot, pack trailer) into a new buffer. */
static uint8_t *seal_obj(size_t *len_out, const struct st_repo *r, const char *label,
                         const void *data, size_t len)
{
	uint8_t *out = st_xmalloc(len + SEAL_EXTRA);

	if (seal(out, r->enc_key, label, strlen(label), NULL, data, len) < 0) {
		free(out);
		return NULL;
	}
	*len_out = len + SEAL_EXTRA;
	return out;
}

static int unseal_obj(uint8_t **out, size_t *len_out, const struct st_repo *r, const char *label,
                      const void *data, size_t len)
{
	uint8_t *p;

	*out = NULL;
	if (len < SEAL_EXTRA)
		return ST_EPROTO;
	p = st_xmalloc(len - SEAL_EXTRA + 1);
	if (unseal(p, r->enc_key, label, strlen(label), data, len) < 0) {
		free(p);
		return ST_EPROTO;
	}
	*out = p;
	*len_out = len - SEAL_EXTRA;
	return 0;
}

/* ---------- config and keys ---------- */

static int derive_kek(uint8_t kek[32], const void *key, size_t key_len, const uint8_t *salt,
                      size_t salt_len, uint64_t n, uint64_t rr, uint64_t p)
{
	if (n < 2 || n > (1u << 20) || rr < 1 || rr > 32 || p < 1 || p > 16)
		return ST_EPROTO;
	if (EVP_PBE_scrypt(key, key_len, salt, salt_len, n, rr, p, 256u * 1024u * 1024u, kek, 32) !=
	    1)
		return ST_EINTERNAL;
	return 0;
}

static void set_master(struct st_repo *r, const uint8_t *master)
{
	memcpy(r->enc_key, master, 32);
	memcpy(r->mac_key, master + 32, 32);
}

static uint64_t gear_seed(const struct st_repo *r)
{
	uint8_t h[ST_REPO_ID_LEN];

	st_repo_chunk_id(h, r, "stasis chunker gear", 19);
	return le_get(h, 8);
}

int st_repo_init(struct st_store *s, const void *key, size_t key_len, struct st_err *err)
{
	uint8_t master[MASTER_LEN];
	uint8_t salt[32];
	uint8_t kek[32];
	uint8_t wrapped[MASTER_LEN + SEAL_EXTRA];
	char hex[2 * sizeof(wrapped) + 1];
	char shex[2 * sizeof(salt) + 1];
	struct json_object *o = NULL;
	uint64_t size;
	int rc = ST_EINTERNAL;

	if (key_len == 0)
		return st_err_set(err, ST_EINVAL, "empty repository key");
	rc = st_store_head(s, "config", &size, NULL);
	if (rc == 0)
		return st_err_set(err, ST_EINVAL, "%s: a repository already exists there", s->url);
	if (rc != ST_ENOTFOUND)
		return st_err_set(err, rc, "%s: cannot read the location", s->url);
	if (random_bytes(master, sizeof(master)) < 0 || random_bytes(salt, sizeof(salt)) < 0 ||
	    derive_kek(kek, key, key_len, salt, sizeof(salt), SCRYPT_N, SCRYPT_R, SCRYPT_P) < 0 ||
	    seal(wrapped, kek, "config", 6, NULL, master, sizeof(master)) < 0) {
		rc = st_err_set(err, ST_EINTERNAL, "key generation failed");
		goto out;
	}
	st_repo_hex(hex, wrapped, sizeof(wrapped));
	st_repo_hex(shex, salt, sizeof(salt));
	o = json_object_new_object();
	json_object_object_add(o, "version", json_object_new_int(FORMAT_VER));
	json_object_object_add(o, "chunker_min", json_object_new_int64(ST_CHUNK_MIN));
	json_object_object_add(o, "chunker_avg", json_object_new_int64(ST_CHUNK_AVG));
	json_object_object_add(o, "chunker_max", json_object_new_int64(ST_CHUNK_MAX));
	st_json_add_str(o, "kdf", "scrypt");
	json_object_object_add(o, "scrypt_n", json_object_new_int64(SCRYPT_N));
	json_object_object_add(o, "scrypt_r", json_object_new_int64(SCRYPT_R));
	json_object_object_add(o, "scrypt_p", json_object_new_int64(SCRYPT_P));
	st_json_add_str(o, "salt", shex);
	st_json_add_str(o, "master_key", hex);
	{
		size_t jl = 0;
		const char *js = st_json_to_string(o, &jl);

		rc = st_store_put_mem(s, "config", js, jl, true, err);
	}
	if (rc == 1)
		rc = st_err_set(err, ST_EINVAL, "%s: a repository already exists there", s->url);
	if (rc < 0)
		goto out;
	rc = 0;
out:
	json_object_put(o);
	explicit_bzero(master, sizeof(master));
	explicit_bzero(kek, sizeof(kek));
	return rc;
}

static int64_t jint(const struct json_object *o, const char *k)
{
	struct json_object *v = st_json_get(o, k);

	return v != NULL && json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
}

static int open_config(struct st_repo *r, const void *key, size_t key_len, struct st_err *err)
{
	char *text = NULL;
	size_t len = 0;
	struct json_object *o = NULL;
	uint8_t salt[32];
	uint8_t kek[32];
	uint8_t wrapped[MASTER_LEN + SEAL_EXTRA];
	uint8_t master[MASTER_LEN];
	int rc;

	rc = st_store_get_mem(&text, &len, r->store, "config", CONFIG_MAX, err);
	if (rc == ST_ENOTFOUND) {
		st_err_clear(err);
		rc = st_err_set(err, rc, "%s: no repository here (run `repo init`)", r->store->url);
	}
	if (rc < 0)
		goto out;
	if ((rc = st_json_parse(&o, text, len, CONFIG_MAX, "repository config", err)) < 0)
		goto out;
	if (jint(o, "version") != FORMAT_VER ||
	    strcmp(st_json_get_str(o, "kdf") ? st_json_get_str(o, "kdf") : "", "scrypt") != 0 ||
	    unhex(salt, sizeof(salt), st_json_get_str(o, "salt")) < 0 ||
	    unhex(wrapped, sizeof(wrapped), st_json_get_str(o, "master_key")) < 0) {
		rc = st_err_set(err, ST_EPROTO, "%s: unsupported or damaged repository config",
		                r->store->url);
		goto out;
	}
	rc = derive_kek(kek, key, key_len, salt, sizeof(salt), (uint64_t)jint(o, "scrypt_n"),
	                (uint64_t)jint(o, "scrypt_r"), (uint64_t)jint(o, "scrypt_p"));
	if (rc < 0) {
		rc = st_err_set(err, ST_EPROTO, "%s: bad key-derivation parameters in config",
		                r->store->url);
		goto out;
	}
	if (unseal(master, kek, "config", 6, wrapped, sizeof(wrapped)) < 0) {
		rc = st_err_set(err, ST_EINVAL,
		                "%s: wrong repository key (it does not open this repository)",
		                r->store->url);
		goto out;
	}
	set_master(r, master);
	if (st_chunker_init(&r->chunker, gear_seed(r), (uint32_t)jint(o, "chunker_min"),
	                    (uint32_t)jint(o, "chunker_avg"),
	                    (uint32_t)jint(o, "chunker_max")) < 0 ||
	    r->chunker.max > ST_CHUNK_MAX) {
		rc = st_err_set(err, ST_EPROTO, "%s: bad chunker sizes in config", r->store->url);
		goto out;
	}
	rc = 0;
out:
	explicit_bzero(kek, sizeof(kek));
	explicit_bzero(master, sizeof(master));
	json_object_put(o);
	free(text);
	return rc;
}

int st_repo_open(struct st_repo **out, struct st_store *s, const void *key, size_t key_len,
                 struct st_err *err)
{
	struct st_repo *r = st_xcalloc(1, sizeof(*r));
	int rc;

	*out = NULL;
	r->store = s;
	/* Durability is established explicitly between dependent writes (see st_store_sync). */
	st_store_set_defer_sync(s, true);
	(void)pthread_mutex_init(&r->mu, NULL);
	r->tab_cap = 1024;
	r->tab = st_xcalloc(r->tab_cap, sizeof(*r->tab));
	if ((rc = open_config(r, key, key_len, err)) < 0) {
		st_repo_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void st_repo_free(struct st_repo *r)
{
	if (r == NULL)
		return;
	explicit_bzero(r->enc_key, sizeof(r->enc_key));
	explicit_bzero(r->mac_key, sizeof(r->mac_key));
	for (size_t i = 0; i < r->nindex; i++)
		free(r->index_keys[i]);
	free(r->index_keys);
	free(r->tab);
	free(r->packs);
	(void)pthread_mutex_destroy(&r->mu);
	free(r);
}

/* ---------- in-memory index (caller holds r->mu) ---------- */

static size_t slot_of(const struct st_repo *r, const uint8_t *id)
{
	size_t mask = r->tab_cap - 1;
	size_t i = (size_t)le_get(id, 8) & mask;

	while (r->tab[i].used && memcmp(r->tab[i].id, id, ST_REPO_ID_LEN) != 0)
		i = (i + 1) & mask;
	return i;
}

static void tab_grow(struct st_repo *r)
{
	struct ient *old = r->tab;
	size_t oc = r->tab_cap;

	r->tab_cap *= 2;
	r->tab = st_xcalloc(r->tab_cap, sizeof(*r->tab));
	for (size_t i = 0; i < oc; i++)
		if (old[i].used)
			r->tab[slot_of(r, old[i].id)] = old[i];
	free(old);
}

/* Inserts or finds id; returns the entry and whether it was new. */
static struct ient *tab_put(struct st_repo *r, const uint8_t *id, bool *is_new)
{
	size_t i;

	if ((r->tab_n + 1) * 2 > r->tab_cap)
		tab_grow(r);
	i = slot_of(r, id);
	*is_new = !r->tab[i].used;
	if (*is_new) {
		memcpy(r->tab[i].id, id, ST_REPO_ID_LEN);
		r->tab[i].used = 1;
		r->tab[i].pack = PENDING;
		r->tab_n++;
	}
	return &r->tab[i];
}

static uint32_t pack_add(struct st_repo *r, const uint8_t *id, bool fresh, bool stored)
{
	if (r->npacks == r->packs_cap) {
		r->packs_cap = r->packs_cap ? r->packs_cap * 2 : 64;
		r->packs = st_xrealloc(r->packs, r->packs_cap * sizeof(*r->packs));
	}
	memcpy(r->packs[r->npacks].id, id, ST_REPO_ID_LEN);
	r->packs[r->npacks].fresh = fresh;
	r->packs[r->npacks].stored = stored;
	return (uint32_t)r->npacks++;
}

static int pack_find(const struct st_repo *r, const uint8_t *id)
{
	/* Linear: only used while loading and in gc/check, where packs are few. */
	for (size_t i = r->npacks; i-- > 0;)
		if (memcmp(r->packs[i].id, id, ST_REPO_ID_LEN) == 0)
			return (int)i;
	return -1;
}

bool st_repo_has_chunk(struct st_repo *r, const uint8_t id[ST_REPO_ID_LEN])
{
	bool found;

	(void)pthread_mutex_lock(&r->mu);
	found = r->tab[slot_of(r, id)].used;
	(void)pthread_mutex_unlock(&r->mu);
	return found;
}

int st_repo_locate(struct st_repo_loc *out, struct st_repo *r, const uint8_t id[ST_REPO_ID_LEN])
{
	const struct ient *e;
	int rc = ST_ENOTFOUND;

	(void)pthread_mutex_lock(&r->mu);
	e = &r->tab[slot_of(r, id)];
	if (e->used && e->pack != PENDING && r->packs[e->pack].stored) {
		memcpy(out->pack, r->packs[e->pack].id, ST_REPO_ID_LEN);
		out->off = e->off;
		out->len = e->len;
		out->rawlen = e->rawlen;
		rc = 0;
	}
	(void)pthread_mutex_unlock(&r->mu);
	return rc;
}

/* ---------- index encoding ---------- */

static void put_entry(uint8_t *p, const uint8_t *id, uint32_t off, uint32_t len, uint32_t rawlen)
{
	memcpy(p, id, ST_REPO_ID_LEN);
	le_put(p + ST_REPO_ID_LEN, off, 4);
	le_put(p + ST_REPO_ID_LEN + 4, len, 4);
	le_put(p + ST_REPO_ID_LEN + 8, rawlen, 4);
}

static int decode_entries(const uint8_t *p, size_t n, size_t count, const uint8_t *pack,
                          st_repo_index_cb cb, void *payload)
{
	int rc;

	if (count > n / ENTRY_BYTES)
		return ST_EPROTO;
	for (size_t i = 0; i < count; i++, p += ENTRY_BYTES) {
		uint32_t off = (uint32_t)le_get(p + ST_REPO_ID_LEN, 4);
		uint32_t len = (uint32_t)le_get(p + ST_REPO_ID_LEN + 4, 4);
		uint32_t raw = (uint32_t)le_get(p + ST_REPO_ID_LEN + 8, 4);

		if (len < BLOB_MIN || (uint64_t)off + len > UINT32_MAX || raw > ST_CHUNK_MAX ||
		    len > ST_CHUNK_MAX + 2 * BLOB_MIN + ST_CHUNK_MAX / 64 || off < 8)
			return ST_EPROTO;
		if ((rc = cb(pack, p, off, len, raw, payload)) != 0)
			return rc;
	}
	return 0;
}

int st_repo_index_decode(const uint8_t *p, size_t n, const uint8_t *pack, st_repo_index_cb cb,
                         void *payload)
{
	size_t count;
	int rc;

	if (n < 9 || p[4] != FORMAT_VER)
		return ST_EPROTO;
	count = (size_t)le_get(p + 5, 4);
	if (memcmp(p, PIDX_MAGIC, 4) == 0) {
		if (pack == NULL || n - 9 != count * ENTRY_BYTES)
			return ST_EPROTO;
		return decode_entries(p + 9, n - 9, count, pack, cb, payload);
	}
	if (memcmp(p, IDX_MAGIC, 4) != 0)
		return ST_EPROTO;
	p += 9;
	n -= 9;
	for (size_t i = 0; i < count; i++) {
		size_t ne;

		if (n < ST_REPO_ID_LEN + 4)
			return ST_EPROTO;
		ne = (size_t)le_get(p + ST_REPO_ID_LEN, 4);
		if (ne > (n - ST_REPO_ID_LEN - 4) / ENTRY_BYTES)
			return ST_EPROTO;
		if ((rc = decode_entries(p + ST_REPO_ID_LEN + 4, n - ST_REPO_ID_LEN - 4, ne, p, cb,
		                         payload)) != 0)
			return rc;
		p += ST_REPO_ID_LEN + 4 + ne * ENTRY_BYTES;
		n -= ST_REPO_ID_LEN + 4 + ne * ENTRY_BYTES;
	}
	return n == 0 ? 0 : ST_EPROTO;
}

struct load_ctx {
	struct st_repo *r;
	bool fresh;
	int last_pack;
};

static int load_entry(const uint8_t pack[ST_REPO_ID_LEN], const uint8_t id[ST_REPO_ID_LEN],
                      uint32_t off, uint32_t len, uint32_t rawlen, void *payload)
{
	struct load_ctx *c = payload;
	struct st_repo *r = c->r;
	struct ient *e;
	bool is_new;

	if (c->last_pack < 0 || memcmp(r->packs[c->last_pack].id, pack, ST_REPO_ID_LEN) != 0) {
		c->last_pack = pack_find(r, pack);
		if (c->last_pack < 0)
			c->last_pack = (int)pack_add(r, pack, c->fresh, true);
	}
	e = tab_put(r, id, &is_new);
	if (is_new) {
		e->pack = (uint32_t)c->last_pack;
		e->off = off;
		e->len = len;
		e->rawlen = rawlen;
	}
	return 0;
}

static int collect_key(const char *key, uint64_t size, void *payload)
{
	struct st_repo *r = payload;

	(void)size;
	r->index_keys = st_xrealloc(r->index_keys, (r->nindex + 1) * sizeof(char *));
	r->index_keys[r->nindex++] = st_xstrdup(key);
	return 0;
}

int st_repo_load_index(struct st_repo *r, struct st_err *err)
{
	struct load_ctx c = { r, false, -1 };
	int rc;

	if ((rc = st_store_list(r->store, "index/", collect_key, r, err)) < 0)
		return rc;
	for (size_t i = 0; i < r->nindex; i++) {
		char *data = NULL;
		uint8_t *plain = NULL;
		size_t len = 0;
		size_t plen = 0;

		rc = st_store_get_mem(&data, &len, r->store, r->index_keys[i],
		                      ST_REPO_INDEX_OBJ_MAX, err);
		if (rc < 0)
			return rc;
		rc = unseal_obj(&plain, &plen, r, "index", data, len);
		free(data);
		if (rc == 0)
			rc = st_repo_index_decode(plain, plen, NULL, load_entry, &c);
		free(plain);
		if (rc < 0)
			return st_err_set(err, ST_EPROTO, "%s: corrupt index object",
			                  r->index_keys[i]);
	}
	return 0;
}

/* ---------- packs ---------- */

struct pack_list {
	char **keys;
	uint64_t *sizes;
	size_t n;
};

static int collect_pack(const char *key, uint64_t size, void *payload)
{
	struct pack_list *l = payload;

	l->keys = st_xrealloc(l->keys, (l->n + 1) * sizeof(char *));
	l->sizes = st_xrealloc(l->sizes, (l->n + 1) * sizeof(uint64_t));
	l->keys[l->n] = st_xstrdup(key);
	l->sizes[l->n++] = size;
	return 0;
}

static void pack_list_dispose(struct pack_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->keys[i]);
	free(l->keys);
	free(l->sizes);
}

static int pack_id_of_key(uint8_t id[ST_REPO_ID_LEN], const char *key)
{
	const char *slash = strrchr(key, '/');

	return slash != NULL ? unhex(id, ST_REPO_ID_LEN, slash + 1) : ST_EINVAL;
}

struct range_buf {
	uint8_t *p;
	size_t n;
	size_t cap;
};

static int range_write(const void *data, size_t n, void *payload)
{
	struct range_buf *b = payload;

	if (n > b->cap - b->n)
		return ST_ETOOBIG;
	memcpy(b->p + b->n, data, n);
	b->n += n;
	return 0;
}

/* Reads and authenticates the trailing index of a pack of the given size. */
static int read_pack_trailer(uint8_t **plain, size_t *plen, struct st_repo *r, const char *key,
                             const uint8_t *pack, uint64_t size, struct st_err *err)
{
	uint8_t foot[12];
	struct range_buf b = { foot, 0, sizeof(foot) };
	uint32_t tlen;
	char label[16 + 2 * ST_REPO_ID_LEN];
	int rc;

	*plain = NULL;
	if (size < 8 + 12 + SEAL_EXTRA)
		return st_err_set(err, ST_EPROTO, "%s: too short for a pack", key);
	if ((rc = st_store_get(r->store, key, size - 12, 12, range_write, &b, err)) < 0)
		return rc;
	tlen = (uint32_t)le_get(foot, 4);
	if (b.n != 12 || memcmp(foot + 4, PACK_FOOT, 8) != 0 || tlen > size - 20)
		return st_err_set(err, ST_EPROTO, "%s: damaged pack footer", key);
	b.p = st_xmalloc(tlen);
	b.n = 0;
	b.cap = tlen;
	rc = st_store_get(r->store, key, size - 12 - tlen, tlen, range_write, &b, err);
	if (rc == 0) {
		st_repo_hex(label, pack, ST_REPO_ID_LEN);
		rc = unseal_obj(plain, plen, r, label, b.p, b.n);
		if (rc < 0)
			rc = st_err_set(err, ST_EPROTO, "%s: pack index fails to authenticate",
			                key);
	}
	free(b.p);
	return rc;
}

struct orphan_ctx {
	struct st_repo *r;
	struct st_repo_reader *rd;
	const uint8_t *buf;
	size_t len;
};

static int verify_blob(const uint8_t pack[ST_REPO_ID_LEN], const uint8_t id[ST_REPO_ID_LEN],
                       uint32_t off, uint32_t len, uint32_t rawlen, void *payload)
{
	struct orphan_ctx *c = payload;
	uint8_t *data = NULL;
	size_t dlen = 0;
	int rc;

	(void)pack;
	if ((uint64_t)off + len > c->len)
		return ST_EPROTO;
	rc = st_repo_open_blob(&data, &dlen, c->r, c->rd, id, c->buf + off, len, rawlen, NULL);
	free(data);
	return rc < 0 ? ST_EPROTO : 0;
}

/*
 * A pack no index names was written by a backup that died before its sync,
 * so it may be torn even though it is complete under its name: every blob is
 * verified before any of them is reused.
 */
static int verify_orphan(struct st_repo *r, const char *key, const uint8_t *pack,
                         const uint8_t *plain, size_t plen, struct st_err *err)
{
	struct orphan_ctx c = { r, st_repo_reader_new(), NULL, 0 };
	char *buf = NULL;
	size_t len = 0;
	int rc = ST_ENOMEM;

	if (c.rd == NULL)
		return rc;
	rc = st_store_get_mem(&buf, &len, r->store, key, ST_REPO_PACK_MAX, err);
	if (rc == 0) {
		c.buf = (const uint8_t *)buf;
		c.len = len;
		rc = st_repo_index_decode(plain, plen, pack, verify_blob, &c);
		if (rc < 0)
			rc = st_err_set(err, ST_EPROTO, "%s: damaged blob", key);
	}
	free(buf);
	st_repo_reader_free(c.rd);
	return rc;
}

int st_repo_recover_packs(struct st_repo *r, unsigned *n_out, struct st_err *err)
{
	struct pack_list l = { 0 };
	int rc = ST_EINTERNAL;

	*n_out = 0;
	if ((rc = st_store_list(r->store, "data/", collect_pack, &l, err)) < 0)
		goto out;
	for (size_t i = 0; i < l.n; i++) {
		uint8_t id[ST_REPO_ID_LEN];
		uint8_t *plain = NULL;
		size_t plen = 0;
		struct load_ctx c = { r, true, -1 };

		if (pack_id_of_key(id, l.keys[i]) < 0 || pack_find(r, id) >= 0)
			continue;
		if (read_pack_trailer(&plain, &plen, r, l.keys[i], id, l.sizes[i], err) < 0 ||
		    verify_orphan(r, l.keys[i], id, plain, plen, err) < 0) {
			/* An unreadable orphan is simply not reused; gc removes it later. */
			st_log_warn("repository: ignoring unreadable pack %s: %s", l.keys[i],
			            st_err_text(err));
			st_err_clear(err);
			continue;
		}
		if (st_repo_index_decode(plain, plen, id, load_entry, &c) == 0)
			(*n_out)++;
		free(plain);
	}
	rc = 0;
out:
	pack_list_dispose(&l);
	return rc;
}

/* ---------- reading chunks ---------- */

/*
 * Small chunks are read with a window of READ_AHEAD bytes of their pack: a
 * backup writes the chunks of neighbouring small files next to each other,
 * and one ranged GET per 4 KiB file costs a round trip each on S3.
 */
#define READ_AHEAD (1024u * 1024u)

struct st_repo_reader {
	ZSTD_DCtx *dctx;
	uint8_t *blob;
	size_t blob_cap;
	uint8_t *plain;
	size_t plain_cap;
	uint8_t *win; /* READ_AHEAD bytes of pack win_pack from win_off */
	size_t win_len;
	uint32_t win_off;
	uint8_t win_pack[ST_REPO_ID_LEN];
};

struct st_repo_reader *st_repo_reader_new(void)
{
	struct st_repo_reader *rd = st_xcalloc(1, sizeof(*rd));

	rd->dctx = ZSTD_createDCtx();
	if (rd->dctx == NULL) {
		free(rd);
		return NULL;
	}
	return rd;
}

void st_repo_reader_free(struct st_repo_reader *rd)
{
	if (rd == NULL)
		return;
	ZSTD_freeDCtx(rd->dctx);
	free(rd->blob);
	free(rd->plain);
	free(rd->win);
	free(rd);
}

static void ensure(uint8_t **p, size_t *cap, size_t n)
{
	if (*cap < n) {
		free(*p);
		*p = st_xmalloc(n);
		*cap = n;
	}
}

int st_repo_open_blob(uint8_t **out, size_t *len_out, struct st_repo *r, struct st_repo_reader *rd,
                      const uint8_t id[ST_REPO_ID_LEN], const uint8_t *blob, size_t blob_len,
                      uint32_t rawlen, struct st_err *err)
{
	char hex[2 * ST_REPO_ID_LEN + 1];
	uint8_t check[ST_REPO_ID_LEN];
	uint8_t *data = NULL;
	size_t plen;
	int rc = ST_EPROTO;

	*out = NULL;
	*len_out = 0;
	st_repo_hex(hex, id, ST_REPO_ID_LEN);
	if (blob_len < BLOB_MIN || rawlen > ST_CHUNK_MAX)
		return st_err_set(err, ST_EPROTO, "chunk %s: damaged blob", hex);
	plen = blob_len - SEAL_EXTRA;
	ensure(&rd->plain, &rd->plain_cap, plen);
	if (unseal(rd->plain, r->enc_key, id, ST_REPO_ID_LEN, blob, blob_len) < 0)
		return st_err_set(err, ST_EPROTO,
		                  "chunk %s: authentication failed (data corrupted in storage)",
		                  hex);
	data = st_xmalloc(rawlen ? rawlen : 1);
	if (rd->plain[0] == FLAG_RAW && plen - 1 == rawlen) {
		memcpy(data, rd->plain + 1, rawlen);
	} else if (rd->plain[0] == FLAG_ZSTD) {
		size_t n = ZSTD_decompressDCtx(rd->dctx, data, rawlen, rd->plain + 1, plen - 1);

		if (ZSTD_isError(n) || n != rawlen) {
			rc = st_err_set(err, ST_EPROTO, "chunk %s: does not decompress", hex);
			goto out;
		}
	} else {
		rc = st_err_set(err, ST_EPROTO, "chunk %s: unknown blob encoding", hex);
		goto out;
	}
	st_repo_chunk_id(check, r, data, rawlen);
	if (memcmp(check, id, ST_REPO_ID_LEN) != 0) {
		rc = st_err_set(err, ST_EPROTO, "chunk %s: content does not match its id", hex);
		goto out;
	}
	*out = data;
	*len_out = rawlen;
	data = NULL;
	rc = 0;
out:
	free(data);
	return rc;
}

int st_repo_read_chunk(uint8_t **out, size_t *len_out, struct st_repo *r, struct st_repo_reader *rd,
                       const uint8_t id[ST_REPO_ID_LEN], struct st_err *err)
{
	struct st_repo_loc loc;
	char key[96];
	char hex[2 * ST_REPO_ID_LEN + 1];
	struct range_buf b;
	int rc;

	*out = NULL;
	*len_out = 0;
	if (st_repo_locate(&loc, r, id) < 0) {
		st_repo_hex(hex, id, ST_REPO_ID_LEN);
		return st_err_set(err, ST_ENOTFOUND, "chunk %s: not in the repository index", hex);
	}
	st_repo_pack_key(key, loc.pack);
	if (rd->win != NULL && memcmp(rd->win_pack, loc.pack, ST_REPO_ID_LEN) == 0 &&
	    loc.off >= rd->win_off && loc.len <= rd->win_len &&
	    loc.off - rd->win_off <= rd->win_len - loc.len) {
		b.p = rd->win + (loc.off - rd->win_off);
		b.n = loc.len;
	} else {
		bool ahead = loc.len < READ_AHEAD;

		if (ahead && rd->win == NULL)
			rd->win = st_xmalloc(READ_AHEAD);
		if (!ahead)
			ensure(&rd->blob, &rd->blob_cap, loc.len);
		b.p = ahead ? rd->win : rd->blob;
		b.n = 0;
		b.cap = ahead ? READ_AHEAD : loc.len;
		if (ahead)
			rd->win_len = 0; /* invalid until the read succeeds */
		/* A window past the end of the pack gets what there is (a short range). */
		if ((rc = st_store_get(r->store, key, loc.off, b.cap, range_write, &b, err)) < 0) {
			st_err_prefix(err, "reading chunk");
			return rc;
		}
		if (b.n < loc.len) {
			st_repo_hex(hex, id, ST_REPO_ID_LEN);
			return st_err_set(err, ST_EPROTO, "chunk %s: pack %s is truncated", hex,
			                  key);
		}
		if (ahead) {
			memcpy(rd->win_pack, loc.pack, ST_REPO_ID_LEN);
			rd->win_off = loc.off;
			rd->win_len = b.n;
		}
		b.n = loc.len;
	}
	{
		struct st_err e = ST_ERR_INIT;

		rc = st_repo_open_blob(out, len_out, r, rd, id, b.p, b.n, loc.rawlen, &e);
		/* The chunk id leads: messages get prefixed and may be cut at the end. */
		if (rc < 0)
			(void)st_err_set(err, rc, "%s (pack %.24s.. offset %u)", e.msg, key + 8,
			                 loc.off);
	}
	return rc;
}

/* ---------- writer ---------- */

/*
 * A job is one chunk on its way into a pack. Chunks added with
 * st_repo_writer_add carry their id and an owned copy of the data; chunks
 * added with st_repo_writer_add_seg point into a pooled segment and get their
 * id from the worker that takes them (ticket names the slot in w->ids).
 */
struct job {
	uint8_t id[ST_REPO_ID_LEN];
	const uint8_t *data;
	size_t len;
	struct st_repo_seg *seg; /* NULL: data is an owned copy (big_alloc) */
	uint64_t ticket;
};

struct st_repo_seg {
	uint8_t *data;
	unsigned refs; /* under w->mu: the caller's, plus one per queued job */
	struct st_repo_seg *next_free;
};

struct pack_build {
	uint8_t id[ST_REPO_ID_LEN];
	uint32_t slot; /* in r->packs */
	uint8_t *buf;
	size_t len;
	size_t alloc;
	uint8_t *ents; /* ENTRY_BYTES each, for the trailer */
	size_t nents;
	size_t ents_cap;
};

#define SEG_COUNT   2
#define PACK_ALLOC  (ST_REPO_PACK_TARGET + 4096u)
#define PACK_SPARES 1
#define UPLOADERS   2
/* Trailer of a pack with n entries: header, entries, seal, length and footer. */
#define TRAILER_LEN(n) (9u + (size_t)(n)*ENTRY_BYTES + SEAL_EXTRA + 12u)

struct st_repo_writer {
	struct st_repo *r;
	pthread_t workers[8];
	unsigned nworkers;
	pthread_t uploaders[UPLOADERS];
	unsigned nuploaders;
	pthread_mutex_t mu;
	pthread_cond_t cv_job;
	pthread_cond_t cv_space;
	pthread_cond_t cv_pack;
	pthread_cond_t cv_taken;
	pthread_cond_t cv_seg;
	pthread_cond_t cv_idle;
	struct job q[QUEUE_SLOTS];
	size_t qhead;
	size_t qn;
	size_t qbytes;
	size_t busy; /* jobs queued or being worked on */
	bool closing;
	bool workers_done;
	unsigned uploading; /* packs held by uploaders */
	bool failed;
	struct st_err err;
	struct pack_build *handoff;
	pthread_mutex_t pack_mu;
	struct pack_build *cur;
	struct st_repo_writer_stats stats;
	/* segments: a fixed pool, so file data is read into memory mapped once */
	struct st_repo_seg segs[SEG_COUNT];
	struct st_repo_seg *seg_free;
	/* ids of tickets [id_base, next_ticket), filled in by the workers */
	uint8_t (*ids)[ST_REPO_ID_LEN];
	size_t ids_cap;
	uint64_t id_base;
	uint64_t next_ticket;
	bool drained;
	/* pack buffers kept for reuse: fresh mappings cost a page fault per page */
	uint8_t *spare[PACK_SPARES];
	unsigned nspare;
};

static void writer_fail(struct st_repo_writer *w, const struct st_err *e)
{
	(void)pthread_mutex_lock(&w->mu);
	if (!w->failed) {
		w->failed = true;
		w->err = *e;
	}
	(void)pthread_cond_broadcast(&w->cv_job);
	(void)pthread_cond_broadcast(&w->cv_space);
	(void)pthread_cond_broadcast(&w->cv_pack);
	(void)pthread_cond_broadcast(&w->cv_taken);
	(void)pthread_cond_broadcast(&w->cv_seg);
	(void)pthread_cond_broadcast(&w->cv_idle);
	(void)pthread_mutex_unlock(&w->mu);
}

static void pack_free(struct st_repo_writer *w, struct pack_build *p)
{
	if (p == NULL)
		return;
	(void)pthread_mutex_lock(&w->mu);
	if (p->alloc == PACK_ALLOC && w->nspare < PACK_SPARES) {
		w->spare[w->nspare++] = p->buf;
		p->buf = NULL;
	}
	(void)pthread_mutex_unlock(&w->mu);
	big_free(p->buf, p->alloc);
	free(p->ents);
	free(p);
}

static int pack_new(struct pack_build **out, struct st_repo_writer *w)
{
	struct pack_build *p = st_xcalloc(1, sizeof(*p));
	uint32_t now = (uint32_t)time(NULL);

	*out = NULL;
	/* Creation time leads the id so gc can tell a pack's age from its name. */
	p->id[0] = (uint8_t)(now >> 24);
	p->id[1] = (uint8_t)(now >> 16);
	p->id[2] = (uint8_t)(now >> 8);
	p->id[3] = (uint8_t)now;
	if (random_bytes(p->id + 4, ST_REPO_ID_LEN - 4) < 0) {
		free(p);
		return ST_EINTERNAL;
	}
	p->alloc = PACK_ALLOC;
	(void)pthread_mutex_lock(&w->mu);
	if (w->nspare > 0)
		p->buf = w->spare[--w->nspare];
	(void)pthread_mutex_unlock(&w->mu);
	if (p->buf == NULL)
		p->buf = big_alloc(p->alloc);
	memcpy(p->buf, PACK_MAGIC, 8);
	p->len = 8;
	(void)pthread_mutex_lock(&w->r->mu);
	p->slot = pack_add(w->r, p->id, true, false);
	(void)pthread_mutex_unlock(&w->r->mu);
	*out = p;
	return 0;
}

/* Appends the sealed trailer index and the footer. */
static int pack_seal(struct pack_build *p, const struct st_repo *r)
{
	uint8_t head[9];
	struct st_buf plain = ST_BUF_INIT(p->nents * ENTRY_BYTES + 16);
	char label[2 * ST_REPO_ID_LEN + 1];
	uint8_t *sealed = NULL;
	size_t slen = 0;
	int rc;

	memcpy(head, PIDX_MAGIC, 4);
	head[4] = FORMAT_VER;
	le_put(head + 5, p->nents, 4);
	if ((rc = st_buf_put(&plain, head, sizeof(head))) < 0 ||
	    (rc = st_buf_put(&plain, p->ents, p->nents * ENTRY_BYTES)) < 0)
		goto out;
	st_repo_hex(label, p->id, ST_REPO_ID_LEN);
	sealed = seal_obj(&slen, r, label, plain.ptr, plain.len);
	if (sealed == NULL) {
		rc = ST_EINTERNAL;
		goto out;
	}
	if (p->len + slen + 12 > p->alloc) {
		p->buf = big_grow(p->buf, p->alloc, p->len + slen + 12);
		p->alloc = p->len + slen + 12;
	}
	memcpy(p->buf + p->len, sealed, slen);
	p->len += slen;
	le_put(p->buf + p->len, slen, 4);
	memcpy(p->buf + p->len + 4, PACK_FOOT, 8);
	p->len += 12;
	rc = 0;
out:
	free(sealed);
	st_buf_dispose(&plain);
	return rc;
}

/*
 * Hands a sealed pack to an uploader, waiting while all of them are busy:
 * one pack filling and UPLOADERS uploading keep the store busy whenever packs
 * fill faster than they upload; a pack waiting in between would only add
 * memory.
 */
static void pack_handoff(struct st_repo_writer *w, struct pack_build *p)
{
	bool drop;

	(void)pthread_mutex_lock(&w->mu);
	while ((w->handoff != NULL || w->uploading >= w->nuploaders) && !w->failed)
		(void)pthread_cond_wait(&w->cv_taken, &w->mu);
	drop = w->failed;
	if (!drop) {
		w->handoff = p;
		(void)pthread_cond_signal(&w->cv_pack);
	}
	(void)pthread_mutex_unlock(&w->mu);
	if (drop)
		pack_free(w, p);
}

/* Seals the current pack and hands it over; the caller holds pack_mu. */
static int pack_close(struct st_repo_writer *w, struct st_err *err)
{
	struct pack_build *p = w->cur;
	int rc;

	w->cur = NULL;
	if ((rc = pack_seal(p, w->r)) < 0) {
		pack_free(w, p);
		return st_err_set(err, rc, "cannot seal a pack");
	}
	pack_handoff(w, p);
	return 0;
}

struct worker_scratch {
	ZSTD_CCtx *cctx;
	uint8_t *zbuf;
	size_t zcap;
};

/*
 * For large chunks, compresses a 64 KiB sample first: random or already
 * compressed data (which does not pay) is then stored without spending a
 * full compression on it, which also keeps the scratch buffer untouched.
 */
static bool compressible(struct worker_scratch *ws, const uint8_t *p, size_t len)
{
	size_t z;

	if (len < 4 * SAMPLE_LEN)
		return true;
	z = ZSTD_compressCCtx(ws->cctx, ws->zbuf, ws->zcap, p + len / 2, SAMPLE_LEN, ZSTD_LEVEL);
	return !ZSTD_isError(z) && z < SAMPLE_LEN - SAMPLE_LEN / 32;
}

/*
 * Compresses (when it pays) and seals one chunk into the current pack. A pack
 * is closed before a blob would take it (with its trailer) past
 * ST_REPO_PACK_TARGET, so that on S3 every pack is one single PUT.
 */
static int add_blob(struct st_repo_writer *w, struct worker_scratch *ws, const struct job *j,
                    struct st_err *err)
{
	struct st_repo *r = w->r;
	const uint8_t *payload = j->data;
	size_t plen = j->len;
	size_t blen;
	uint8_t flag = FLAG_RAW;
	struct pack_build *p;
	size_t off;
	int rc = 0;

	if (j->len >= 64 && compressible(ws, j->data, j->len)) {
		size_t z = ZSTD_compressCCtx(ws->cctx, ws->zbuf, ws->zcap, j->data, j->len,
		                             ZSTD_LEVEL);

		if (!ZSTD_isError(z) && z < j->len - j->len / 32) {
			payload = ws->zbuf;
			plen = z;
			flag = FLAG_ZSTD;
		}
	}
	blen = plen + 1 + SEAL_EXTRA;
	(void)pthread_mutex_lock(&w->pack_mu);
	if (w->cur != NULL && w->cur->nents > 0 &&
	    w->cur->len + blen + TRAILER_LEN(w->cur->nents + 1) > ST_REPO_PACK_TARGET &&
	    (rc = pack_close(w, err)) < 0)
		goto out;
	if (w->cur == NULL && (rc = pack_new(&w->cur, w)) < 0) {
		rc = st_err_set(err, rc, "cannot start a pack");
		goto out;
	}
	p = w->cur;
	off = p->len;
	if ((rc = seal(p->buf + off, r->enc_key, j->id, ST_REPO_ID_LEN, &flag, payload, plen)) <
	    0) {
		rc = st_err_set(err, rc, "encryption failed");
		goto out;
	}
	p->len += blen;
	if (p->nents == p->ents_cap) {
		p->ents_cap = p->ents_cap ? p->ents_cap * 2 : 256;
		p->ents = st_xrealloc(p->ents, p->ents_cap * ENTRY_BYTES);
	}
	put_entry(p->ents + p->nents * ENTRY_BYTES, j->id, (uint32_t)off, (uint32_t)blen,
	          (uint32_t)j->len);
	p->nents++;
	(void)pthread_mutex_lock(&r->mu);
	{
		struct ient *e = &r->tab[slot_of(r, j->id)];

		e->pack = p->slot;
		e->off = (uint32_t)off;
		e->len = (uint32_t)blen;
		e->rawlen = (uint32_t)j->len;
	}
	(void)pthread_mutex_unlock(&r->mu);
	(void)pthread_mutex_lock(&w->mu);
	w->stats.bytes_stored += blen;
	(void)pthread_mutex_unlock(&w->mu);
	/* Nearly full: no chunk of the minimum size would fit any more. */
	if (p->len + TRAILER_LEN(p->nents + 1) + ST_CHUNK_MIN > ST_REPO_PACK_TARGET)
		rc = pack_close(w, err);
out:
	(void)pthread_mutex_unlock(&w->pack_mu);
	return rc;
}

/* Drops one reference to a segment; the last one returns it to the pool. Holds w->mu. */
static void seg_unref(struct st_repo_writer *w, struct st_repo_seg *s)
{
	if (--s->refs == 0) {
		s->next_free = w->seg_free;
		w->seg_free = s;
		(void)pthread_cond_signal(&w->cv_seg);
	}
}

/*
 * Computes the id of a segment chunk and records it for its ticket. Returns
 * true when the chunk is new to the repository (and must be stored).
 */
static bool hash_job(struct st_repo_writer *w, struct job *j)
{
	struct st_repo *r = w->r;
	bool is_new;

	st_repo_chunk_id(j->id, r, j->data, j->len);
	(void)pthread_mutex_lock(&r->mu);
	(void)tab_put(r, j->id, &is_new);
	(void)pthread_mutex_unlock(&r->mu);
	(void)pthread_mutex_lock(&w->mu);
	memcpy(w->ids[j->ticket - w->id_base], j->id, ST_REPO_ID_LEN);
	if (is_new) {
		w->stats.chunks_new++;
		w->stats.bytes_new += j->len;
	} else {
		w->stats.chunks_known++;
	}
	(void)pthread_mutex_unlock(&w->mu);
	return is_new;
}

static void *worker_main(void *arg)
{
	struct st_repo_writer *w = arg;
	struct worker_scratch ws = { NULL, NULL, 0 };
	struct st_err err = ST_ERR_INIT;

	ws.cctx = ZSTD_createCCtx();
	ws.zcap = ZSTD_compressBound(ST_CHUNK_MAX);
	ws.zbuf = big_alloc(ws.zcap);
	if (ws.cctx == NULL) {
		(void)st_err_set(&err, ST_ENOMEM, "zstd context");
		writer_fail(w, &err);
	}
	for (;;) {
		struct job j;

		(void)pthread_mutex_lock(&w->mu);
		while (w->qn == 0 && !w->closing && !w->failed)
			(void)pthread_cond_wait(&w->cv_job, &w->mu);
		if (w->failed || w->qn == 0) {
			(void)pthread_mutex_unlock(&w->mu);
			break;
		}
		j = w->q[w->qhead];
		w->qhead = (w->qhead + 1) % QUEUE_SLOTS;
		w->qn--;
		if (j.seg == NULL)
			w->qbytes -= j.len;
		(void)pthread_cond_signal(&w->cv_space);
		(void)pthread_mutex_unlock(&w->mu);
		if ((j.seg == NULL || hash_job(w, &j)) && add_blob(w, &ws, &j, &err) < 0)
			writer_fail(w, &err);
		if (j.seg == NULL)
			big_free((void *)(uintptr_t)j.data, j.len);
		(void)pthread_mutex_lock(&w->mu);
		if (j.seg != NULL)
			seg_unref(w, j.seg);
		if (--w->busy == 0)
			(void)pthread_cond_broadcast(&w->cv_idle);
		(void)pthread_mutex_unlock(&w->mu);
	}
	ZSTD_freeCCtx(ws.cctx);
	big_free(ws.zbuf, ws.zcap);
	return NULL;
}

static void join_uploaders(struct st_repo_writer *w)
{
	for (unsigned i = 0; i < w->nuploaders; i++)
		(void)pthread_join(w->uploaders[i], NULL);
	w->nuploaders = 0;
}

static void *uploader_main(void *arg)
{
	struct st_repo_writer *w = arg;

	for (;;) {
		struct pack_build *p;
		struct st_err err = ST_ERR_INIT;
		char key[96];
		int rc;

		(void)pthread_mutex_lock(&w->mu);
		while (w->handoff == NULL && !w->workers_done && !w->failed)
			(void)pthread_cond_wait(&w->cv_pack, &w->mu);
		p = w->handoff;
		w->handoff = NULL;
		if (p != NULL)
			w->uploading++;
		(void)pthread_mutex_unlock(&w->mu);
		if (p == NULL)
			break;
		st_repo_pack_key(key, p->id);
		rc = st_store_put_mem(w->r->store, key, p->buf, p->len, true, &err);
		if (rc < 0) {
			st_err_prefix(&err, "uploading pack");
			writer_fail(w, &err);
		} else {
			(void)pthread_mutex_lock(&w->r->mu);
			w->r->packs[p->slot].stored = true;
			(void)pthread_mutex_unlock(&w->r->mu);
			(void)pthread_mutex_lock(&w->mu);
			w->stats.packs++;
			(void)pthread_mutex_unlock(&w->mu);
		}
		pack_free(w, p);
		(void)pthread_mutex_lock(&w->mu);
		w->uploading--;
		(void)pthread_cond_broadcast(&w->cv_taken);
		(void)pthread_mutex_unlock(&w->mu);
		if (rc < 0)
			break;
	}
	return NULL;
}

int st_repo_writer_new(struct st_repo_writer **out, struct st_repo *r, unsigned jobs,
                       struct st_err *err)
{
	struct st_repo_writer *w = st_xcalloc(1, sizeof(*w));

	*out = NULL;
	if (jobs == 0)
		jobs = 2;
	if (jobs > 8)
		jobs = 8;
	w->r = r;
	(void)pthread_mutex_init(&w->mu, NULL);
	(void)pthread_mutex_init(&w->pack_mu, NULL);
	(void)pthread_cond_init(&w->cv_job, NULL);
	(void)pthread_cond_init(&w->cv_space, NULL);
	(void)pthread_cond_init(&w->cv_pack, NULL);
	(void)pthread_cond_init(&w->cv_taken, NULL);
	(void)pthread_cond_init(&w->cv_seg, NULL);
	(void)pthread_cond_init(&w->cv_idle, NULL);
	for (size_t i = 0; i < SEG_COUNT; i++) {
		w->segs[i].next_free = w->seg_free;
		w->seg_free = &w->segs[i];
	}
	for (unsigned i = 0; i < UPLOADERS; i++) {
		if (pthread_create(&w->uploaders[i], NULL, uploader_main, w) != 0) {
			st_repo_writer_free(w);
			return st_err_set(err, ST_EINTERNAL, "cannot start the uploader threads");
		}
		w->nuploaders++;
	}
	for (unsigned i = 0; i < jobs; i++) {
		if (pthread_create(&w->workers[i], NULL, worker_main, w) != 0) {
			st_repo_writer_free(w);
			return st_err_set(err, ST_EINTERNAL, "cannot start worker threads");
		}
		w->nworkers++;
	}
	*out = w;
	return 0;
}

/* Queues j (w->mu held), waiting for room; on failure returns the writer's error. */
static int enqueue(struct st_repo_writer *w, const struct job *j, struct st_err *err)
{
	size_t cost = j->seg == NULL ? j->len : 0;

	while (!w->failed && w->qn > 0 && (w->qn == QUEUE_SLOTS || w->qbytes + cost > QUEUE_BYTES))
		(void)pthread_cond_wait(&w->cv_space, &w->mu);
	if (w->failed)
		return st_err_set(err, w->err.code, "%s", w->err.msg);
	w->q[(w->qhead + w->qn) % QUEUE_SLOTS] = *j;
	w->qn++;
	w->qbytes += cost;
	w->busy++;
	(void)pthread_cond_signal(&w->cv_job);
	return 0;
}

int st_repo_writer_add(struct st_repo_writer *w, const uint8_t id[ST_REPO_ID_LEN], const void *data,
                       size_t len, struct st_err *err)
{
	struct st_repo *r = w->r;
	struct job j;
	uint8_t *copy;
	bool is_new;
	int rc = 0;

	if (len == 0 || len > ST_CHUNK_MAX)
		return st_err_set(err, ST_EINVAL, "chunk of %zu bytes", len);
	(void)pthread_mutex_lock(&r->mu);
	(void)tab_put(r, id, &is_new);
	(void)pthread_mutex_unlock(&r->mu);
	(void)pthread_mutex_lock(&w->mu);
	if (!is_new) {
		w->stats.chunks_known++;
		rc = w->failed ? st_err_set(err, w->err.code, "%s", w->err.msg) : 0;
		(void)pthread_mutex_unlock(&w->mu);
		return rc;
	}
	w->stats.chunks_new++;
	w->stats.bytes_new += len;
	(void)pthread_mutex_unlock(&w->mu);
	memset(&j, 0, sizeof(j));
	memcpy(j.id, id, ST_REPO_ID_LEN);
	copy = big_alloc(len);
	memcpy(copy, data, len);
	j.data = copy;
	j.len = len;
	(void)pthread_mutex_lock(&w->mu);
	rc = enqueue(w, &j, err);
	(void)pthread_mutex_unlock(&w->mu);
	if (rc < 0)
		big_free(copy, len);
	return rc;
}

int st_repo_writer_seg_take(struct st_repo_seg **out, struct st_repo_writer *w, struct st_err *err)
{
	struct st_repo_seg *s;
	int rc = 0;

	*out = NULL;
	(void)pthread_mutex_lock(&w->mu);
	while (w->seg_free == NULL && !w->failed)
		(void)pthread_cond_wait(&w->cv_seg, &w->mu);
	if (w->failed) {
		rc = st_err_set(err, w->err.code, "%s", w->err.msg);
	} else {
		s = w->seg_free;
		w->seg_free = s->next_free;
		s->refs = 1;
		*out = s;
	}
	(void)pthread_mutex_unlock(&w->mu);
	/* Mapped on first use only: a small backup never touches the whole pool. */
	if (*out != NULL && (*out)->data == NULL)
		(*out)->data = big_alloc(ST_REPO_SEG_SIZE);
	return rc;
}

uint8_t *st_repo_seg_data(struct st_repo_seg *s)
{
	return s->data;
}

void st_repo_writer_seg_release(struct st_repo_writer *w, struct st_repo_seg *s)
{
	if (s == NULL)
		return;
	(void)pthread_mutex_lock(&w->mu);
	seg_unref(w, s);
	(void)pthread_mutex_unlock(&w->mu);
}

int st_repo_writer_add_seg(uint64_t *ticket_out, struct st_repo_writer *w, struct st_repo_seg *s,
                           size_t off, size_t len, struct st_err *err)
{
	struct job j;
	int rc;

	if (len == 0 || len > ST_CHUNK_MAX || off > ST_REPO_SEG_SIZE - len)
		return st_err_set(err, ST_EINVAL, "chunk of %zu bytes at %zu", len, off);
	memset(&j, 0, sizeof(j));
	j.data = s->data + off;
	j.len = len;
	j.seg = s;
	(void)pthread_mutex_lock(&w->mu);
	if (w->drained) {
		/* The ids of the previous round have been read: start a new one. */
		w->id_base = w->next_ticket;
		w->drained = false;
	}
	if (w->next_ticket - w->id_base == w->ids_cap) {
		w->ids_cap = w->ids_cap ? w->ids_cap * 2 : 1024;
		w->ids = st_xrealloc(w->ids, w->ids_cap * ST_REPO_ID_LEN);
	}
	j.ticket = w->next_ticket;
	s->refs++;
	if ((rc = enqueue(w, &j, err)) < 0) {
		s->refs--;
	} else {
		*ticket_out = w->next_ticket++;
	}
	(void)pthread_mutex_unlock(&w->mu);
	return rc;
}

int st_repo_writer_drain(struct st_repo_writer *w, struct st_err *err)
{
	int rc = 0;

	(void)pthread_mutex_lock(&w->mu);
	while (w->busy > 0 && !w->failed)
		(void)pthread_cond_wait(&w->cv_idle, &w->mu);
	if (w->failed)
		rc = st_err_set(err, w->err.code, "%s", w->err.msg);
	else
		w->drained = true;
	(void)pthread_mutex_unlock(&w->mu);
	return rc;
}

void st_repo_writer_ticket_id(uint8_t id[ST_REPO_ID_LEN], const struct st_repo_writer *w,
                              uint64_t ticket)
{
	ST_ASSERT(w->drained);
	if (ticket < w->id_base || ticket >= w->next_ticket) {
		memset(id, 0, ST_REPO_ID_LEN); /* never a real id: restore would fail loudly */
		return;
	}
	memcpy(id, w->ids[ticket - w->id_base], ST_REPO_ID_LEN);
}

struct fresh_ent {
	uint32_t pack;
	const struct ient *e;
};

static int cmp_fresh(const void *a, const void *b)
{
	const struct fresh_ent *x = a;
	const struct fresh_ent *y = b;

	return x->pack < y->pack ? -1 : x->pack > y->pack ? 1 : (x->e->off > y->e->off);
}

/* Writes one index object naming every fresh, stored pack with its entries. */
static int write_index(struct st_repo *r, struct st_err *err)
{
	struct fresh_ent *v = NULL;
	size_t nv = 0;
	struct st_buf b = ST_BUF_INIT(ST_REPO_INDEX_OBJ_MAX);
	uint8_t head[9];
	uint8_t *sealed = NULL;
	size_t slen = 0;
	uint8_t rnd[ST_REPO_ID_LEN];
	char hex[2 * ST_REPO_ID_LEN + 1];
	char key[128];
	size_t npk = 0;
	int rc = ST_EINTERNAL;

	v = st_xcalloc(r->tab_n + 1, sizeof(*v));
	for (size_t i = 0; i < r->tab_cap; i++) {
		const struct ient *e = &r->tab[i];

		if (e->used && e->pack != PENDING && r->packs[e->pack].fresh &&
		    r->packs[e->pack].stored)
			v[nv++] = (struct fresh_ent){ e->pack, e };
	}
	if (nv == 0) {
		rc = 0;
		goto out;
	}
	qsort(v, nv, sizeof(*v), cmp_fresh);
	for (size_t i = 0; i < nv; i++)
		if (i == 0 || v[i].pack != v[i - 1].pack)
			npk++;
	memcpy(head, IDX_MAGIC, 4);
	head[4] = FORMAT_VER;
	le_put(head + 5, npk, 4);
	if ((rc = st_buf_put(&b, head, sizeof(head))) < 0)
		goto too_big;
	for (size_t i = 0; i < nv;) {
		size_t j = i;
		uint8_t ph[ST_REPO_ID_LEN + 4];

		while (j < nv && v[j].pack == v[i].pack)
			j++;
		memcpy(ph, r->packs[v[i].pack].id, ST_REPO_ID_LEN);
		le_put(ph + ST_REPO_ID_LEN, j - i, 4);
		if ((rc = st_buf_put(&b, ph, sizeof(ph))) < 0)
			goto too_big;
		for (; i < j; i++) {
			uint8_t ent[ENTRY_BYTES];

			put_entry(ent, v[i].e->id, v[i].e->off, v[i].e->len, v[i].e->rawlen);
			if ((rc = st_buf_put(&b, ent, sizeof(ent))) < 0)
				goto too_big;
		}
	}
	sealed = seal_obj(&slen, r, "index", b.ptr, b.len);
	if (sealed == NULL || random_bytes(rnd, sizeof(rnd)) < 0) {
		rc = st_err_set(err, ST_EINTERNAL, "cannot seal the index");
		goto out;
	}
	st_repo_hex(hex, rnd, sizeof(rnd));
	(void)snprintf(key, sizeof(key), "index/%s", hex);
	if ((rc = st_store_put_mem(r->store, key, sealed, slen, true, err)) < 0)
		goto out;
	for (size_t i = 0; i < r->npacks; i++)
		if (r->packs[i].stored)
			r->packs[i].fresh = false;
	r->index_keys = st_xrealloc(r->index_keys, (r->nindex + 1) * sizeof(char *));
	r->index_keys[r->nindex++] = st_xstrdup(key);
	rc = 0;
	goto out;
too_big:
	rc = st_err_set(err, rc, "index object too large");
out:
	free(sealed);
	st_buf_dispose(&b);
	free(v);
	return rc;
}

static void writer_stop(struct st_repo_writer *w)
{
	(void)pthread_mutex_lock(&w->mu);
	w->closing = true;
	(void)pthread_cond_broadcast(&w->cv_job);
	(void)pthread_mutex_unlock(&w->mu);
	for (unsigned i = 0; i < w->nworkers; i++)
		(void)pthread_join(w->workers[i], NULL);
	w->nworkers = 0;
}

int st_repo_writer_finish(struct st_repo_writer *w, struct st_err *err)
{
	struct pack_build *last;
	int rc;

	writer_stop(w);
	last = w->cur;
	w->cur = NULL;
	if (last != NULL && !w->failed) {
		if (pack_seal(last, w->r) < 0) {
			struct st_err e = ST_ERR_INIT;

			(void)st_err_set(&e, ST_EINTERNAL, "cannot seal a pack");
			writer_fail(w, &e);
			pack_free(w, last);
		} else {
			pack_handoff(w, last);
		}
	} else {
		pack_free(w, last);
	}
	(void)pthread_mutex_lock(&w->mu);
	w->workers_done = true;
	(void)pthread_cond_broadcast(&w->cv_pack);
	(void)pthread_mutex_unlock(&w->mu);
	join_uploaders(w);
	if (w->failed)
		return st_err_set(err, w->err.code, "%s", w->err.msg);
	/* Packs are durable before the index that names them is written, and so on. */
	if ((rc = st_store_sync(w->r->store, err)) < 0)
		return rc;
	(void)pthread_mutex_lock(&w->r->mu);
	rc = write_index(w->r, err);
	(void)pthread_mutex_unlock(&w->r->mu);
	if (rc == 0)
		rc = st_store_sync(w->r->store, err);
	return rc;
}

void st_repo_writer_get_stats(struct st_repo_writer_stats *out, struct st_repo_writer *w)
{
	(void)pthread_mutex_lock(&w->mu);
	*out = w->stats;
	(void)pthread_mutex_unlock(&w->mu);
}

void st_repo_writer_free(struct st_repo_writer *w)
{
	if (w == NULL)
		return;
	if (w->nworkers > 0 || w->nuploaders > 0) {
		struct st_err e = ST_ERR_INIT;

		(void)st_err_set(&e, ST_EINTERNAL, "writer stopped");
		writer_fail(w, &e);
		writer_stop(w);
		join_uploaders(w);
	}
	for (size_t i = 0; i < w->qn; i++) {
		const struct job *j = &w->q[(w->qhead + i) % QUEUE_SLOTS];

		if (j->seg == NULL)
			big_free((void *)(uintptr_t)j->data, j->len);
	}
	pack_free(w, w->cur);
	pack_free(w, w->handoff);
	for (unsigned i = 0; i < w->nspare; i++)
		big_free(w->spare[i], PACK_ALLOC);
	/* Segments still held by the caller are released with the writer. */
	for (size_t i = 0; i < SEG_COUNT; i++)
		big_free(w->segs[i].data, ST_REPO_SEG_SIZE);
	free(w->ids);
	(void)pthread_mutex_destroy(&w->mu);
	(void)pthread_mutex_destroy(&w->pack_mu);
	(void)pthread_cond_destroy(&w->cv_job);
	(void)pthread_cond_destroy(&w->cv_space);
	(void)pthread_cond_destroy(&w->cv_pack);
	(void)pthread_cond_destroy(&w->cv_taken);
	(void)pthread_cond_destroy(&w->cv_seg);
	(void)pthread_cond_destroy(&w->cv_idle);
	free(w);
}

/* ---------- snapshots ---------- */

void st_repo_snapshot_dispose(struct st_repo_snapshot *s)
{
	free(s->tree);
	s->tree = NULL;
	s->ntree = 0;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	(void)snprintf(dst, cap, "%s", src != NULL ? src : "");
}

int st_repo_snapshot_save(struct st_repo *r, struct st_repo_snapshot *s, struct st_err *err)
{
	struct json_object *o = json_object_new_object();
	struct json_object *tree = json_object_new_array();
	uint8_t rnd[ST_REPO_ID_LEN];
	uint8_t *sealed = NULL;
	size_t slen = 0;
	size_t jl = 0;
	const char *js;
	char key[128];
	int rc = ST_EINTERNAL;

	if (o == NULL || tree == NULL) {
		json_object_put(o);
		json_object_put(tree);
		return ST_ENOMEM;
	}
	for (size_t i = 0; i < s->ntree; i++) {
		char hex[2 * ST_REPO_ID_LEN + 1];

		st_repo_hex(hex, s->tree[i], ST_REPO_ID_LEN);
		json_object_array_add(tree, json_object_new_string(hex));
	}
	json_object_object_add(o, "time", json_object_new_int64(s->time));
	json_object_object_add(o, "time_ns", json_object_new_int64(s->time_ns));
	st_json_add_str(o, "host", s->host);
	st_json_add_str(o, "tag", s->tag);
	st_json_add_str(o, "path", s->path);
	json_object_object_add(o, "files", json_object_new_int64((int64_t)s->files));
	json_object_object_add(o, "bytes", json_object_new_int64((int64_t)s->bytes));
	json_object_object_add(o, "bytes_new", json_object_new_int64((int64_t)s->bytes_new));
	json_object_object_add(o, "bytes_stored", json_object_new_int64((int64_t)s->bytes_stored));
	json_object_object_add(o, "tree", tree);
	js = st_json_to_string(o, &jl);
	sealed = seal_obj(&slen, r, "snapshot", js, jl);
	if (sealed == NULL || random_bytes(rnd, sizeof(rnd)) < 0) {
		rc = st_err_set(err, ST_EINTERNAL, "cannot seal the snapshot");
		goto out;
	}
	st_repo_hex(s->id, rnd, sizeof(rnd));
	(void)snprintf(key, sizeof(key), "snapshots/%s", s->id);
	if ((rc = st_store_put_mem(r->store, key, sealed, slen, true, err)) < 0 ||
	    (rc = st_store_sync(r->store, err)) < 0)
		goto out;
	rc = 0;
out:
	free(sealed);
	json_object_put(o);
	return rc;
}

static int parse_snapshot(struct st_repo_snapshot *s, struct st_repo *r, const char *key,
                          const char *data, size_t len, struct st_err *err)
{
	uint8_t *plain = NULL;
	size_t plen = 0;
	struct json_object *o = NULL;
	struct json_object *tree;
	int rc = ST_EPROTO;

	memset(s, 0, sizeof(*s));
	if (unseal_obj(&plain, &plen, r, "snapshot", data, len) < 0) {
		rc = st_err_set(err, ST_EPROTO, "%s: fails to authenticate", key);
		goto out;
	}
	if ((rc = st_json_parse(&o, (const char *)plain, plen, ST_REPO_SNAPSHOT_MAX, key, err)) < 0)
		goto out;
	copy_str(s->id, sizeof(s->id), strrchr(key, '/') + 1);
	s->time = jint(o, "time");
	s->time_ns = (int32_t)(jint(o, "time_ns") > 0 ? jint(o, "time_ns") % 1000000000 : 0);
	copy_str(s->host, sizeof(s->host), st_json_get_str(o, "host"));
	copy_str(s->tag, sizeof(s->tag), st_json_get_str(o, "tag"));
	copy_str(s->path, sizeof(s->path), st_json_get_str(o, "path"));
	s->files = (uint64_t)jint(o, "files");
	s->bytes = (uint64_t)jint(o, "bytes");
	s->bytes_new = (uint64_t)jint(o, "bytes_new");
	s->bytes_stored = (uint64_t)jint(o, "bytes_stored");
	tree = st_json_get_arr(o, "tree");
	if (tree == NULL) {
		rc = st_err_set(err, ST_EPROTO, "%s: no tree", key);
		goto out;
	}
	s->ntree = json_object_array_length(tree);
	s->tree = st_xcalloc(s->ntree + 1, ST_REPO_ID_LEN);
	for (size_t i = 0; i < s->ntree; i++) {
		const char *h = json_object_get_string(json_object_array_get_idx(tree, i));

		if (unhex(s->tree[i], ST_REPO_ID_LEN, h) < 0) {
			rc = st_err_set(err, ST_EPROTO, "%s: bad tree id", key);
			goto out;
		}
	}
	rc = 0;
out:
	if (rc < 0)
		st_repo_snapshot_dispose(s);
	json_object_put(o);
	free(plain);
	return rc;
}

static int load_snapshot_key(struct st_repo_snapshot *out, struct st_repo *r, const char *key,
                             struct st_err *err)
{
	char *data = NULL;
	size_t len = 0;
	int rc;

	if ((rc = st_store_get_mem(&data, &len, r->store, key, ST_REPO_SNAPSHOT_MAX, err)) < 0)
		return rc;
	rc = parse_snapshot(out, r, key, data, len, err);
	free(data);
	return rc;
}

struct snap_keys {
	char **keys;
	size_t n;
};

static int collect_snap(const char *key, uint64_t size, void *payload)
{
	struct snap_keys *k = payload;

	(void)size;
	k->keys = st_xrealloc(k->keys, (k->n + 1) * sizeof(char *));
	k->keys[k->n++] = st_xstrdup(key);
	return 0;
}

static void snap_keys_dispose(struct snap_keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->keys[i]);
	free(k->keys);
}

static int cmp_snap_time(const void *a, const void *b)
{
	const struct st_repo_snapshot *x = a;
	const struct st_repo_snapshot *y = b;

	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	/* Two backups can end in the same second: "latest" must still be the later one. */
	if (x->time_ns != y->time_ns)
		return x->time_ns < y->time_ns ? -1 : 1;
	return strcmp(x->id, y->id);
}

/* Loads every snapshot (descriptions only; the tree ids are small) sorted by time. */
static int load_all(struct st_repo_snapshot **out, size_t *n_out, struct st_repo *r,
                    struct st_err *err)
{
	struct snap_keys k = { NULL, 0 };
	struct st_repo_snapshot *v = NULL;
	size_t n = 0;
	int rc;

	*out = NULL;
	*n_out = 0;
	if ((rc = st_store_list(r->store, "snapshots/", collect_snap, &k, err)) < 0)
		goto out;
	v = st_xcalloc(k.n + 1, sizeof(*v));
	for (size_t i = 0; i < k.n; i++) {
		if ((rc = load_snapshot_key(&v[n], r, k.keys[i], err)) < 0)
			goto out;
		n++;
	}
	qsort(v, n, sizeof(*v), cmp_snap_time);
	*out = v;
	*n_out = n;
	v = NULL;
	rc = 0;
out:
	if (v != NULL) {
		for (size_t i = 0; i < n; i++)
			st_repo_snapshot_dispose(&v[i]);
		free(v);
	}
	snap_keys_dispose(&k);
	return rc;
}

static void free_all(struct st_repo_snapshot *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		st_repo_snapshot_dispose(&v[i]);
	free(v);
}

int st_repo_snapshot_foreach(struct st_repo *r,
                             int (*cb)(const struct st_repo_snapshot *s, void *payload),
                             void *payload, struct st_err *err)
{
	struct st_repo_snapshot *v = NULL;
	size_t n = 0;
	int rc;

	if ((rc = load_all(&v, &n, r, err)) < 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = cb(&v[i], payload);
	free_all(v, n);
	return rc;
}

int st_repo_snapshot_load(struct st_repo_snapshot *out, struct st_repo *r, const char *which,
                          struct st_err *err)
{
	struct st_repo_snapshot *v = NULL;
	size_t n = 0;
	size_t hit = SIZE_MAX;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = load_all(&v, &n, r, err)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(which, "latest") == 0 ||
		    (which[0] != '\0' && strncmp(v[i].id, which, strlen(which)) == 0)) {
			if (hit != SIZE_MAX && strcmp(which, "latest") != 0) {
				rc = st_err_set(err, ST_EINVAL, "snapshot '%s' is ambiguous",
				                which);
				goto out;
			}
			hit = i;
		}
	}
	if (hit == SIZE_MAX) {
		rc = st_err_set(err, ST_ENOTFOUND, "no snapshot '%s'", which);
		goto out;
	}
	*out = v[hit];
	v[hit].tree = NULL; /* transferred */
	rc = 0;
out:
	free_all(v, n);
	return rc;
}

int st_repo_snapshot_delete(struct st_repo *r, const char *id, struct st_err *err)
{
	char key[128];

	if (strlen(id) != 2 * ST_REPO_ID_LEN)
		return st_err_set(err, ST_EINVAL, "snapshot id '%s' is not a full id", id);
	(void)snprintf(key, sizeof(key), "snapshots/%s", id);
	return st_store_delete(r->store, key, err);
}

int st_repo_tree_read(struct st_repo *r, const struct st_repo_snapshot *s,
                      int (*feed)(const void *data, size_t n, void *payload), void *payload,
                      struct st_err *err)
{
	struct st_repo_reader *rd = st_repo_reader_new();
	int rc = 0;

	if (rd == NULL)
		return ST_ENOMEM;
	for (size_t i = 0; i < s->ntree && rc == 0; i++) {
		uint8_t *data = NULL;
		size_t len = 0;

		if ((rc = st_repo_read_chunk(&data, &len, r, rd, s->tree[i], err)) < 0) {
			st_err_prefix(err, "snapshot %.8s: manifest", s->id);
			break;
		}
		rc = feed(data, len, payload);
		free(data);
	}
	st_repo_reader_free(rd);
	return rc;
}

/* ---------- walking the chunks a snapshot references ---------- */

struct walk_ctx {
	struct st_tree_decoder dec;
	void (*cb)(const uint8_t *id, const char *path, void *payload);
	void *payload;
	char path[ST_TREE_PATH_MAX + 1];
};

static int walk_entry(const struct st_tree_entry *e, void *payload)
{
	struct walk_ctx *w = payload;

	copy_str(w->path, sizeof(w->path), e->path);
	return 0;
}

static int walk_chunks(const struct st_tree_chunk *c, size_t n, void *payload)
{
	struct walk_ctx *w = payload;

	for (size_t i = 0; i < n; i++)
		w->cb(c[i].id, w->path, w->payload);
	return 0;
}

static int walk_feed(const void *data, size_t n, void *payload)
{
	struct walk_ctx *w = payload;
	const struct st_tree_visitor v = { walk_entry, walk_chunks, w };

	return st_tree_decoder_feed(&w->dec, data, n, &v);
}

int st_repo_snapshot_walk_chunks(struct st_repo *r, const struct st_repo_snapshot *s,
                                 void (*cb)(const uint8_t id[ST_REPO_ID_LEN], const char *path,
                                            void *payload),
                                 void *payload, struct st_err *err)
{
	struct walk_ctx *w = st_xcalloc(1, sizeof(*w));
	int rc;

	w->cb = cb;
	w->payload = payload;
	st_tree_decoder_init(&w->dec);
	for (size_t i = 0; i < s->ntree; i++)
		cb(s->tree[i], "(snapshot manifest)", payload);
	rc = st_repo_tree_read(r, s, walk_feed, w, err);
	if (rc == ST_EPROTO && err != NULL && err->code == 0)
		rc = st_err_set(err, rc, "snapshot %.8s: malformed manifest", s->id);
	if (rc == 0 && st_tree_decoder_finish(&w->dec) < 0)
		rc = st_err_set(err, ST_EPROTO, "snapshot %.8s: manifest ends mid-record", s->id);
	st_tree_decoder_dispose(&w->dec);
	free(w);
	return rc;
}

/* ---------- locks ---------- */

struct st_repo_lock {
	struct st_repo *r;
	char key[128];
	enum st_repo_lock_kind kind;
	int64_t written;
};

static int put_lock(struct st_repo_lock *l, struct st_err *err)
{
	char host[256] = "";
	char body[512];
	int n;

	(void)gethostname(host, sizeof(host) - 1);
	l->written = (int64_t)time(NULL);
	n = snprintf(body, sizeof(body),
	             "{\"kind\":\"%s\",\"host\":\"%.200s\",\"pid\":%ld,\"time\":%lld}",
	             l->kind == ST_REPO_LOCK_GC ? "gc" : "backup", host, (long)getpid(),
	             (long long)l->written);
	return st_store_put_mem(l->r->store, l->key, body, (size_t)n, false, err);
}

struct lock_scan {
	struct st_repo *r;
	const char *own;
	enum st_repo_lock_kind kind;
	char conflict[512];
};

static int scan_lock(const char *key, uint64_t size, void *payload)
{
	struct lock_scan *s = payload;
	char *data = NULL;
	size_t len = 0;
	struct json_object *o = NULL;
	const char *kind;
	int64_t t;

	(void)size;
	if (strcmp(key, s->own) == 0 ||
	    st_store_get_mem(&data, &len, s->r->store, key, LOCK_MAX, NULL) < 0)
		return 0;
	if (st_json_parse(&o, data, len, LOCK_MAX, "lock", NULL) == 0) {
		kind = st_json_get_str(o, "kind");
		t = jint(o, "time");
		if (kind != NULL && t > (int64_t)time(NULL) - ST_REPO_LOCK_STALE &&
		    (s->kind == ST_REPO_LOCK_GC || strcmp(kind, "gc") == 0))
			(void)snprintf(s->conflict, sizeof(s->conflict),
			               "%s by %s (host %.100s, pid %lld, %lld s ago)", key, kind,
			               st_json_get_str(o, "host") ? st_json_get_str(o, "host")
			                                          : "?",
			               (long long)jint(o, "pid"), (long long)(time(NULL) - t));
	}
	json_object_put(o);
	free(data);
	return 0;
}

int st_repo_lock(struct st_repo_lock **out, struct st_repo *r, enum st_repo_lock_kind kind,
                 struct st_err *err)
{
	struct st_repo_lock *l = st_xcalloc(1, sizeof(*l));
	struct lock_scan scan = { r, l->key, kind, "" };
	uint8_t rnd[16];
	char hex[33];
	int rc;

	*out = NULL;
	l->r = r;
	l->kind = kind;
	if (random_bytes(rnd, sizeof(rnd)) < 0) {
		free(l);
		return ST_EINTERNAL;
	}
	st_repo_hex(hex, rnd, sizeof(rnd));
	(void)snprintf(l->key, sizeof(l->key), "locks/%s", hex);
	/* Write first, then look: of two racing parties at least one sees the other. */
	if ((rc = put_lock(l, err)) < 0) {
		free(l);
		return rc;
	}
	if ((rc = st_store_list(r->store, "locks/", scan_lock, &scan, err)) < 0 ||
	    scan.conflict[0] != '\0') {
		if (rc == 0)
			rc = st_err_set(err, ST_EINVAL, "repository is locked: %s", scan.conflict);
		st_repo_unlock(l);
		return rc;
	}
	*out = l;
	return 0;
}

int st_repo_lock_refresh(struct st_repo_lock *l, struct st_err *err)
{
	if (l == NULL || (int64_t)time(NULL) - l->written < ST_REPO_LOCK_REFRESH)
		return 0;
	return put_lock(l, err);
}

void st_repo_unlock(struct st_repo_lock *l)
{
	struct st_err err = ST_ERR_INIT;

	if (l == NULL)
		return;
	if (st_store_delete(l->r->store, l->key, &err) < 0)
		st_log_warn("repository: cannot remove lock %s: %s", l->key, st_err_text(&err));
	free(l);
}

/* ---------- id sets (for check and gc) ---------- */

struct idset {
	uint8_t (*ids)[ST_REPO_ID_LEN];
	uint8_t *used;
	size_t cap;
	size_t n;
};

static size_t idset_slot(const struct idset *s, const uint8_t *id)
{
	size_t i = (size_t)le_get(id, 8) & (s->cap - 1);

	while (s->used[i] && memcmp(s->ids[i], id, ST_REPO_ID_LEN) != 0)
		i = (i + 1) & (s->cap - 1);
	return i;
}

static void idset_add(struct idset *s, const uint8_t *id)
{
	size_t i;

	if ((s->n + 1) * 2 > s->cap) {
		struct idset g = { NULL, NULL, s->cap ? s->cap * 2 : 1024, 0 };

		g.ids = st_xcalloc(g.cap, ST_REPO_ID_LEN);
		g.used = st_xcalloc(g.cap, 1);
		for (size_t k = 0; k < s->cap; k++)
			if (s->used[k])
				idset_add(&g, s->ids[k]);
		free(s->ids);
		free(s->used);
		*s = g;
	}
	i = idset_slot(s, id);
	if (!s->used[i]) {
		memcpy(s->ids[i], id, ST_REPO_ID_LEN);
		s->used[i] = 1;
		s->n++;
	}
}

static bool idset_has(const struct idset *s, const uint8_t *id)
{
	return s->cap > 0 && s->used[idset_slot(s, id)];
}

static void idset_dispose(struct idset *s)
{
	free(s->ids);
	free(s->used);
}

/* ---------- check ---------- */

struct bad_chunk {
	uint8_t id[ST_REPO_ID_LEN];
	char why[ST_ERR_MSG_SIZE];
};

struct check_ctx {
	struct st_repo *r;
	struct st_repo_reader *rd;
	const uint8_t *buf;
	size_t len;
	const char *key;
	struct bad_chunk *bad;
	size_t nbad;
	struct idset badset;
	struct idset seen;
	uint64_t blobs;
	const char *snap;
	st_repo_bad_cb cb;
	void *payload;
	uint64_t missing;
	uint64_t referenced_bad;
};

static void note_bad(struct check_ctx *c, const uint8_t *id, const char *why)
{
	if (idset_has(&c->badset, id))
		return;
	idset_add(&c->badset, id);
	c->bad = st_xrealloc(c->bad, (c->nbad + 1) * sizeof(*c->bad));
	memcpy(c->bad[c->nbad].id, id, ST_REPO_ID_LEN);
	copy_str(c->bad[c->nbad].why, sizeof(c->bad[c->nbad].why), why);
	c->nbad++;
}

static int check_entry(const uint8_t pack[ST_REPO_ID_LEN], const uint8_t id[ST_REPO_ID_LEN],
                       uint32_t off, uint32_t len, uint32_t rawlen, void *payload)
{
	struct check_ctx *c = payload;
	struct st_err err = ST_ERR_INIT;
	uint8_t *data = NULL;
	size_t dlen = 0;

	(void)pack;
	c->blobs++;
	idset_add(&c->seen, id);
	if ((uint64_t)off + len > c->len) {
		(void)st_err_set(&err, ST_EPROTO, "blob past the end of pack %s", c->key);
	} else if (st_repo_open_blob(&data, &dlen, c->r, c->rd, id, c->buf + off, len, rawlen,
	                             &err) < 0) {
		st_err_prefix(&err, "pack %s offset %u", c->key, off);
	}
	free(data);
	if (err.code != 0)
		note_bad(c, id, err.msg);
	return 0;
}

static int check_pack(struct check_ctx *c, const char *key, const uint8_t *pack, struct st_err *err)
{
	char *buf = NULL;
	size_t len = 0;
	uint8_t *plain = NULL;
	size_t plen = 0;
	uint32_t tlen;
	char label[2 * ST_REPO_ID_LEN + 1];
	int rc;

	rc = st_store_get_mem(&buf, &len, c->r->store, key, ST_REPO_PACK_MAX, err);
	if (rc < 0)
		return rc;
	c->buf = (const uint8_t *)buf;
	c->len = len;
	c->key = key;
	tlen = len >= 12 ? (uint32_t)le_get((const uint8_t *)buf + len - 12, 4) : 0;
	st_repo_hex(label, pack, ST_REPO_ID_LEN);
	if (len < 20 + SEAL_EXTRA || memcmp(buf, PACK_MAGIC, 8) != 0 ||
	    memcmp(buf + len - 8, PACK_FOOT, 8) != 0 || tlen > len - 20 ||
	    unseal_obj(&plain, &plen, c->r, label, buf + len - 12 - tlen, tlen) < 0 ||
	    st_repo_index_decode(plain, plen, pack, check_entry, c) < 0) {
		/* The trailer is damaged: fall back to the repository index for this pack. */
		st_log_warn("check: %s: pack header or trailing index is damaged", key);
		rc = 1;
	}
	free(plain);
	free(buf);
	return rc;
}

static void check_ref(const uint8_t id[ST_REPO_ID_LEN], const char *path, void *payload)
{
	struct check_ctx *c = payload;
	char why[ST_ERR_MSG_SIZE + 600];
	char hex[2 * ST_REPO_ID_LEN + 1];

	if (idset_has(&c->badset, id)) {
		for (size_t i = 0; i < c->nbad; i++)
			if (memcmp(c->bad[i].id, id, ST_REPO_ID_LEN) == 0)
				(void)snprintf(why, sizeof(why), "snapshot %.8s file '%.400s': %s",
				               c->snap, path, c->bad[i].why);
		c->referenced_bad++;
		c->cb(id, why, c->payload);
	} else if (!idset_has(&c->seen, id)) {
		st_repo_hex(hex, id, ST_REPO_ID_LEN);
		(void)snprintf(why, sizeof(why), "snapshot %.8s file '%.400s': chunk %s is missing",
		               c->snap, path, hex);
		c->missing++;
		c->cb(id, why, c->payload);
	}
}

static int check_snap(const struct st_repo_snapshot *s, void *payload)
{
	struct check_ctx *c = payload;
	struct st_err err = ST_ERR_INIT;

	c->snap = s->id;
	if (st_repo_snapshot_walk_chunks(c->r, s, check_ref, c, &err) < 0) {
		c->missing++;
		c->cb(s->tree[0], err.msg, c->payload);
	}
	return 0;
}

int st_repo_check(struct st_repo_check_report *out, struct st_repo *r, st_repo_bad_cb bad,
                  void *payload, struct st_err *err)
{
	struct pack_list l = { 0 };
	struct check_ctx c;
	int rc;

	memset(out, 0, sizeof(*out));
	memset(&c, 0, sizeof(c));
	c.r = r;
	c.cb = bad;
	c.payload = payload;
	c.rd = st_repo_reader_new();
	if (c.rd == NULL)
		return ST_ENOMEM;
	if ((rc = st_store_list(r->store, "data/", collect_pack, &l, err)) < 0)
		goto out;
	for (size_t i = 0; i < l.n; i++) {
		uint8_t id[ST_REPO_ID_LEN];

		if (pack_id_of_key(id, l.keys[i]) < 0)
			continue;
		out->packs++;
		if ((rc = check_pack(&c, l.keys[i], id, err)) < 0)
			goto out;
	}
	/* Every indexed chunk must have been seen in a pack trailer and opened there. */
	for (size_t i = 0; i < r->tab_cap; i++) {
		if (r->tab[i].used && !idset_has(&c.seen, r->tab[i].id))
			note_bad(&c, r->tab[i].id, "indexed but its pack is missing or damaged");
	}
	rc = st_repo_snapshot_foreach(r, check_snap, &c, err);
	if (rc < 0)
		goto out;
	/* Bad chunks no snapshot references are still reported. */
	out->blobs = c.blobs;
	out->bad = c.nbad;
	out->missing = c.missing;
	if (c.referenced_bad < c.nbad) {
		for (size_t i = 0; i < c.nbad; i++)
			bad(c.bad[i].id, c.bad[i].why, payload);
	}
	rc = 0;
out:
	st_repo_reader_free(c.rd);
	idset_dispose(&c.badset);
	idset_dispose(&c.seen);
	free(c.bad);
	pack_list_dispose(&l);
	return rc;
}

/* ---------- gc ---------- */

static void mark_ref(const uint8_t id[ST_REPO_ID_LEN], const char *path, void *payload)
{
	(void)path;
	idset_add(payload, id);
}

struct mark_ctx {
	struct st_repo *r;
	struct idset *marks;
	struct st_err *err;
};

static int mark_snap(const struct st_repo_snapshot *s, void *payload)
{
	struct mark_ctx *m = payload;

	return st_repo_snapshot_walk_chunks(m->r, s, mark_ref, m->marks, m->err);
}

static int64_t pack_time(const uint8_t *id)
{
	return (int64_t)(((uint32_t)id[0] << 24) | ((uint32_t)id[1] << 16) |
	                 ((uint32_t)id[2] << 8) | id[3]);
}

int st_repo_gc(struct st_repo_gc_report *out, struct st_repo *r, int64_t grace_s, bool dry_run,
               struct st_err *err)
{
	struct st_repo_lock *lock = NULL;
	struct idset marks = { 0 };
	struct mark_ctx m = { r, &marks, err };
	struct pack_list l = { 0 };
	bool *keep = NULL;
	bool *refd = NULL;
	char **old = NULL;
	size_t nold = 0;
	int64_t now = (int64_t)time(NULL);
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = st_repo_lock(&lock, r, ST_REPO_LOCK_GC, err)) < 0)
		return rc;
	if ((rc = st_repo_snapshot_foreach(r, mark_snap, &m, err)) < 0)
		goto out;
	refd = st_xcalloc(r->npacks + 1, sizeof(bool));
	for (size_t i = 0; i < r->tab_cap; i++)
		if (r->tab[i].used && r->tab[i].pack != PENDING && idset_has(&marks, r->tab[i].id))
			refd[r->tab[i].pack] = true;
	if ((rc = st_store_list(r->store, "data/", collect_pack, &l, err)) < 0)
		goto out;
	keep = st_xcalloc(l.n + 1, sizeof(bool));
	for (size_t i = 0; i < r->npacks; i++)
		r->packs[i].fresh = false;
	for (size_t i = 0; i < l.n; i++) {
		uint8_t id[ST_REPO_ID_LEN];
		int p;

		if (pack_id_of_key(id, l.keys[i]) < 0) {
			keep[i] = true;
			continue;
		}
		p = pack_find(r, id);
		if (p >= 0 && refd[p]) {
			keep[i] = true;
			out->packs_kept++;
		} else if (now - pack_time(id) < grace_s) {
			keep[i] = true;
			out->packs_young++;
		} else {
			out->packs_deleted++;
			out->bytes_freed += l.sizes[i];
		}
		if (keep[i] && p >= 0)
			r->packs[p].fresh = true; /* goes into the rewritten index */
	}
	if (dry_run) {
		rc = 0;
		goto out;
	}
	/* New index first, then drop the old ones, then the packs: each step is crash-safe. */
	old = r->index_keys;
	nold = r->nindex;
	r->index_keys = NULL;
	r->nindex = 0;
	if ((rc = write_index(r, err)) < 0 || (rc = st_store_sync(r->store, err)) < 0)
		goto out;
	for (size_t i = 0; i < nold; i++)
		if ((rc = st_store_delete(r->store, old[i], err)) < 0)
			goto out;
	if ((rc = st_store_sync(r->store, err)) < 0)
		goto out;
	for (size_t i = 0; i < l.n; i++)
		if (!keep[i] && (rc = st_store_delete(r->store, l.keys[i], err)) < 0)
			goto out;
	rc = st_store_sync(r->store, err);
out:
	for (size_t i = 0; i < nold; i++)
		free(old[i]);
	free(old);
	free(keep);
	free(refd);
	pack_list_dispose(&l);
	idset_dispose(&marks);
	st_repo_unlock(lock);
	return rc;
}
