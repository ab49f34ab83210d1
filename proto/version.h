/*
 * Protocol and format versions.
 *
 * Bump SS_PROTO_VERSION whenever a message in proto/sitesync.proto changes
 * meaning or a new message becomes mandatory. A parent serves children of
 * SS_PROTO_VERSION and SS_PROTO_VERSION - 1 (DESIGN §8, rolling upgrades).
 */
#pragma once

/*
 * 1: the first protocol.
 * 2: PullDone carries the signed manifest; PullRequest/PullStart carry
 *    resume offsets. A version-1 child ignores the new fields and never
 *    asks to resume, so a version-2 parent serves it unchanged.
 * 3: the catalog digest that counts is the LtHash set digest: PullDone and
 *    Manifest carry `set_digest` (SHA-256 of the LtHash16 state), and a
 *    version-3 site refuses a stream or manifest without it. `digest` stays
 *    the protocol-2 sum, still computed and signed, so a version-3 parent
 *    serves version-2 children from the very same stream (they ignore the
 *    new fields). Upgrade order: the top first, then each level downwards;
 *    a version-2 parent refuses a version-3 child's Hello.
 */
#define SS_PROTO_VERSION 3
#define SS_PROTO_MIN_VERSION 2     /* oldest child protocol a parent serves */
#define SS_BUNDLE_FORMAT 1         /* export/import file format */
#define SS_SOFTWARE_VERSION "0.1.0"
