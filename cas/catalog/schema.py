"""The catalog schema and its migrations; docs/schema.md explains every column.

Each migration is a list of statements written for both databases, with `{uuid}`,
`{serial_pk}` and `{float}` standing for the column types that differ. Where the databases
need different statements (SQLite cannot change a constraint in place), an item is a dict
of dialect → statements (`Dialects`).
"""

Dialects = dict[str, list[str]]

NODE_KINDS_9 = "'dir', 'file', 'symlink', 'fifo', 'socket', 'char', 'block'"

MIGRATIONS: list[list[str | Dialects]] = [
    # 1: the initial schema
    [
        """create table buckets (
            name text primary key,
            root_node bigint not null,
            created_at {float} not null
        )""",
        """create table blobs (
            hash text primary key,
            size bigint not null,
            created_at {float} not null
        )""",
        """create table objects (
            id {uuid} primary key,
            bucket text not null,
            hash text not null references blobs (hash),
            size bigint not null,
            content_type text not null,
            filename text not null,
            metadata text not null default '{{}}',
            created_at {float} not null,
            touched_at {float},
            deleted_at {float},
            purge_after {float},
            expires_at {float},
            trashed_names text
        )""",
        "create index objects_dedup on objects (bucket, hash) where deleted_at is null",
        "create index objects_hash on objects (hash)",
        "create index objects_bucket_id on objects (bucket, id)",
        "create index objects_touched on objects (touched_at) where touched_at is not null and deleted_at is null",
        "create index objects_purge on objects (purge_after) where deleted_at is not null",
        "create index objects_expires on objects (expires_at) where expires_at is not null and deleted_at is null",
        """create table nodes (
            id {serial_pk},
            bucket text not null,
            kind text not null check (kind in ('dir', 'file')),
            object_id {uuid} references objects (id),
            mode integer not null,
            uid integer not null,
            gid integer not null,
            mtime {float} not null,
            ctime {float} not null,
            xattrs text not null default '{{}}'
        )""",
        "create index nodes_object on nodes (object_id) where object_id is not null",
        """create table entries (
            parent_id bigint not null references nodes (id),
            name text not null,
            node_id bigint not null references nodes (id),
            primary key (parent_id, name)
        )""",
        "create index entries_node on entries (node_id)",
        """create table holds (
            object_id {uuid} not null references objects (id),
            owner text not null,
            created_at {float} not null,
            primary key (object_id, owner)
        )""",
    ],
    # 2: rows the garbage collector failed on, retried with backoff (docs/schema.md)
    [
        """create table gc_failures (
            pass text not null,
            item text not null,
            attempts integer not null,
            error text not null,
            failed_at {float} not null,
            retry_after {float} not null,
            primary key (pass, item)
        )""",
    ],
    # 3: find blobs of a given size (a put of a file already stored skips staging it)
    [
        "create index blobs_size on blobs (size)",
    ],
    # 4: the GC passes read in (key, id) order: with `id` in their indexes, a batch starts at
    # its place in the index instead of reading and sorting every row that shares its key
    # (a GC run trashes thousands of objects with one `purge_after`)
    [
        "drop index objects_touched",
        "create index objects_touched on objects (touched_at, id) where touched_at is not null and deleted_at is null",
        "drop index objects_purge",
        "create index objects_purge on objects (purge_after, id) where deleted_at is not null",
        "drop index objects_expires",
        "create index objects_expires on objects (expires_at, id) where expires_at is not null and deleted_at is null",
    ],
    # 5: put's dedup lookup (`bucket = and hash = ... order by id limit 1`) took objects_bucket_id,
    # for its order, and read every object of the bucket: SQLite's planner, without
    # statistics, prefers an index that gives the order. With `id` in the dedup index it
    # gives both.
    [
        "drop index objects_dedup",
        "create index objects_dedup on objects (bucket, hash, id) where deleted_at is null",
    ],
    # 6: the coherence of many writers (docs/concurrency.md, "Many writers"): a file node's
    # content version, which a commit compares with the one its writer started from, and the
    # path a node had when it lost its last name (a version committed after that goes to the
    # trash under it)
    [
        "alter table nodes add column version text",
        "alter table nodes add column last_path text",
    ],
    # 7: the mounts that run, and the nameless nodes each keeps for files open in it
    # (docs/concurrency.md, "Mount liveness")
    [
        """create table mounts (
            id text primary key,
            host text not null,
            pid integer not null,
            started_at {float} not null,
            heartbeat {float} not null
        )""",
        """create table mount_nodes (
            node_id bigint primary key,
            mount_id text not null
        )""",
        "create index mount_nodes_mount on mount_nodes (mount_id)",
    ],
    # 8: bearer tokens of the HTTP server, stored hashed (docs/schema.md, cas/tokens.py)
    [
        """create table tokens (
            id text primary key,
            secret_hash text not null,
            buckets text not null,
            can_read integer not null,
            can_write integer not null,
            created_at {float} not null,
            expires_at {float}
        )""",
    ],
    # 9: the POSIX that tools rely on (docs/fuse.md, "Symlinks, special files and times"): a
    # node may be a symbolic link (its `target`), a FIFO, a socket or a device (`rdev`), and
    # keeps its own `atime`; a folder counts its subfolders (`subdirs`: its st_nlink is 2 +
    # them, without counting its entries at every stat). SQLite cannot change the `kind` check in place: the table is
    # rebuilt (with the foreign keys of `entries` checked at the commit, and the
    # AUTOINCREMENT counter kept, so no node id is ever used twice).
    [
        {
            "postgres": [
                "alter table nodes drop constraint nodes_kind_check",
                f"alter table nodes add constraint nodes_kind_check check (kind in ({NODE_KINDS_9}))",
                "alter table nodes add column atime {float}",
                "alter table nodes add column target text",
                "alter table nodes add column rdev bigint",
                "alter table nodes add column subdirs integer not null default 0",
            ],
            "sqlite": [
                "pragma defer_foreign_keys = on",
                "create temp table nodes_sequence as select seq from sqlite_sequence where name = 'nodes'",
                "create temp table nodes_copy as select * from nodes",
                "drop table nodes",
                f"""create table nodes (
                    id {{serial_pk}},
                    bucket text not null,
                    kind text not null check (kind in ({NODE_KINDS_9})),
                    object_id {{uuid}} references objects (id),
                    mode integer not null,
                    uid integer not null,
                    gid integer not null,
                    mtime {{float}} not null,
                    ctime {{float}} not null,
                    xattrs text not null default '{{{{}}}}',
                    version text,
                    last_path text,
                    atime {{float}},
                    target text,
                    rdev bigint,
                    subdirs integer not null default 0
                )""",
                "insert into nodes (id, bucket, kind, object_id, mode, uid, gid, mtime, ctime, xattrs, version, last_path) "
                "select id, bucket, kind, object_id, mode, uid, gid, mtime, ctime, xattrs, version, last_path from nodes_copy",
                "drop table nodes_copy",
                "create index nodes_object on nodes (object_id) where object_id is not null",
                "insert into sqlite_sequence (name, seq) select 'nodes', 0 "
                "where not exists (select 1 from sqlite_sequence where name = 'nodes')",
                "update sqlite_sequence set seq = max(seq, coalesce((select seq from nodes_sequence), 0)) "
                "where name = 'nodes'",
                "drop table nodes_sequence",
            ],
        },
        "update nodes set atime = mtime",
        "update nodes set subdirs = (select count(*) from entries e join nodes k on k.id = e.node_id "
        "where e.parent_id = nodes.id and k.kind = 'dir') where kind = 'dir'",
    ],
    # 10: when a file's mtime was last set explicitly (utimens, `touch -d`): a mount's commit
    # keeps the mtime of its close unless one was set after it (docs/concurrency.md, "Times")
    [
        "alter table nodes add column mtime_set_at {float}",
    ],
    # 11: the store's id, also written in its blob tree (a server whose tree is another one
    # refuses to run), and the collector's sweep pauses that a backup's dump takes
    # (docs/schema.md, docs/backup.md)
    [
        """create table store (
            id text primary key,
            created_at {float} not null
        )""",
        """create table sweep_pauses (
            id text primary key,
            started_at {float} not null,
            ends_at {float} not null
        )""",
    ],
    # 12: the on-disk layout's versions (docs/design.md, "Alias layout"): aliases version 1
    # (objects/<bucket>/<id[0:2]>/<id>) where objects exist, else 2 (sharded by the id's last
    # four hex digits); `cas/layout.py` moves the aliases and records 2. An assetfs older than
    # this migration refuses the catalog, so none writes aliases at the old place once it ran.
    [
        "create table store_layout (part text primary key, version integer not null)",
        "insert into store_layout (part, version) "
        "select 'aliases', case when exists (select 1 from objects) then 1 else 2 end",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)

VERSION_TABLE = "create table if not exists schema_version (version integer primary key, applied_at {float} not null)"
