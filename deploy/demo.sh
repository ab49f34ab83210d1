#!/usr/bin/env bash
# deploy/demo.sh: a five-site sitesync hierarchy on this machine.
#
#   ./deploy/demo.sh          build, start CAS -> P01 -> S01, CAS -> P02 -> S02,
#                             sync CAS from deploy/sample-catalog.xml and wait
#                             until every site holds CAS's catalog version
#   ./deploy/demo.sh stop     stop everything and remove the demo directory
#   ./deploy/demo.sh status   print the hierarchy's status table
#
# Everything lives in one directory (default ./demo/ in the source tree):
# a private PostgreSQL cluster on a unix socket (no TCP), the CA and site
# certificates, and per site its configuration, state, control socket, sync
# log and daemon log. The daemons listen on loopback only.
#
# As root, installs the Debian packages it needs (the list tests/run uses)
# when any is missing; initdb and postgres then run as the postgres user.
# When that user cannot reach the demo directory (a clone in root's 0700
# home), the cluster goes to /tmp/sitesync-demo-pg.XXXXXX instead, owned by
# postgres; DEMO/pgdir names it and `stop` removes it with the rest.
#
# Environment:
#   SITESYNC_DEMO_DIR    the demo directory (default: SOURCE/demo)
#   SITESYNC_DEMO_BUILD  the build directory (default: SOURCE/build-demo)
#   SS_SITESYNCD, SS_SITESYNC
#                        use these binaries instead of building
#   SS_PG_BIN            PostgreSQL server binaries (default: the newest
#                        /usr/lib/postgresql/*/bin)
#
# Exit status: 0 success, 1 usage error, 2 failure.

set -uo pipefail

PROG=deploy/demo.sh
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) || exit 2
DEMO=${SITESYNC_DEMO_DIR:-$SRC/demo}
BUILD=${SITESYNC_DEMO_BUILD:-$SRC/build-demo}
MARKER=.sitesync-demo
SITES=(CAS P01 P02 S01 S02)
declare -A PARENT=([CAS]="" [P01]=CAS [P02]=CAS [S01]=P01 [S02]=P02)
declare -A CHILDREN=([CAS]="P01 P02" [P01]=S01 [P02]=S02 [S01]="" [S02]="")

say() { printf '== %s\n' "$*"; }
die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 2; }

usage() {
	cat <<EOF
Usage: $PROG [start|stop|status|--help]

Run a five-site sitesync hierarchy on this machine:

        CAS          top site: syncs deploy/sample-catalog.xml, dashboard
       /   \\
     P01   P02       primary sites
      |     |
     S01   S02       secondary (leaf) sites

  start     (default) build, start the hierarchy, sync it, show its status;
            a running demo is stopped and removed first
  stop      stop every daemon and PostgreSQL, remove the demo directory
  status    print the status table of the running demo
  -h, --help  show this help and exit

Demo directory: \$SITESYNC_DEMO_DIR (default: $SRC/demo)
EOF
}

# ---------------------------------------------------------------------------
# Packages, build, PostgreSQL binaries

install_packages() {
	local list missing=() p
	command -v dpkg-query >/dev/null 2>&1 || return 0
	# The same list as tests/run, read from it so the two never drift apart.
	list=$(sed -n '/^PACKAGES=(/,/)/p' "$SRC/tests/run" | tr -d '()' |
		sed 's/^PACKAGES=//')
	for p in $list; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	((${#missing[@]})) || return 0
	if [[ $(id -u) -ne 0 ]]; then
		say "missing Debian packages (install them as root): ${missing[*]}"
		return 0
	fi
	say "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q </dev/null >/dev/null || say "apt-get update failed"
	apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null ||
		die "apt-get install failed"
}

build() {
	if [[ -n ${SS_SITESYNCD:-} || -n ${SS_SITESYNC:-} ]]; then
		SITESYNCD=${SS_SITESYNCD:-}
		SITESYNC=${SS_SITESYNC:-}
		[[ -x $SITESYNCD && -x $SITESYNC ]] ||
			die "SS_SITESYNCD and SS_SITESYNC must both name executables"
		return
	fi
	if [[ ! -f $BUILD/meson-private/coredata.dat ]]; then
		say "configuring $BUILD"
		rm -rf -- "$BUILD"
		local log=${TMPDIR:-/tmp}/sitesync-demo-setup.$$.log
		if ! meson setup "$BUILD" --buildtype=debugoptimized -Dintegration=false \
			</dev/null >"$log" 2>&1; then
			cat "$log" >&2
			rm -f -- "$log"
			die "meson setup failed"
		fi
		rm -f -- "$log"
	fi
	say "building $BUILD"
	if ! ninja -C "$BUILD" server/sitesyncd cli/sitesync </dev/null \
		>"$BUILD/demo-build.log" 2>&1; then
		tail -n 40 "$BUILD/demo-build.log" >&2
		die "build failed (see $BUILD/demo-build.log)"
	fi
	SITESYNCD=$BUILD/server/sitesyncd
	SITESYNC=$BUILD/cli/sitesync
	[[ -x $SITESYNCD && -x $SITESYNC ]] || die "build produced no binaries"
}

find_pg_bin() {
	local d best="" bestv=0 v
	if [[ -n ${SS_PG_BIN:-} ]]; then
		PGBIN=$SS_PG_BIN
	else
		for d in /usr/lib/postgresql/*/bin; do
			v=${d#/usr/lib/postgresql/}
			v=${v%%/*}
			[[ $v =~ ^[0-9]+$ ]] && ((v > bestv)) && { best=$d; bestv=$v; }
		done
		PGBIN=$best
	fi
	[[ -n $PGBIN && -x $PGBIN/initdb && -x $PGBIN/pg_ctl ]] ||
		die "PostgreSQL server binaries not found (install postgresql, or set SS_PG_BIN)"
}

# as_pg CMD...: run as the postgres user when root (initdb refuses root).
as_pg() {
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pg_user() {
	if [[ $(id -u) -eq 0 ]]; then echo postgres; else id -un; fi
}

# ---------------------------------------------------------------------------
# Helpers

# free_port PREFERRED: PREFERRED if nothing listens on it, else any free port.
free_port() {
	python3 - "$1" <<'EOF'
import socket, sys
want = int(sys.argv[1])
for port in (want, 0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        print(s.getsockname()[1])
        break
    except OSError:
        continue
    finally:
        s.close()
EOF
}

cli() { # cli SITE ARGS...
	"$SITESYNC" -c "$DEMO/sites/$1/sitesync.conf" "${@:2}"
}

# load_pgdir: PGDIR = where the demo's cluster lives (DEMO/pg, or the
# directory DEMO/pgdir names when the postgres user could not reach DEMO).
load_pgdir() {
	PGDIR=$DEMO/pg
	[[ -f $DEMO/pgdir ]] || return 0
	PGDIR=$(<"$DEMO/pgdir")
	# Gone already (/tmp cleaned by a reboot): nothing left to stop there.
	if [[ ! -e $PGDIR ]]; then
		PGDIR=$DEMO/pg
		return 0
	fi
	# Only ever a directory this script made: never act on another path.
	[[ $PGDIR =~ ^/tmp/sitesync-demo-pg\.[A-Za-z0-9]+$ && -f $PGDIR/$MARKER ]] ||
		die "$DEMO/pgdir names $PGDIR, not a demo cluster directory: not touching it"
}

# pick_pgdir: DEMO/pg when the cluster's user can reach it, else a fresh
# directory under /tmp (recorded in DEMO/pgdir for status and stop).
pick_pgdir() {
	PGDIR=$DEMO/pg
	[[ $(id -u) -eq 0 ]] || return 0
	id postgres >/dev/null 2>&1 || fail "no postgres user (install postgresql)"
	runuser -u postgres -- test -x "$DEMO" 2>/dev/null && return 0
	PGDIR=$(mktemp -d /tmp/sitesync-demo-pg.XXXXXX) ||
		fail "cannot create a PostgreSQL directory under /tmp"
	touch "$PGDIR/$MARKER"
	printf '%s\n' "$PGDIR" >"$DEMO/pgdir"
	say "the postgres user cannot reach $DEMO: PostgreSQL files go to $PGDIR"
}

# Stop the daemons and PostgreSQL of the demo in $DEMO (if any).
stop_processes() {
	local f pid code n
	for f in "$DEMO"/sites/*/sitesyncd.pid; do
		[[ -f $f ]] || continue
		pid=$(<"$f")
		code=$(basename "$(dirname "$f")")
		if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null
			for ((n = 0; n < 100; n++)); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			if kill -0 "$pid" 2>/dev/null; then
				say "$code (pid $pid) did not stop in 10 s: killing it"
				kill -KILL "$pid" 2>/dev/null
			else
				say "stopped $code (pid $pid)"
			fi
		fi
		rm -f -- "$f"
	done
	load_pgdir
	if [[ -f $PGDIR/data/postmaster.pid ]]; then
		find_pg_bin
		as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -w -t 30 -m fast stop \
			>/dev/null 2>&1 ||
			as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -w -t 30 -m immediate stop \
				>/dev/null 2>&1 ||
			say "could not stop PostgreSQL in $PGDIR"
		say "stopped PostgreSQL"
	fi
}

cmd_stop() {
	if [[ ! -e $DEMO ]]; then
		say "no demo in $DEMO"
		return 0
	fi
	[[ -f $DEMO/$MARKER ]] ||
		die "$DEMO was not made by $PROG (no $MARKER): not touching it"
	stop_processes
	if [[ $PGDIR != "$DEMO/pg" ]]; then
		rm -rf -- "$PGDIR" || die "cannot remove $PGDIR"
		say "removed $PGDIR"
	fi
	rm -rf -- "$DEMO" || die "cannot remove $DEMO"
	say "removed $DEMO"
}

cmd_status() {
	[[ -f $DEMO/$MARKER && -f $DEMO/env ]] || die "no demo in $DEMO (start one: $PROG)"
	# shellcheck source=/dev/null
	. "$DEMO/env"
	cli CAS status
}

# On a failed start: show what the daemons said, stop them, keep the files.
fail() {
	local code
	printf '%s: %s\n' "$PROG" "$*" >&2
	for code in "${SITES[@]}"; do
		[[ -f $DEMO/sites/$code/sitesyncd.log ]] || continue
		printf -- '---- %s: last lines of %s\n' "$code" "$DEMO/sites/$code/sitesyncd.log" >&2
		tail -n 15 "$DEMO/sites/$code/sitesyncd.log" >&2
	done
	stop_processes
	printf '%s: the files are kept in %s; %s stop removes them\n' "$PROG" "$DEMO" "$PROG" >&2
	exit 2
}

# ---------------------------------------------------------------------------
# Start

start_pg() {
	local pguser opts
	find_pg_bin
	pguser=$(pg_user)
	pick_pgdir
	mkdir -p "$PGDIR/sock" || fail "cannot create $PGDIR"
	if [[ $(id -u) -eq 0 ]]; then
		chown postgres: "$PGDIR" "$PGDIR/sock"
		runuser -u postgres -- test -w "$PGDIR" ||
			fail "the postgres user cannot write to $PGDIR"
	fi
	chmod 0700 "$PGDIR"
	say "PostgreSQL: initdb $PGDIR/data"
	as_pg "$PGBIN/initdb" --no-sync -A trust -E UTF8 --locale=C.UTF-8 \
		-U "$pguser" -D "$PGDIR/data" >"$PGDIR/initdb.log" 2>&1 </dev/null ||
		{ cat "$PGDIR/initdb.log" >&2; fail "initdb failed"; }
	opts="-k $PGDIR/sock -p 5432 -c listen_addresses='' -c fsync=off"
	opts+=" -c synchronous_commit=off -c max_connections=200"
	as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/postgres.log" -w -t 60 \
		-o "$opts" start >/dev/null 2>&1 </dev/null ||
		{ tail -n 20 "$PGDIR/postgres.log" >&2; fail "PostgreSQL did not start"; }
	PSQL=$PGBIN/psql
	[[ -x $PSQL ]] || PSQL=$(command -v psql) || fail "psql not found"
	local code
	for code in "${SITES[@]}"; do
		"$PSQL" -X -q -h "$PGDIR/sock" -p 5432 -U "$pguser" -d postgres \
			-c "CREATE DATABASE site_${code,,}" </dev/null >/dev/null ||
			fail "cannot create database site_${code,,}"
	done
	say "PostgreSQL up (unix socket $PGDIR/sock), databases site_cas ... site_s02"
}

make_certs() {
	local code
	"$SRC/deploy/sitesync-certs" ca "$DEMO/certs" --name "sitesync demo CA" \
		>/dev/null || fail "sitesync-certs ca failed"
	for code in "${SITES[@]}"; do
		"$SRC/deploy/sitesync-certs" site "$DEMO/certs" "$code" >/dev/null ||
			fail "sitesync-certs site $code failed"
	done
	# Catalog manifests: CAS signs every version, every other site verifies.
	if ! openssl genpkey -algorithm ed25519 -out "$DEMO/certs/manifest.key" 2>/dev/null ||
		! openssl pkey -in "$DEMO/certs/manifest.key" -pubout \
			-out "$DEMO/certs/manifest.pub" 2>/dev/null; then
		fail "cannot make the Ed25519 manifest key"
	fi
	say "certificates: $DEMO/certs/ca.pem and one per site (CN = site code);"
	say "manifest signing key: $DEMO/certs/manifest.key (CAS signs, all verify)"
}

write_config() { # write_config CODE
	local code=$1 dir=$DEMO/sites/$1 parent=${PARENT[$1]}
	mkdir -p "$dir/state"
	{
		printf '; %s site of the sitesync demo (written by %s)\n\n' "$code" "$PROG"
		printf '[site]\ncode = %s\nstate_dir = %s\n\n' "$code" "$dir/state"
		printf '[database]\nconninfo = host=%s port=5432 dbname=site_%s user=%s\n\n' \
			"$PGDIR/sock" "${code,,}" "$(pg_user)"
		printf '[tls]\nca = %s\ncert = %s\nkey = %s\n\n' "$DEMO/certs/ca.pem" \
			"$DEMO/certs/$code.pem" "$DEMO/certs/$code.key"
		printf '[trust]\n'
		[[ -n $parent ]] || printf 'signing_key = %s\n' "$DEMO/certs/manifest.key"
		printf 'public_key = %s\n\n' "$DEMO/certs/manifest.pub"
		if [[ -n ${CHILDREN[$code]} ]]; then
			printf '[listen]\naddress = 127.0.0.1:%s\n\n' "${PORT[$code]}"
		fi
		if [[ -n $parent ]]; then
			printf '[parent]\naddress = 127.0.0.1:%s\n\n' "${PORT[$parent]}"
		else
			printf '[upstream]\nurl = file://%s/deploy/sample-catalog.xml\n\n' "$SRC"
			printf '[http]\nlisten = 127.0.0.1:%s\n\n' "$HTTP_PORT"
		fi
		printf '[control]\nsocket = %s\n\n' "$dir/control.sock"
		printf '[log]\nsync_log = %s\n\n' "$dir/sync.log"
		printf '[replication]\nheartbeat_seconds = 2\nheartbeat_timeout = 6\npoll_seconds = 5\nreconnect_max = 5\n'
	} >"$dir/sitesync.conf"
}

start_site() { # start_site CODE
	local code=$1 dir=$DEMO/sites/$1 n pid
	"$SITESYNCD" -c "$dir/sitesync.conf" --check-config >"$dir/check.log" 2>&1 ||
		{ cat "$dir/check.log" >&2; fail "$code: configuration refused"; }
	rm -f "$dir/check.log"
	# A session of its own: no terminal, and the shell's signals stay ours.
	(cd "$dir" && exec setsid "$SITESYNCD" -c "$dir/sitesync.conf" \
		</dev/null >>"$dir/sitesyncd.log" 2>&1) &
	pid=$!
	echo "$pid" >"$dir/sitesyncd.pid"
	for ((n = 0; n < 300; n++)); do
		kill -0 "$pid" 2>/dev/null || fail "$code exited during start"
		if [[ -S $dir/control.sock ]] && cli "$code" status --json >/dev/null 2>&1; then
			say "started $code (pid $pid)"
			return 0
		fi
		sleep 0.1
	done
	fail "$code did not answer on its control socket within 30 s"
}

# all_converged: true when CAS's status shows every site at the top version.
all_converged() {
	cli CAS status --json 2>/dev/null | python3 -c '
import json, sys
want = sys.argv[1:]
st = json.load(sys.stdin)
top = st.get("top_version") or 0
got = {s["site"]: s.get("catalog_version") for s in st.get("sites", [])}
ok = top > 0 and all(got.get(c) == top for c in want)
sys.exit(0 if ok else 1)
' "${SITES[@]}"
}

cmd_start() {
	install_packages
	for tool in python3 openssl; do
		command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
	done
	if [[ -z ${SS_SITESYNCD:-}${SS_SITESYNC:-} ]]; then
		for tool in meson ninja; do
			command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
		done
	fi
	build
	find_pg_bin
	if [[ -e $DEMO ]]; then
		say "a demo exists in $DEMO: stopping and removing it first"
		cmd_stop || exit 2
	fi
	mkdir -p "$DEMO" || die "cannot create $DEMO"
	# The postgres user must reach DEMO/pg (else pick_pgdir goes to /tmp).
	chmod 0755 "$DEMO"
	touch "$DEMO/$MARKER"
	trap 'fail "interrupted"' INT TERM

	start_pg
	make_certs

	declare -gA PORT
	local p=7443 code
	for code in CAS P01 P02; do
		PORT[$code]=$(free_port "$p") || fail "no free port"
		p=$((p + 1))
	done
	HTTP_PORT=$(free_port 8080) || fail "no free port"
	for code in "${SITES[@]}"; do
		write_config "$code"
	done
	printf 'SITESYNC=%q\nSITESYNCD=%q\nHTTP_PORT=%q\n' "$SITESYNC" "$SITESYNCD" \
		"$HTTP_PORT" >"$DEMO/env"
	say "configurations: $DEMO/sites/*/sitesync.conf"

	# Parents first, each approving its children before they dial in.
	local child
	for code in CAS P01 P02 S01 S02; do
		start_site "$code"
		for child in ${CHILDREN[$code]}; do
			cli "$code" child add "$child" >/dev/null ||
				fail "sitesync child add $child at $code failed"
		done
		[[ -z ${CHILDREN[$code]} ]] || say "$code approved its children: ${CHILDREN[$code]}"
	done

	say "sitesync -c $DEMO/sites/CAS/sitesync.conf sync --yes --wait"
	cli CAS sync --yes --wait --timeout 300 </dev/null ||
		fail "sitesync sync failed"

	local n
	for ((n = 0; n < 600; n++)); do
		all_converged && break
		sleep 0.1
	done
	all_converged || fail "not every site reached CAS's catalog version within 60 s"
	trap - INT TERM

	echo
	cli CAS status || fail "sitesync status failed"
	local top again=$0
	[[ -z ${SITESYNC_DEMO_DIR:-} ]] || again="SITESYNC_DEMO_DIR=$(printf %q "$DEMO") $0"
	top=$(cli CAS status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["top_version"])')
	cat <<EOF

All ${#SITES[@]} sites hold catalog version $top.

  Dashboard:     http://127.0.0.1:$HTTP_PORT/   (also /status and /metrics)
  Status:        $SITESYNC -c $DEMO/sites/CAS/sitesync.conf status [--json|--watch]
  Sync logs:     $DEMO/sites/*/sync.log
                 (e.g. tail $DEMO/sites/S01/sync.log)
  Daemon logs:   $DEMO/sites/*/sitesyncd.log
  History:       $SITESYNC -c $DEMO/sites/S01/sitesync.conf history
  Sync again:    $SITESYNC -c $DEMO/sites/CAS/sitesync.conf sync --yes --wait
  Stop:          $again stop   (stops everything and removes $DEMO)
EOF
}

case ${1:-start} in
start) (($# <= 1)) || { usage >&2; exit 1; }; cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
-h | --help | help) usage ;;
*) printf '%s: unknown command: %s\nTry %s --help\n' "$PROG" "$1" "$PROG" >&2
	exit 1 ;;
esac
