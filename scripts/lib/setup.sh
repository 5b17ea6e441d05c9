# Shared setup steps for scripts/test, scripts/start and scripts/bench.
#
# Source this file from a bash script that runs with `set -euo pipefail`, then call:
#   ensure_debian_packages [test]   install the Debian packages the main job needs (with
#                            `test`, also the test stack's), only the missing ones
#   ensure_debian_packages PKG...   those packages (only the missing ones)
#   ensure_ceph_packages     the Ceph daemons and ceph-fuse the long CephFS test runs (--long only)
#   ensure_pjdfstest_packages  what the long pjdfstest run builds and runs the suite with (--long only)
#   ensure_venv [EXTRAS]     create .venv and `pip install -e '.[EXTRAS]'` when pyproject.toml
#                            changed or EXTRAS (e.g. `test`) are not installed yet
#   ensure_venv_extra NAME MODULE   also install the optional dependency group NAME of
#                            pyproject.toml when MODULE does not import (after ensure_venv)
#   ensure_on_path           as root, link $ASSETFS_BIN_DIR/assetfs (default /usr/local/bin)
#                            to .venv/bin/assetfs
#   ensure_mount_helper      as root, link $ASSETFS_SBIN_DIR/mount.fuse.assetfs (default /sbin,
#                            where mount(8) looks) to .venv/bin/mount.fuse.assetfs
#   ensure_postgres          start (or create) the PostgreSQL cluster, the `assetfs` role
#                            and the `assetfs_test` database
#   ensure_postgres_database NAME   another database owned by `assetfs` (after ensure_postgres)
#   postgres_test_url [NAME] print the connection URL (database defaults to assetfs_test)
#
# Every step is idempotent and prints one line to stderr.

ASSETFS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ASSETFS_VENV="$ASSETFS_ROOT/.venv"
ASSETFS_BIN_DIR="${ASSETFS_BIN_DIR:-/usr/local/bin}"
ASSETFS_SBIN_DIR="${ASSETFS_SBIN_DIR:-/sbin}"

# What the main job (scripts/start) needs: the mount, the venv, content detection.
ASSETFS_DEBIAN_PACKAGES=(
    fuse3 libfuse3-dev pkg-config   # the FUSE mount; pyfuse3 builds against libfuse3
    gcc libc6-dev python3-dev       # pyfuse3 ships no wheels: its C extension is compiled
    python3-venv                    # `python3 -m venv` on Debian's python
    libmagic1                       # content types detected from the data (python-magic)
)

# What scripts/test (and scripts/bench) add: the servers and tools the tests drive.
ASSETFS_TEST_DEBIAN_PACKAGES=(
    postgresql                      # the shared catalog the tests run against
    rsync attr bindfs b3sum         # copies into the mount, xattrs, the benchmarks' baselines
    nginx-light curl                # a real nginx in front of `assetfs serve` (tests/test_serve_nginx.py)
    systemd logrotate               # systemd-analyze verify of scripts/systemd, the logrotate example (tests/test_service.py)
)

# tests/test_cephfs.py: a one-node cluster with two ceph-fuse clients ($CEPHFS_TOOLS)
ASSETFS_CEPH_PACKAGES=(ceph-mon ceph-osd ceph-mds ceph-fuse ceph-common)

# tests/test_pjdfstest.py: builds pjdfstest from its source ($PJDFSTEST_SRC) and runs it with prove
ASSETFS_PJDFSTEST_PACKAGES=(
    autoconf automake make gcc libc6-dev   # autoreconf -ifs && ./configure && make pjdfstest
    perl                                   # prove (TAP::Harness) runs the suite's .t files
)

ASSETFS_PG_ROLE=assetfs
ASSETFS_PG_PASSWORD=assetfs
ASSETFS_PG_DATABASE=assetfs_test

# Filled in by ensure_postgres.
PG_VERSION=""
PG_CLUSTER=""
PG_PORT=""

setup_say() {
    echo "setup: $*" >&2
}

setup_die() {
    echo "setup: error: $*" >&2
    exit 1
}

# Run a command as root (directly when we are root, through sudo otherwise).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        setup_die "need root (or sudo) to run: $*"
    fi
}

# ensure_debian_packages [PKG...]: the given packages, or ASSETFS_DEBIAN_PACKAGES.
ensure_debian_packages() {
    local wanted=("${ASSETFS_DEBIAN_PACKAGES[@]}")
    case "${1:-}" in
        "") ;;
        test) wanted+=("${ASSETFS_TEST_DEBIAN_PACKAGES[@]}") ;;
        *)
            install_debian_packages "debian packages" "$@"
            return
            ;;
    esac
    install_debian_packages "debian packages" "${wanted[@]}"
    [ -c /dev/fuse ] || setup_say "warning: /dev/fuse is missing; FUSE mounts will fail"
}

# The long run's CephFS test needs Ceph; a machine where it cannot be installed still runs
# the other long tests (the CephFS test then skips and says why).
ensure_ceph_packages() {
    ( install_debian_packages "ceph packages" "${ASSETFS_CEPH_PACKAGES[@]}" ) ||
        setup_say "warning: could not install Ceph; the CephFS test will be skipped"
}

# The long run's pjdfstest test builds the suite; without these it skips and says why.
ensure_pjdfstest_packages() {
    ( install_debian_packages "pjdfstest build tools" "${ASSETFS_PJDFSTEST_PACKAGES[@]}" ) ||
        setup_say "warning: could not install the pjdfstest build tools; the pjdfstest test will be skipped"
}

# install_debian_packages WHAT PACKAGE...: apt-get install the missing ones.
install_debian_packages() {
    local what="$1" missing=() pkg status
    shift
    for pkg in "$@"; do
        status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
        [ "${status:0:2}" = "ii" ] || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        setup_say "$what present"
    else
        command -v apt-get >/dev/null 2>&1 || setup_die "apt-get not found; install: ${missing[*]}"
        setup_say "installing debian packages: ${missing[*]}"
        local log
        log="$(mktemp -t assetfs-apt.XXXXXX)"
        if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1 ||
           ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                 --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
            tail -n 30 "$log" >&2
            setup_die "apt-get failed (full log: $log)"
        fi
        rm -f "$log"
    fi
}

# Succeeds when .venv has a python that runs.
venv_usable() {
    [ -x "$ASSETFS_VENV/bin/python" ] && "$ASSETFS_VENV/bin/python" -c '' 2>/dev/null
}

# The stamp holds the hash of pyproject.toml and the extras installed with it ("<hash> test").
ensure_venv() {
    local extras="${1:-}"
    local python="${ASSETFS_PYTHON:-python3}"
    local stamp="$ASSETFS_VENV/.assetfs-installed"
    local hash have_hash="" have_extras="" install

    if ! venv_usable; then
        rm -rf "$ASSETFS_VENV"
        "$python" -m venv "$ASSETFS_VENV" ||
            setup_die "could not create $ASSETFS_VENV with $python"
    fi

    hash="$(sha256sum "$ASSETFS_ROOT/pyproject.toml" | cut -d' ' -f1)"
    [ -f "$stamp" ] && read -r have_hash have_extras <"$stamp"
    if [ "$hash" = "$have_hash" ] && { [ -z "$extras" ] || [ "$extras" = "$have_extras" ]; }; then
        setup_say "venv up to date (.venv, pyproject.toml unchanged)"
        return 0
    fi

    # Keep the extras installed before (a start after a test run leaves pytest in place).
    [ "$hash" = "$have_hash" ] || [ -n "$extras" ] || extras="$have_extras"
    install="."
    [ -z "$extras" ] || install=".[$extras]"
    pip_install_project "$install" "$ASSETFS_VENV/pip-install.log"
    echo "$hash $extras" >"$stamp"
    setup_say "venv installed (.venv, pip install -e '$install')"
}

# link_to_venv LINK TARGET WHAT: make LINK a symlink to TARGET (replaced when it points
# elsewhere, never over a real file); WHAT says what the link is for. Fails (1) when a real
# file is in the way.
link_to_venv() {
    local link="$1" target="$2" what="$3"
    if [ -e "$link" ] && [ ! -L "$link" ]; then
        setup_say "warning: $link exists and is not a link; leaving it"
        return 1
    fi
    if [ "$(readlink "$link" 2>/dev/null || true)" != "$target" ]; then
        mkdir -p "$(dirname "$link")"
        ln -sfn "$target" "$link"
        setup_say "linked $link -> $target ($what)"
    else
        setup_say "$what in place ($link -> $target)"
    fi
}

# As root, put `assetfs` on PATH: a link in $ASSETFS_BIN_DIR to the venv's script (a link, so
# that it follows the checkout). Prints what the user types to run assetfs.
ensure_on_path() {
    local target="$ASSETFS_VENV/bin/assetfs"
    if [ "$(id -u)" -ne 0 ] && [ "${ASSETFS_BIN_DIR}" = /usr/local/bin ]; then
        setup_say "not root: no link in /usr/local/bin; run $target or add $ASSETFS_VENV/bin to PATH"
        echo "$target"
        return 0
    fi
    if link_to_venv "$ASSETFS_BIN_DIR/assetfs" "$target" "assetfs on PATH" >&2; then
        echo assetfs
    else
        echo "$target"
    fi
}

# As root, let `mount -t fuse.assetfs` and fstab lines work: mount(8) runs
# /sbin/mount.<type> (it looks in /sbin only). A link to the venv's helper (docs/service.md).
ensure_mount_helper() {
    if [ "$(id -u)" -ne 0 ] && [ "$ASSETFS_SBIN_DIR" = /sbin ]; then
        setup_say "not root: no mount helper in /sbin; mount -t fuse.assetfs will not work (assetfs mount does)"
        return 0
    fi
    link_to_venv "$ASSETFS_SBIN_DIR/mount.fuse.assetfs" "$ASSETFS_VENV/bin/mount.fuse.assetfs" \
        "mount -t fuse.assetfs, fstab" || true
}

# pip install -e SPEC ('.' or '.[EXTRAS]') into .venv, quietly; on failure show the log's
# tail and stop.
pip_install_project() {
    local spec="$1" log="$2"
    if ! (cd "$ASSETFS_ROOT" &&
          "$ASSETFS_VENV/bin/python" -m pip install --disable-pip-version-check \
              --no-input -e "$spec") >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        setup_die "pip install -e '$spec' failed (full log: $log)"
    fi
}

ensure_venv_extra() {
    local extra="$1" module="$2"
    if "$ASSETFS_VENV/bin/python" -c "import $module" 2>/dev/null; then
        setup_say "venv has the '$extra' extra ($module)"
        return 0
    fi
    pip_install_project ".[test,$extra]" "$ASSETFS_VENV/pip-install-$extra.log"
    setup_say "venv installed the '$extra' extra (pip install -e '.[test,$extra]')"
}

# psql as the postgres superuser over the local socket.
postgres_admin_psql() {
    (cd / && as_root runuser -u postgres -- \
        psql -X -q -At -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@")
}

# Sets PG_VERSION, PG_CLUSTER and PG_PORT from pg_lsclusters: a running cluster if there is
# one, else the newest. Returns 1 when no cluster exists.
postgres_pick_cluster() {
    local line ver name port status picked=""
    while read -r ver name port status _; do
        [ -n "$ver" ] || continue
        line="$ver $name $port"
        case "$status" in
            online*) picked="$line"; break ;;
            *) picked="$line" ;;
        esac
    done < <(pg_lsclusters --no-header 2>/dev/null)
    [ -n "$picked" ] || return 1
    read -r PG_VERSION PG_CLUSTER PG_PORT <<<"$picked"
}

postgres_cluster_online() {
    pg_lsclusters --no-header "$PG_VERSION" "$PG_CLUSTER" 2>/dev/null | awk '{print $4}' |
        grep -q '^online'
}

postgres_start_cluster() {
    command -v pg_lsclusters >/dev/null 2>&1 ||
        setup_die "pg_lsclusters not found; is the postgresql package installed?"

    if ! postgres_pick_cluster; then
        local newest
        newest="$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)"
        [ -n "$newest" ] || setup_die "no PostgreSQL server found in /usr/lib/postgresql"
        as_root pg_createcluster --locale C.UTF-8 --encoding UTF8 "$newest" main >/dev/null ||
            setup_die "pg_createcluster $newest main failed"
        postgres_pick_cluster || setup_die "pg_createcluster did not create a cluster"
        setup_say "postgres cluster $PG_VERSION/$PG_CLUSTER created"
    fi

    if ! postgres_cluster_online; then
        as_root pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start ||
            setup_die "could not start postgres $PG_VERSION/$PG_CLUSTER" \
                "(see /var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log)"
    fi

    local tries=0
    until pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; do
        tries=$((tries + 1))
        [ "$tries" -lt 150 ] ||
            setup_die "postgres $PG_VERSION/$PG_CLUSTER does not accept connections on 127.0.0.1:$PG_PORT"
        sleep 0.2
    done
    setup_say "postgres $PG_VERSION/$PG_CLUSTER running on $PG_PORT"
}

postgres_ensure_role() {
    # The password is (re)set on every run so that a role left over with another password
    # still works with the URL below. CREATEDB: each test gets its own database; CREATEROLE:
    # a test makes a read-only role (tests/test_upgrade.py).
    postgres_admin_psql <<SQL
SELECT format('CREATE ROLE %I', '$ASSETFS_PG_ROLE')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ASSETFS_PG_ROLE')\gexec
ALTER ROLE $ASSETFS_PG_ROLE LOGIN CREATEDB CREATEROLE PASSWORD '$ASSETFS_PG_PASSWORD';
SQL
}

ensure_postgres_database() {
    local db="$1"
    [ -n "$PG_PORT" ] || setup_die "ensure_postgres_database: call ensure_postgres first"
    postgres_admin_psql <<SQL
SELECT format('CREATE DATABASE %I OWNER %I', '$db', '$ASSETFS_PG_ROLE')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db')\gexec
ALTER DATABASE "$db" OWNER TO $ASSETFS_PG_ROLE;
SQL
    # Prove the URL works: password auth over TCP, as the role the tests use.
    psql -X -q -At -v ON_ERROR_STOP=1 -d "$(postgres_test_url "$db")" -c 'SELECT 1' >/dev/null ||
        setup_die "cannot connect as $ASSETFS_PG_ROLE to $db on 127.0.0.1:$PG_PORT (check pg_hba.conf)"
}

ensure_postgres() {
    postgres_start_cluster
    postgres_ensure_role
    ensure_postgres_database "$ASSETFS_PG_DATABASE"
    setup_say "database ready: $(postgres_test_url)"
}

postgres_test_url() {
    local db="${1:-$ASSETFS_PG_DATABASE}"
    if [ -z "$PG_PORT" ]; then
        postgres_pick_cluster || setup_die "no PostgreSQL cluster; run ensure_postgres first"
    fi
    echo "postgresql://$ASSETFS_PG_ROLE:$ASSETFS_PG_PASSWORD@127.0.0.1:$PG_PORT/$db"
}
