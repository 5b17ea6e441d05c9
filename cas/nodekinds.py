"""The kinds of node in a bucket's named tree (`nodes.kind`, docs/schema.md) and the file
types they are: folders and files, and the nodes that hold no content (symbolic links,
FIFOs, sockets, devices; docs/fuse.md, "Symlinks, special files and times").

Only a `file` node refers to an object. A symlink keeps its target in `nodes.target`, a
device its number in `nodes.rdev`; FIFOs and sockets are only names with an owner and mode
(the kernel gives them their behaviour on the client side, as it resolves symlinks).
"""

import errno
import stat

from cas.errors import BadInput

DIR, FILE, SYMLINK = "dir", "file", "symlink"
FILE_TYPES = {
    DIR: stat.S_IFDIR,
    FILE: stat.S_IFREG,
    SYMLINK: stat.S_IFLNK,
    "fifo": stat.S_IFIFO,
    "socket": stat.S_IFSOCK,
    "char": stat.S_IFCHR,
    "block": stat.S_IFBLK,
}
KIND_OF_TYPE = {file_type: kind for kind, file_type in FILE_TYPES.items()}
DEVICES = {"char", "block"}
SYMLINK_MODE = 0o777  # what a symlink shows; its own mode is never used (Linux has no lchmod)
MAX_TARGET_BYTES = 4095  # PATH_MAX less its NUL


def file_type(kind: str) -> int:
    """The `stat.S_IF*` bits of a node kind."""
    return FILE_TYPES[kind]


def kind_of_mode(mode: int) -> str:
    """The node kind that a mknod(2) mode asks for; EINVAL for a type that is no file type."""
    kind = KIND_OF_TYPE.get(stat.S_IFMT(mode))
    if kind is None or kind in (DIR, SYMLINK):  # mknod makes neither (mkdir and symlink do)
        raise BadInput(f"mknod cannot make file type {stat.S_IFMT(mode):o}", errno.EINVAL)
    return kind


def describe(kind: str) -> str:
    """A node kind in words, for messages."""
    return {DIR: "folder", SYMLINK: "symbolic link", "fifo": "FIFO", "char": "character device",
            "block": "block device"}.get(kind, kind)


def symlink_target(target: bytes) -> str:
    """A symlink's target as the catalog keeps it: UTF-8 text like every name (EILSEQ
    otherwise), not empty (ENOENT, as symlink(2) says), at most MAX_TARGET_BYTES."""
    if not target:
        raise BadInput("a symbolic link needs a target", errno.ENOENT)
    if len(target) > MAX_TARGET_BYTES:
        raise BadInput(f"a symbolic link's target is at most {MAX_TARGET_BYTES} bytes", errno.ENAMETOOLONG)
    if b"\0" in target:
        raise BadInput("a symbolic link's target has a NUL byte", errno.EINVAL)
    try:
        return target.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("a symbolic link's target is not UTF-8", errno.EILSEQ) from None
