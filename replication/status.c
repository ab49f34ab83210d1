/* Subtree status rows: acceptance rules, relaying, JSON rendering. */
#include "replication/status.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "proto/version.h"
#include "replication/child_link.h"
#include "replication/parent_link.h"
#include "replication/site.h"
#include "replication/synchist.h"
#include "common/conf.h"
#include "common/errcode.h"
#include "common/log.h"
#include "replication/rowsig.h"

status_table_t *status_table_new(void)
{
	status_table_t *t = calloc(1, sizeof(status_table_t));
	if (t && (t->index = calloc(STATUS_CODES, sizeof(*t->index))) == NULL) {
		free(t);
		return NULL;
	}
	return t;
}

int status_code_index(const char *site)
{
	if (!conf_site_code_valid(site))
		return -1;
	int k = 0;
	for (int i = 0; i < 3; i++)
		k = k * 36 + (isdigit((unsigned char)site[i]) ? site[i] - '0' : site[i] - 'A' + 10);
	return k;
}

/* A set of site codes, one bit each (STATUS_CODES / 8 bytes). */
static uint8_t *code_set_new(void)
{
	return calloc(STATUS_CODES / 8 + 1, 1);
}

static void code_set_add(uint8_t *set, const char *site)
{
	int k = status_code_index(site);
	if (k >= 0)
		set[k / 8] |= (uint8_t)(1u << (k % 8));
}

static bool code_set_has(const uint8_t *set, const char *site)
{
	int k = status_code_index(site);
	return set && k >= 0 && (set[k / 8] & (1u << (k % 8)));
}

static void row_free(status_row_t *r)
{
	sitesync__site_status__free_unpacked(r->row, NULL);
	rowsig_signed_clear(&r->signed_row);
	free(r);
}

/* An owned copy of the signed bytes, for relaying. */
static int signed_copy(Sitesync__SignedRow *dst, const Sitesync__SignedRow *src)
{
	sitesync__signed_row__init(dst);
	dst->row.data = malloc(src->row.len ? src->row.len : 1);
	dst->signature.data = malloc(src->signature.len ? src->signature.len : 1);
	dst->cert.data = malloc(src->cert.len ? src->cert.len : 1);
	if (!dst->row.data || !dst->signature.data || !dst->cert.data) {
		rowsig_signed_clear(dst);
		return SS_ENOMEM;
	}
	memcpy(dst->row.data, src->row.data, src->row.len);
	dst->row.len = src->row.len;
	memcpy(dst->signature.data, src->signature.data, src->signature.len);
	dst->signature.len = src->signature.len;
	memcpy(dst->cert.data, src->cert.data, src->cert.len);
	dst->cert.len = src->cert.len;
	return SS_EOK;
}

void status_table_free(status_table_t *t)
{
	if (t == NULL)
		return;
	status_row_t *r = t->head;
	while (r) {
		status_row_t *next = r->next;
		row_free(r);
		r = next;
	}
	free(t->index);
	free(t);
}

void status_reached_note(status_reached_list_t *l, uint64_t v, int64_t at)
{
	if (v == 0 || (l->n > 0 && l->v[0].version == v))
		return;
	size_t n = l->n < STATUS_PROP_VERSIONS ? l->n : STATUS_PROP_VERSIONS - 1;
	memmove(&l->v[1], &l->v[0], n * sizeof(l->v[0]));
	l->v[0].version = v;
	l->v[0].at = at;
	l->n = n + 1;
}

status_row_t *status_table_find(status_table_t *t, const char *site)
{
	int k = status_code_index(site);
	return k >= 0 ? t->index[k] : NULL;
}

static Sitesync__SiteStatus *row_copy(const Sitesync__SiteStatus *src)
{
	size_t n = sitesync__site_status__get_packed_size(src);
	uint8_t *buf = malloc(n ? n : 1);
	if (buf == NULL)
		return NULL;
	sitesync__site_status__pack(src, buf);
	Sitesync__SiteStatus *dst = sitesync__site_status__unpack(NULL, n, buf);
	free(buf);
	return dst;
}

static int status_forget_absent(site_t *d, const char *via, const uint8_t *keep);

/* Whether two rows say the same but for when they were said: a report
 * that only refreshes these need not travel up at once. */
static bool row_same_but_times(const Sitesync__SiteStatus *a, const Sitesync__SiteStatus *b)
{
	if (a == NULL || b == NULL)
		return false;
	Sitesync__SiteStatus x = *a;     /* shallow: only packed */
	x.reported_at = b->reported_at;
	x.link_last_seen = b->link_last_seen;
	size_t la = sitesync__site_status__get_packed_size(&x);
	if (la != sitesync__site_status__get_packed_size(b))
		return false;
	uint8_t *pa = malloc(2 * la + 1);
	if (pa == NULL)
		return false;
	sitesync__site_status__pack(&x, pa);
	sitesync__site_status__pack(b, pa + la);
	bool same = memcmp(pa, pa + la, la) == 0;
	free(pa);
	return same;
}

/* The stored row of a signed row carrying the very bytes stored (row,
 * signature and certificate): verified when it was stored. */
static status_row_t *signed_known(site_t *d, const Sitesync__SignedRow *in)
{
	Sitesync__SiteStatus *row = sitesync__site_status__unpack(NULL, in->row.len, in->row.data);
	status_row_t *r = row ? status_table_find(d->subtree, row->site) : NULL;
	if (row)
		sitesync__site_status__free_unpacked(row, NULL);
	if (r == NULL)
		return NULL;
	const Sitesync__SignedRow *s = &r->signed_row;
	bool same = s->row.len == in->row.len && s->signature.len == in->signature.len &&
	            s->cert.len == in->cert.len && s->row.len > 0 &&
	            memcmp(s->row.data, in->row.data, in->row.len) == 0 &&
	            memcmp(s->signature.data, in->signature.data, in->signature.len) == 0 &&
	            memcmp(s->cert.data, in->cert.data, in->cert.len) == 0;
	return same ? r : NULL;
}

/* Whether row \a r carried message \a m already (same id and time); by
 * identity, not by time order, so a clock set back at that site loses
 * nothing. */
static bool row_has_message(const Sitesync__SiteStatus *r, const Sitesync__SiteMessage *m)
{
	for (size_t i = 0; r && i < r->n_messages; i++)
		if (r->messages[i] && r->messages[i]->at_us == m->at_us &&
		    r->messages[i]->msg_id == m->msg_id)
			return true;
	return false;
}

/* A verified row's error messages that the row it replaces did not carry:
 * at most [status] relay_messages of them, each raised once (the history's
 * insert skips one recorded before our restart). The row is signed by its
 * site: what it says of itself is its own to say. */
static void status_take_messages(site_t *d, const Sitesync__SiteStatus *in,
                                 const Sitesync__SiteStatus *prev)
{
	size_t max = d->conf->relay_messages > 0 ? (size_t)d->conf->relay_messages : 0;
	size_t n = in->n_messages < max ? in->n_messages : max;
	/* Oldest first, so the history lists them in the order they happened. */
	for (size_t i = n; i-- > 0;) {
		const Sitesync__SiteMessage *m = in->messages[i];
		if (m == NULL || row_has_message(prev, m))
			continue;
		site_message_relayed(d, in->site, (int)m->msg_id, m->text, m->at_us);
	}
}

int status_accept_report(site_t *d, const char *child,
                         const Sitesync__StatusReport *rep, int *refused,
                         char first_refused[4], char *why, size_t whylen, bool *changed)
{
	*refused = 0;
	*changed = false;
	first_refused[0] = '\0';
	why[0] = '\0';
	int accepted = 0;
	bool is_signed = rep->n_signed_rows > 0;
	size_t n = is_signed ? rep->n_signed_rows : rep->n_rows;
	uint8_t *allowed = code_set_new();
	if (allowed == NULL)
		return 0;
	for (size_t i = 0; i < n; i++) {
		Sitesync__SiteStatus *in = NULL;
		char reason[160] = "";
		bool ok = true;
		/* Relays pass on the rows of every site below at each report:
		 * verify only those that changed since. */
		status_row_t *known = is_signed && d->rowsig_ok ?
		                      signed_known(d, rep->signed_rows[i]) : NULL;
		if (known) {
			in = row_copy(known->row);
		} else if (is_signed) {
			if (!d->rowsig_ok || rowsig_verify(&d->rowsig, rep->signed_rows[i], &in, reason,
			                                   sizeof(reason)) != SS_EOK) {
				if (!d->rowsig_ok)
					snprintf(reason, sizeof(reason), "this site cannot verify signed rows");
				ok = false;
			}
		} else {
			/* Protocol 1: no signatures, so only the child's own row counts. */
			in = row_copy(rep->rows[i]);
			if (i > 0) {
				snprintf(reason, sizeof(reason), "unsigned row for a site below the child");
				ok = false;
			}
		}
		if (ok && in == NULL) {
			snprintf(reason, sizeof(reason), "undecodable row");
			ok = false;
		}
		if (ok) {
			/* The child's own row must hang under this site: a child naming
			 * another parent would hide its subtree (an unknown parent) or
			 * move it under a sibling. */
			if (i == 0 && strcmp(in->site, child) == 0 &&
			    (in->parent == NULL || strcmp(in->parent, d->conf->site_code) != 0)) {
				snprintf(reason, sizeof(reason), "the child's row names parent '%.8s', not %s",
				         in->parent ? in->parent : "", d->conf->site_code);
				ok = false;
			} else if (i == 0)
				ok = strcmp(in->site, child) == 0;
			else
				ok = conf_site_code_valid(in->site) && in->parent &&
				     code_set_has(allowed, in->parent) &&
				     !code_set_has(allowed, in->site);
			if (!ok && reason[0] == '\0')
				snprintf(reason, sizeof(reason), "site outside the child's subtree");
		}
		/* Our own row and rows another child owns are not this child's to give:
		 * a site stays with its child while that child is connected or was
		 * heard from recently, so a brief outage of P01 does not let P02 take
		 * over P01's subtree. */
		status_row_t *old = ok ? status_table_find(d->subtree, in->site) : NULL;
		if (ok && strcmp(in->site, d->conf->site_code) == 0)
			ok = false;
		if (ok && old && strcmp(old->via, child) != 0 &&
		    (child_link_connected(d, old->via) ||
		     time(NULL) - old->received_at < d->conf->stale_seconds)) {
			snprintf(reason, sizeof(reason), "site reported through another child");
			ok = false;
		}
		if (!ok) {
			if (*refused == 0) {
				snprintf(first_refused, 4, "%.3s", in && in->site ? in->site : "?");
				snprintf(why, whylen, "%s", reason[0] ? reason : "not allowed");
			}
			(*refused)++;
			if (in)
				sitesync__site_status__free_unpacked(in, NULL);
			continue;
		}
		/* Its error messages newer than those of the row it replaces are
		 * recorded here (an ancestor's history); the row keeps them. */
		status_take_messages(d, in, old ? old->row : NULL);
		bool fresh = !(known != NULL && old == known);
		if (!fresh) {
			/* The same signed bytes: only who relayed it and when. */
			sitesync__site_status__free_unpacked(in, NULL);
			in = old->row;
		} else if (old == NULL) {
			old = calloc(1, sizeof(*old));
			if (old == NULL) {
				sitesync__site_status__free_unpacked(in, NULL);
				break;
			}
			snprintf(old->site, sizeof(old->site), "%s", in->site);
			old->next = d->subtree->head;
			d->subtree->head = old;
			d->subtree->index[status_code_index(in->site)] = old;
			*changed = true;
		} else {
			if (!row_same_but_times(in, old->row))
				*changed = true;
			sitesync__site_status__free_unpacked(old->row, NULL);
			rowsig_signed_clear(&old->signed_row);
		}
		if (fresh) {
			old->row = in;
			if (is_signed && signed_copy(&old->signed_row, rep->signed_rows[i]) != SS_EOK)
				sitesync__signed_row__init(&old->signed_row);
		}
		status_reached_note(&old->reached, in->catalog_version, in->version_reached_at);
		if (strcmp(old->via, child) != 0)
			*changed = true;
		snprintf(old->via, sizeof(old->via), "%s", child);
		old->received_at = time(NULL);
		code_set_add(allowed, in->site);
		accepted++;
	}
	if (*refused > 0)
		*changed = true;
	/* A report carries the child's whole subtree: a site it no longer
	 * lists was removed below (child remove there), so it goes here too,
	 * and from here up. Only a report taken whole proves an absence. */
	if (*refused == 0 && accepted > 0 && status_forget_absent(d, child, allowed) > 0)
		*changed = true;
	free(allowed);
	return accepted;
}

/* Drop the rows reported through `via` whose site is not in keep (NULL:
 * none kept); how many were dropped. */
static int status_forget_absent(site_t *d, const char *via, const uint8_t *keep)
{
	int dropped = 0;
	status_row_t **pp = &d->subtree->head;
	while (*pp) {
		status_row_t *r = *pp;
		if (strcmp(r->via, via) == 0 && !code_set_has(keep, r->site)) {
			log_info("site %s is no longer reported by child %s: dropped from the status view",
			         r->site, via);
			*pp = r->next;
			int k = status_code_index(r->site);
			if (k >= 0 && d->subtree->index[k] == r)
				d->subtree->index[k] = NULL;
			row_free(r);
			dropped++;
			continue;
		}
		pp = &r->next;
	}
	return dropped;
}

void status_forget_child(site_t *d, const char *child)
{
	status_forget_absent(d, child, NULL);
}

/* Our approved children whose link is down, in one block (pointers, then
 * the messages) that status_report_clear() frees; names point into
 * d->approved, valid while the report is built and sent. */
static void fill_children_down(site_t *d, Sitesync__SiteStatus *row)
{
	size_t n = 0;
	for (size_t i = 0; i < d->n_approved; i++)
		n += !child_link_connected(d, d->approved[i]);
	if (n == 0)
		return;
	void *block = calloc(n, sizeof(Sitesync__ChildDown *) + sizeof(Sitesync__ChildDown));
	if (block == NULL)
		return;
	Sitesync__ChildDown **ptrs = block;
	Sitesync__ChildDown *msgs = (Sitesync__ChildDown *)(ptrs + n);
	for (size_t i = 0; i < d->n_approved; i++) {
		if (child_link_connected(d, d->approved[i]))
			continue;
		Sitesync__ChildDown *c = &msgs[row->n_children_down];
		sitesync__child_down__init(c);
		c->site = d->approved[i];
		c->since = site_child_down_since(d, d->approved[i]);
		ptrs[row->n_children_down++] = c;
	}
	row->children_down = ptrs;
}

/* Our refused, not approved sites, one block as fill_children_down()'s. */
static void fill_pending(site_t *d, Sitesync__SiteStatus *row)
{
	size_t n = 0;
	for (size_t i = 0; i < d->n_pending; i++)
		n += !site_child_approved(d, d->pending[i].site);
	if (n == 0)
		return;
	void *block = calloc(n, sizeof(Sitesync__PendingChild *) + sizeof(Sitesync__PendingChild));
	if (block == NULL)
		return;
	Sitesync__PendingChild **ptrs = block;
	Sitesync__PendingChild *msgs = (Sitesync__PendingChild *)(ptrs + n);
	for (size_t i = 0; i < d->n_pending; i++) {
		const site_pending_t *e = &d->pending[i];
		if (site_child_approved(d, e->site))
			continue;
		Sitesync__PendingChild *c = &msgs[row->n_pending_children];
		sitesync__pending_child__init(c);
		c->site = (char *)e->site;
		c->address = (char *)e->addr;
		c->last_attempt = e->last;
		c->attempts = e->attempts;
		ptrs[row->n_pending_children++] = c;
	}
	row->pending_children = ptrs;
}

/* Our newest error messages, one block as fill_children_down()'s; the
 * texts point into d->relay. */
static void fill_messages(site_t *d, Sitesync__SiteStatus *row)
{
	size_t max = d->conf->relay_messages > 0 ? (size_t)d->conf->relay_messages : 0;
	size_t n = d->n_relay < max ? d->n_relay : max;
	if (n == 0)
		return;
	void *block = calloc(n, sizeof(Sitesync__SiteMessage *) + sizeof(Sitesync__SiteMessage));
	if (block == NULL)
		return;
	Sitesync__SiteMessage **ptrs = block;
	Sitesync__SiteMessage *msgs = (Sitesync__SiteMessage *)(ptrs + n);
	for (size_t i = 0; i < n; i++) {
		sitesync__site_message__init(&msgs[i]);
		msgs[i].msg_id = (uint32_t)d->relay[i].msg_id;
		msgs[i].at_us = d->relay[i].at_us;
		msgs[i].severity = "error";
		msgs[i].text = d->relay[i].text;
		ptrs[i] = &msgs[i];
	}
	row->messages = ptrs;
	row->n_messages = n;
}

void status_fill_self(site_t *d, Sitesync__SiteStatus *row)
{
	sitesync__site_status__init(row);
	const sync_status_t *s = &d->self;
	row->site = d->conf->site_code;
	/* The configured parent: the link admits no other, and it is set
	 * before the link's Hello names it. */
	row->parent = d->conf->parent_code ? d->conf->parent_code :
	              d->parent ? (char *)parent_link_site(d->parent) : "";
	if (conf_is_top(d->conf))
		/* Credentials in the URL stay in the config file. */
		row->sync_source = d->conf->upstream_url_shown ? d->conf->upstream_url_shown : "";
	else if (strcmp(d->conf->parent_mode, "disconnected") == 0)
		row->sync_source = "import";
	else
		row->sync_source = d->conf->parent_address ? d->conf->parent_address : "";
	row->state = s->state;
	row->last_sync_start = s->last_start;
	row->last_sync_end = s->last_end;
	row->last_error_code = s->last_error_code;
	row->last_error = (char *)s->last_error;
	row->catalog_version = d->version;
	row->parent_version = d->parent ? parent_link_version(d->parent) : d->version;
	if (conf_is_top(d->conf))
		row->link = SITESYNC__LINK_STATE__LINK_NONE;
	else if (d->parent == NULL)
		row->link = SITESYNC__LINK_STATE__LINK_DISCONNECTED;
	else
		row->link = parent_link_state(d->parent);
	row->link_last_seen = d->parent ? parent_link_last_seen(d->parent) : 0;
	row->added = s->added;
	row->changed = s->changed;
	row->removed = s->removed;
	row->expired = s->expired;
	row->software_version = SS_SOFTWARE_VERSION;
	row->next_retry = s->next_retry;
	row->consecutive_failures = s->consecutive_failures;
	row->cert_expires = d->cert_expires;
	row->reported_at = time(NULL);
	row->version_reached_at = d->version_at;
	row->bytes_received = s->bytes_received;
	row->progress_done = s->progress_done;
	row->progress_total = s->progress_total;
	row->behind_since = d->version < d->top_version ? s->behind_since : 0;
	row->top_version = d->top_version;
	row->last_sync_trigger = (char *)s->trigger;
	fill_children_down(d, row);
	fill_pending(d, row);
	fill_messages(d, row);
}

/* Test hook for the compromised-relay test: what a lying relay would do. */
static void status_forge(Sitesync__SignedRow *row)
{
	Sitesync__SiteStatus *r = sitesync__site_status__unpack(NULL, row->row.len, row->row.data);
	if (r == NULL)
		return;
	r->state = SITESYNC__SYNC_STATE__SYNC_SUCCEEDED;
	/* protobuf-c never frees its shared empty string. */
	if (r->last_error != protobuf_c_empty_string)
		free(r->last_error);
	r->last_error = (char *)protobuf_c_empty_string;
	r->last_error_code = 0;
	size_t n = sitesync__site_status__get_packed_size(r);
	uint8_t *buf = malloc(n ? n : 1);
	if (buf) {
		sitesync__site_status__pack(r, buf);
		free(row->row.data);
		row->row.data = buf;
		row->row.len = n;
	}
	sitesync__site_status__free_unpacked(r, NULL);
}

void status_report_build(site_t *d, Sitesync__StatusReport *rep, bool wire)
{
	sitesync__status_report__init(rep);
	size_t cap = 1;
	for (status_row_t *r = d->subtree->head; r; r = r->next)
		cap++;
	rep->rows = calloc(cap, sizeof(*rep->rows));
	Sitesync__SiteStatus *self = malloc(sizeof(*self));
	if (rep->rows == NULL || self == NULL) {
		free(rep->rows);
		free(self);
		rep->rows = NULL;
		return;
	}
	status_fill_self(d, self);
	rep->rows[rep->n_rows++] = self;
	status_row_t **order = calloc(cap, sizeof(*order));
	/* Each site's children in table order (first and last by parent code),
	 * so the walk below costs the rows, not rows x rows. */
	status_row_t **first = calloc(2 * (size_t)STATUS_CODES, sizeof(*first));
	status_row_t **last = first ? first + STATUS_CODES : NULL;
	for (status_row_t *r = d->subtree->head; first && r; r = r->next) {
		int k = r->row->parent ? status_code_index(r->row->parent) : -1;
		r->kid = NULL;
		if (k < 0)
			continue;
		if (last[k])
			last[k]->kid = r;
		else
			first[k] = r;
		last[k] = r;
	}
	/* Breadth-first from this site, so a parent always precedes its children. */
	for (size_t q = 0; order && first && q < rep->n_rows && rep->n_rows < cap; q++) {
		int k = status_code_index(rep->rows[q]->site);
		for (status_row_t *r = k >= 0 ? first[k] : NULL; r && rep->n_rows < cap; r = r->kid) {
			order[rep->n_rows] = r;
			rep->rows[rep->n_rows++] = r->row;
		}
	}
	free(first);
	if (!wire || order == NULL || !d->rowsig_ok) {
		free(order);
		return;
	}
	/* On the wire: our row signed now, every other row as its site signed it. */
	const char *tamper = getenv("SITESYNC_TEST_TAMPER");
	bool forge = tamper && strcmp(tamper, "status") == 0;
	rep->signed_rows = calloc(rep->n_rows, sizeof(*rep->signed_rows));
	Sitesync__SignedRow *store = calloc(rep->n_rows, sizeof(*store));
	if (rep->signed_rows == NULL || store == NULL) {
		free(rep->signed_rows);
		free(store);
		rep->signed_rows = NULL;
		free(order);
		return;
	}
	size_t len = sitesync__site_status__get_packed_size(self);
	uint8_t *buf = malloc(len ? len : 1);
	if (buf) {
		sitesync__site_status__pack(self, buf);
		if (rowsig_sign(&d->rowsig, buf, len, &store[0]) == SS_EOK)
			rep->signed_rows[rep->n_signed_rows++] = &store[0];
		free(buf);
	}
	for (size_t i = 1; i < rep->n_rows && rep->n_signed_rows == i; i++) {
		const Sitesync__SignedRow *sr = &order[i]->signed_row;
		if (sr->row.len == 0)
			break;      /* unsigned (protocol 1) rows are not relayed */
		if (signed_copy(&store[i], sr) != SS_EOK)
			break;
		if (forge)
			status_forge(&store[i]);
		rep->signed_rows[rep->n_signed_rows++] = &store[i];
	}
	free(order);
}

void status_report_clear(Sitesync__StatusReport *rep)
{
	if (rep->signed_rows && rep->n_signed_rows > 0) {
		/* Every signed row in a built report is an owned copy. */
		Sitesync__SignedRow *store = rep->signed_rows[0];
		for (size_t i = 0; i < rep->n_signed_rows; i++)
			rowsig_signed_clear(&store[i]);
		free(store);
	}
	free(rep->signed_rows);
	rep->signed_rows = NULL;
	rep->n_signed_rows = 0;
	if (rep->rows && rep->n_rows > 0) {
		/* Only the self row was allocated here, with its children_down block. */
		free(rep->rows[0]->children_down);
		free(rep->rows[0]->pending_children);
		free(rep->rows[0]->messages);
		free(rep->rows[0]);
	}
	free(rep->rows);
	rep->rows = NULL;
	rep->n_rows = 0;
}

const char *status_state_name(Sitesync__SyncState s)
{
	switch (s) {
	case SITESYNC__SYNC_STATE__SYNC_SYNCING: return "syncing";
	case SITESYNC__SYNC_STATE__SYNC_SUCCEEDED: return "succeeded";
	case SITESYNC__SYNC_STATE__SYNC_FAILED: return "failed";
	case SITESYNC__SYNC_STATE__SYNC_STALE: return "stale";
	default: return "idle";
	}
}

const char *status_link_name(Sitesync__LinkState l)
{
	switch (l) {
	case SITESYNC__LINK_STATE__LINK_ACTIVE: return "active";
	case SITESYNC__LINK_STATE__LINK_DEGRADED: return "degraded";
	case SITESYNC__LINK_STATE__LINK_DOWN: return "down";
	case SITESYNC__LINK_STATE__LINK_DISCONNECTED: return "disconnected";
	default: return NULL;
	}
}

json_t *status_time_json(time_t t)
{
	if (t <= 0)
		return json_null();
	struct tm tm;
	char buf[32];
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

bool status_cert_expiring(time_t expires, time_t now, int warn_days)
{
	if (expires <= 0 || warn_days <= 0)
		return false;
	return (int64_t)expires - (int64_t)now <= (int64_t)warn_days * 86400;
}

/* Whole days left, rounded down; negative once expired. */
static int64_t cert_days_left(time_t expires, time_t now)
{
	int64_t left = (int64_t)expires - (int64_t)now;
	return left >= 0 ? left / 86400 : -((-left + 86399) / 86400);
}

static json_t *str_or_null(const char *s)
{
	return (s && s[0]) ? json_string(s) : json_null();
}

static const char *iso_time(time_t t, char *buf, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

static const Sitesync__ChildDown *child_down_find(const Sitesync__SiteStatus *row,
                                                  const char *site)
{
	for (size_t i = 0; row && i < row->n_children_down; i++)
		if (row->children_down[i]->site && strcmp(row->children_down[i]->site, site) == 0)
			return row->children_down[i];
	return NULL;
}

/* The row's error messages (newest first), as the history lists them. */
static json_t *row_messages_json(const Sitesync__SiteStatus *r)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < r->n_messages; i++) {
		const Sitesync__SiteMessage *m = r->messages[i];
		if (m == NULL)
			continue;
		json_t *o = json_object();
		json_object_set_new(o, "at", status_time_json((time_t)(m->at_us / 1000000)));
		json_object_set_new(o, "site", json_string(r->site));
		json_object_set_new(o, "msg_id", json_integer(m->msg_id));
		json_object_set_new(o, "severity", json_string(m->severity ? m->severity : ""));
		json_t *text = json_string(m->text ? m->text : "");
		json_object_set_new(o, "text", text ? text : json_string("(not UTF-8)"));
		json_array_append_new(arr, o);
	}
	return arr;
}

/* A site's syncs: our own history's newest, or the last sync a row below
 * reports (its start, end, trigger, source, result and counts). */
static json_t *row_syncs_json(site_t *d, const Sitesync__SiteStatus *r, bool self)
{
	if (self)
		return synchist_recent_json(d);
	json_t *arr = json_array();
	if (r->last_sync_start <= 0 && r->last_sync_end <= 0)
		return arr;
	bool failed = r->state == SITESYNC__SYNC_STATE__SYNC_FAILED;
	bool syncing = r->state == SITESYNC__SYNC_STATE__SYNC_SYNCING;
	const char *src = r->sync_source ? r->sync_source : "";
	json_t *o = json_object();
	json_object_set_new(o, "kind", json_string(r->parent == NULL || r->parent[0] == '\0' ?
	                    "upstream" : strcmp(src, "import") == 0 ? "import" : "pull"));
	json_object_set_new(o, "started_at", status_time_json(r->last_sync_start));
	json_object_set_new(o, "ended_at", status_time_json(syncing ? 0 : r->last_sync_end));
	json_object_set_new(o, "duration_s", json_integer(!syncing && r->last_sync_end > r->last_sync_start &&
	                    r->last_sync_start > 0 ? (json_int_t)(r->last_sync_end - r->last_sync_start) : 0));
	json_object_set_new(o, "trigger", str_or_null(r->last_sync_trigger));
	json_object_set_new(o, "source", json_string(src));
	json_object_set_new(o, "result", json_string(failed ? "failed" : syncing ? "running" : "succeeded"));
	json_object_set_new(o, "from_version", json_integer((json_int_t)r->catalog_version));
	json_object_set_new(o, "to_version", json_integer((json_int_t)r->catalog_version));
	json_object_set_new(o, "added", json_integer((json_int_t)r->added));
	json_object_set_new(o, "changed", json_integer((json_int_t)r->changed));
	json_object_set_new(o, "removed", json_integer((json_int_t)r->removed));
	json_object_set_new(o, "expired", json_integer((json_int_t)r->expired));
	json_object_set_new(o, "error_code", json_integer(failed ? r->last_error_code : 0));
	json_object_set_new(o, "error", failed ? str_or_null(r->last_error) : json_null());
	json_array_append_new(arr, o);
	return arr;
}

/* Versions the site committed and when, newest first, the one it holds
 * included (its time survives restarts; older ones are since our start). */
static json_t *row_reached_json(const Sitesync__SiteStatus *r, const status_reached_list_t *l)
{
	json_t *arr = json_array();
	if (r->catalog_version > 0 && (l == NULL || l->n == 0 || l->v[0].version != r->catalog_version)) {
		json_t *o = json_object();
		json_object_set_new(o, "version", json_integer((json_int_t)r->catalog_version));
		json_object_set_new(o, "reached_at", status_time_json(r->version_reached_at));
		json_array_append_new(arr, o);
	}
	for (size_t i = 0; l && i < l->n && json_array_size(arr) < STATUS_PROP_VERSIONS; i++) {
		json_t *o = json_object();
		json_object_set_new(o, "version", json_integer((json_int_t)l->v[i].version));
		json_object_set_new(o, "reached_at", status_time_json((time_t)l->v[i].at));
		json_array_append_new(arr, o);
	}
	return arr;
}

static json_t *row_json(site_t *d, const Sitesync__SiteStatus *r, bool self,
                        bool direct, bool connected, uint64_t top, time_t now)
{
	const char *state = status_state_name(r->state);
	const char *link = status_link_name(r->link);
	if (direct) {
		/* Our own view of a direct child's link beats what it last said. */
		link = connected ? "active" : "down";
	}
	int64_t lag_v = top > r->catalog_version ? (int64_t)(top - r->catalog_version) : 0;
	/* A site that went silent (or never heard of the newer version) never
	 * said since when it is behind: it is at least since this site got a
	 * version it lacks, so its lag grows instead of staying 0. */
	time_t since = r->behind_since;
	if (lag_v > 0 && since <= 0 && !self)
		since = d->version > r->catalog_version ? d->version_at : d->self.behind_since;
	int64_t lag_s = (lag_v > 0 && since > 0 && now > since) ? now - since : 0;
	/* Silence longer than the heartbeat timeout, a dead link, or lagging
	 * past the threshold all read as stale; a failure stays a failure. */
	bool silent = !self && now - r->reported_at > d->conf->heartbeat_timeout + 1;
	bool down = !self && direct && !connected;
	/* A parent below us that lost its link to this site says so at once
	 * (children_down in its own row) rather than waiting for silence. */
	time_t down_since = down ? site_child_down_since(d, r->site) : 0;
	const char *down_at = NULL;
	if (!self && !direct && r->parent) {
		status_row_t *pr = status_table_find(d->subtree, r->parent);
		const Sitesync__ChildDown *cd = pr ? child_down_find(pr->row, r->site) : NULL;
		/* Only a parent row newer than the site's own row tells of now. */
		if (cd && pr->row->reported_at >= r->reported_at) {
			down_at = r->parent;
			down_since = cd->since;
			if (link)
				link = "down";
		}
	}
	/* What a silent site last said about its link is no longer true. */
	if (silent && !direct && link)
		link = "down";
	bool lagging = lag_v > 0 && lag_s > d->conf->stale_seconds;
	bool stale = r->state != SITESYNC__SYNC_STATE__SYNC_FAILED &&
	             (silent || down || down_at || lagging);
	if (stale)
		state = "stale";
	/* Why it is stale, in words: the first of these that holds. */
	char why[160] = "", t1[32];
	if (stale && (down || down_at)) {
		int n = down_at ? snprintf(why, sizeof(why), "link to %s down", down_at) :
		                  snprintf(why, sizeof(why), "link down");
		if (down_since > 0)
			snprintf(why + n, sizeof(why) - (size_t)n, " since %s",
			         iso_time(down_since, t1, sizeof(t1)));
	} else if (stale && silent) {
		if (r->reported_at > 0)
			snprintf(why, sizeof(why), "silent since %s",
			         iso_time(r->reported_at, t1, sizeof(t1)));
		else
			snprintf(why, sizeof(why), "never reported");
	} else if (stale && lagging) {
		snprintf(why, sizeof(why), "behind since %s (%" PRId64 " versions)",
		         iso_time(since, t1, sizeof(t1)), lag_v);
	}
	json_t *o = json_object();
	json_object_set_new(o, "site", json_string(r->site));
	json_object_set_new(o, "parent", str_or_null(r->parent));
	json_object_set_new(o, "sync_source", str_or_null(r->sync_source));
	json_object_set_new(o, "state", json_string(state));
	json_object_set_new(o, "stale_reason", why[0] ? json_string(why) : json_null());
	json_object_set_new(o, "catalog_version", json_integer((json_int_t)r->catalog_version));
	json_object_set_new(o, "parent_version", json_integer((json_int_t)r->parent_version));
	json_object_set_new(o, "lag_versions", json_integer(lag_v));
	json_object_set_new(o, "lag_seconds", json_integer(lag_s));
	json_object_set_new(o, "link", link ? json_string(link) : json_null());
	json_object_set_new(o, "link_last_seen", status_time_json(r->link_last_seen));
	json_object_set_new(o, "last_sync_start", status_time_json(r->last_sync_start));
	json_object_set_new(o, "last_sync_end", status_time_json(r->last_sync_end));
	/* When catalog_version was committed at that site: the dashboard's
	 * propagation chart compares it with the top's. */
	json_object_set_new(o, "version_reached_at", status_time_json(r->version_reached_at));
	json_object_set_new(o, "last_error_code", json_integer(r->last_error_code));
	json_object_set_new(o, "last_error", str_or_null(r->last_error));
	json_object_set_new(o, "next_retry", status_time_json(r->next_retry));
	json_object_set_new(o, "consecutive_failures", json_integer(r->consecutive_failures));
	json_object_set_new(o, "added", json_integer((json_int_t)r->added));
	json_object_set_new(o, "changed", json_integer((json_int_t)r->changed));
	json_object_set_new(o, "removed", json_integer((json_int_t)r->removed));
	json_object_set_new(o, "expired", json_integer((json_int_t)r->expired));
	json_object_set_new(o, "version", str_or_null(r->software_version));
	json_object_set_new(o, "cert_expires", status_time_json(r->cert_expires));
	/* Judged by the viewing site's window, like stale: one rule per view. */
	json_object_set_new(o, "cert_expiring",
	                    json_boolean(status_cert_expiring(r->cert_expires, now,
	                                                      d->conf->cert_warning_days)));
	json_object_set_new(o, "cert_days_left",
	                    r->cert_expires > 0 ? json_integer(cert_days_left(r->cert_expires, now))
	                                        : json_null());
	json_object_set_new(o, "reported_at", status_time_json(r->reported_at));
	json_object_set_new(o, "bytes_received", json_integer((json_int_t)r->bytes_received));
	json_object_set_new(o, "progress_done", json_integer((json_int_t)r->progress_done));
	json_object_set_new(o, "progress_total", json_integer((json_int_t)r->progress_total));
	if (r->state == SITESYNC__SYNC_STATE__SYNC_SUCCEEDED)
		json_object_set_new(o, "last_success", status_time_json(r->last_sync_end));
	json_object_set_new(o, "last_sync_trigger", str_or_null(r->last_sync_trigger));
	/* For the dashboard's site detail view and propagation chart. */
	json_object_set_new(o, "syncs", row_syncs_json(d, r, self));
	json_object_set_new(o, "messages", row_messages_json(r));
	status_row_t *sr = self ? NULL : status_table_find(d->subtree, r->site);
	json_object_set_new(o, "versions_reached",
	                    row_reached_json(r, self ? &d->subtree->own : sr ? &sr->reached : NULL));
	return o;
}

static int cert_cmp_cb(const void *a, const void *b)
{
	const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
	json_int_t dx = json_integer_value(json_object_get(x, "cert_days_left"));
	json_int_t dy = json_integer_value(json_object_get(y, "cert_days_left"));
	if (dx != dy)
		return dx < dy ? -1 : 1;
	const char *sx = json_string_value(json_object_get(x, "site"));
	const char *sy = json_string_value(json_object_get(y, "site"));
	return strcmp(sx ? sx : "", sy ? sy : "");
}

/* Takes `arr`, returns it sorted by days left, then site code. */
static json_t *certs_soonest_first(json_t *arr)
{
	size_t n = json_array_size(arr);
	if (n < 2)
		return arr;
	json_t **v = calloc(n, sizeof(*v));
	json_t *out = json_array();
	if (v == NULL || out == NULL) {
		free(v);
		json_decref(out);
		return arr;              /* unsorted beats missing */
	}
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(arr, i);
	qsort(v, n, sizeof(*v), cert_cmp_cb);
	for (size_t i = 0; i < n; i++)
		json_array_append(out, v[i]);
	free(v);
	json_decref(arr);
	return out;
}

/* This site's refused sites, then those its subtree reported (with the
 * site that refused them as "parent"), so the top lists them all. */
static json_t *pending_subtree_json(site_t *d)
{
	json_t *arr = site_pending_json(d);
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o)
		json_object_set_new(o, "parent", json_string(d->conf->site_code));
	for (status_row_t *r = d->subtree->head; r; r = r->next) {
		for (size_t k = 0; k < r->row->n_pending_children; k++) {
			const Sitesync__PendingChild *p = r->row->pending_children[k];
			/* Approved meanwhile: the row will say so at its next report. */
			if (p->site == NULL || status_table_find(d->subtree, p->site))
				continue;
			json_t *e = json_object();
			json_object_set_new(e, "site", json_string(p->site));
			json_object_set_new(e, "address", json_string(p->address ? p->address : ""));
			json_object_set_new(e, "last_attempt", status_time_json(p->last_attempt));
			json_object_set_new(e, "attempts", json_integer(p->attempts));
			json_object_set_new(e, "parent", json_string(r->site));
			json_array_append_new(arr, e);
		}
	}
	return arr;
}

json_t *status_json(site_t *d)
{
	Sitesync__StatusReport rep;
	status_report_build(d, &rep, false);
	time_t now = time(NULL);
	uint64_t top = d->top_version > d->version ? d->top_version : d->version;
	json_t *sites = json_array();
	for (size_t i = 0; i < rep.n_rows; i++) {
		const Sitesync__SiteStatus *r = rep.rows[i];
		bool self = i == 0;
		bool direct = !self && r->parent && strcmp(r->parent, d->conf->site_code) == 0;
		bool connected = direct && child_link_connected(d, r->site);
		json_array_append_new(sites, row_json(d, r, self, direct, connected, top, now));
	}
	/* Approved children never heard from still belong in the view. */
	for (size_t i = 0; i < d->n_approved; i++) {
		if (status_table_find(d->subtree, d->approved[i]))
			continue;
		Sitesync__SiteStatus ghost = SITESYNC__SITE_STATUS__INIT;
		ghost.site = d->approved[i];
		ghost.parent = d->conf->site_code;
		bool connected = child_link_connected(d, ghost.site);
		ghost.reported_at = connected ? now : 0;
		json_array_append_new(sites, row_json(d, &ghost, false, true, connected, top, now));
	}
	status_report_clear(&rep);
	/* The roll-up: every site of the subtree whose certificate needs
	 * renewing, soonest first, so one look at the top finds them all. */
	json_t *expiring = json_array();
	size_t idx;
	json_t *row;
	json_array_foreach(sites, idx, row) {
		if (!json_is_true(json_object_get(row, "cert_expiring")))
			continue;
		json_t *e = json_object();
		json_object_set(e, "site", json_object_get(row, "site"));
		json_object_set(e, "cert_expires", json_object_get(row, "cert_expires"));
		json_object_set(e, "cert_days_left", json_object_get(row, "cert_days_left"));
		json_array_append_new(expiring, e);
	}
	expiring = certs_soonest_first(expiring);
	json_t *o = json_object();
	json_object_set_new(o, "site", json_string(d->conf->site_code));
	json_object_set_new(o, "top_version", json_integer((json_int_t)top));
	json_object_set_new(o, "generated_at", status_time_json(now));
	json_object_set_new(o, "cert_warning_days", json_integer(d->conf->cert_warning_days));
	json_object_set_new(o, "certs_expiring", expiring);
	json_object_set_new(o, "sites", sites);
	json_object_set_new(o, "pending_children", pending_subtree_json(d));
	/* This site's own synchronizations (history's "syncs"), newest first. */
	json_object_set_new(o, "syncs", synchist_recent_json(d));
	return o;
}
