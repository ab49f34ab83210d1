/* Frame header parsing and protobuf Frame encode/decode. */
#include "proto/frame.h"

#include <stdbool.h>
#include <stdlib.h>

#include "common/errcode.h"

int frame_header_parse(const uint8_t *buf, size_t len, size_t limit,
                       uint32_t *body)
{
	if (len < SS_FRAME_HDR)
		return SS_EAGAIN;
	uint32_t n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 |
	             (uint32_t)buf[2] << 8 | (uint32_t)buf[3];
	if (n == 0)
		return SS_EMALF;
	if (n > limit)
		return SS_ETOOBIG;
	*body = n;
	return SS_EOK;
}

void frame_header_write(uint8_t out[SS_FRAME_HDR], uint32_t n)
{
	out[0] = (uint8_t)(n >> 24);
	out[1] = (uint8_t)(n >> 16);
	out[2] = (uint8_t)(n >> 8);
	out[3] = (uint8_t)n;
}

/* Field number 0 does not exist. protobuf-c lets an overlong tag for it
 * through as an "unknown field" that would not survive re-encoding: refuse
 * it at any depth. */
static bool frame_has_field0(const ProtobufCMessage *m)
{
	for (unsigned i = 0; i < m->n_unknown_fields; i++)
		if (m->unknown_fields[i].tag == 0)
			return true;
	const ProtobufCMessageDescriptor *d = m->descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];
		if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		const char *base = (const char *)m;
		if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + fd->quantifier_offset);
			ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)(base + fd->offset);
			for (size_t k = 0; k < n; k++)
				if (arr[k] && frame_has_field0(arr[k]))
					return true;
		} else {
			/* A oneof member is only valid when it is the case that is set. */
			if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
			    *(const uint32_t *)(base + fd->quantifier_offset) != fd->id)
				continue;
			const ProtobufCMessage *sub = *(ProtobufCMessage *const *)(base + fd->offset);
			if (sub && frame_has_field0(sub))
				return true;
		}
	}
	return false;
}

int frame_decode(const uint8_t *body, size_t len, frame_t **out)
{
	frame_t *f = sitesync__frame__unpack(NULL, len, body);
	if (f == NULL)
		return SS_EMALF;
	/* An unknown field number leaves the oneof unset: not a message we know. */
	if (f->msg_case == SITESYNC__FRAME__MSG__NOT_SET) {
		sitesync__frame__free_unpacked(f, NULL);
		return SS_EMALF;
	}
	if (frame_has_field0(&f->base)) {
		sitesync__frame__free_unpacked(f, NULL);
		return SS_EMALF;
	}
	*out = f;
	return SS_EOK;
}

size_t frame_encoded_size(const frame_t *f)
{
	return SS_FRAME_HDR + sitesync__frame__get_packed_size(f);
}

void frame_encode_to(const frame_t *f, uint8_t *out)
{
	size_t body = sitesync__frame__pack(f, out + SS_FRAME_HDR);
	frame_header_write(out, (uint32_t)body);
}

int frame_encode(const frame_t *f, uint8_t **out, size_t *out_len)
{
	size_t n = frame_encoded_size(f);
	uint8_t *buf = malloc(n);
	if (buf == NULL)
		return SS_ENOMEM;
	frame_encode_to(f, buf);
	*out = buf;
	*out_len = n;
	return SS_EOK;
}

void frame_free(frame_t *f)
{
	if (f)
		sitesync__frame__free_unpacked(f, NULL);
}

const char *frame_msg_name(const frame_t *f)
{
	switch (f->msg_case) {
	case SITESYNC__FRAME__MSG_HELLO: return "Hello";
	case SITESYNC__FRAME__MSG_SYNC_REQUEST: return "SyncRequest";
	case SITESYNC__FRAME__MSG_PULL_REQUEST: return "PullRequest";
	case SITESYNC__FRAME__MSG_PULL_START: return "PullStart";
	case SITESYNC__FRAME__MSG_BATCH: return "Batch";
	case SITESYNC__FRAME__MSG_PULL_DONE: return "PullDone";
	case SITESYNC__FRAME__MSG_STATUS_REPORT: return "StatusReport";
	case SITESYNC__FRAME__MSG_PING: return "Ping";
	case SITESYNC__FRAME__MSG_PONG: return "Pong";
	case SITESYNC__FRAME__MSG_ERROR: return "Error";
	case SITESYNC__FRAME__MSG_BUNDLE_HEADER: return "BundleHeader";
	case SITESYNC__FRAME__MSG_BUNDLE_END: return "BundleEnd";
	default: return "unknown";
	}
}
