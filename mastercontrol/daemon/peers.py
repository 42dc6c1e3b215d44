"""Who is on the other end of an IPC connection, and what they may do.

The socket's file mode is the first gate, not the only one: a loosened mode (chmod, a
`daemon.read_group`) must not make every local user the operator. Each accepted connection's
credentials are read once with SO_PEERCRED (pid, uid, gid as the kernel saw them at connect)
and mapped to an `Access`: FULL for root, the daemon's own uid and members of
`daemon.socket_group`; READ for members of `daemon.read_group`; NONE for anyone else. Group
membership is the peer process's own: its gid and the supplementary groups of the `Groups:`
line of /proc/<pid>/status; only when that cannot be read (the peer already exited) do the
member lists of /etc/group, read once at start, stand in. Nothing here blocks: the group
lookups happen in `AccessPolicy.from_names`, before the loop runs. Imports only the standard
library and mastercontrol.ipc.protocol.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from dataclasses import dataclass

from mastercontrol.ipc.protocol import Access

_UCRED = struct.Struct("3i")  # struct ucred: pid_t pid, uid_t uid, gid_t gid


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int

    def describe(self) -> str:
        return f"uid {self.uid} (pid {self.pid})"


def peer_of(sock: socket.socket) -> Peer | None:
    """The credentials of a Unix socket's peer; None if the kernel gives none."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid, uid, gid)


def process_groups(pid: int) -> set[int] | None:
    """The supplementary gids of process `pid` (its /proc status `Groups:` line); None when
    the process is gone or /proc cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:] if g.isdigit()}
    except OSError:
        return None
    return set()


@dataclass(frozen=True)
class GroupRule:
    """A group by gid, with the uids /etc/group lists as its members (the fallback)."""

    name: str
    gid: int
    member_uids: frozenset[int]

    @classmethod
    def lookup(cls, name: str) -> GroupRule:
        """KeyError when no such group exists."""
        entry = grp.getgrnam(name)
        uids = set()
        for member in entry.gr_mem:
            try:
                uids.add(pwd.getpwnam(member).pw_uid)
            except KeyError:
                continue  # a stale member name: no such user
        return cls(name, entry.gr_gid, frozenset(uids))

    def holds(self, peer: Peer, groups: set[int] | None) -> bool:
        if peer.gid == self.gid:
            return True
        if groups is not None:
            return self.gid in groups
        return peer.uid in self.member_uids


@dataclass(frozen=True)
class AccessPolicy:
    daemon_uid: int
    full: GroupRule | None = None  # daemon.socket_group
    read: GroupRule | None = None  # daemon.read_group

    @classmethod
    def from_names(cls, socket_group: str | None, read_group: str | None) -> AccessPolicy:
        """The policy for this daemon; KeyError naming the group when one does not exist."""
        full = GroupRule.lookup(socket_group) if socket_group else None
        read = GroupRule.lookup(read_group) if read_group else None
        return cls(os.getuid(), full, read)

    def access(self, peer: Peer | None) -> Access:
        if peer is None:
            return Access.NONE
        if peer.uid in (0, self.daemon_uid):
            return Access.FULL
        if self.full is None and self.read is None:
            return Access.NONE
        groups = process_groups(peer.pid)
        if self.full is not None and self.full.holds(peer, groups):
            return Access.FULL
        if self.read is not None and self.read.holds(peer, groups):
            return Access.READ
        return Access.NONE

    def allowed(self) -> str:
        """Who may run every command, for the refusal message."""
        who = ["root", f"uid {self.daemon_uid}"] if self.daemon_uid else ["root"]
        if self.full is not None:
            who.append(f"group {self.full.name}")
        return ", ".join(who)
