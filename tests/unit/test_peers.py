"""Who may run what over the IPC socket (mastercontrol.daemon.peers and COMMAND_ACCESS): pure
decisions on given credentials; the real SO_PEERCRED path is in
tests/faults/test_peer_credentials.py."""

from __future__ import annotations

import os
import socket

from mastercontrol.daemon.peers import AccessPolicy, GroupRule, Peer, peer_of, process_groups
from mastercontrol.ipc.protocol import COMMAND_ACCESS, COMMANDS, Access

OPS = GroupRule("ops", 1001, frozenset({2002}))
VIEW = GroupRule("view", 1002, frozenset())
POLICY = AccessPolicy(daemon_uid=500, full=OPS, read=VIEW)
GONE = 2**22 + 12345  # above any pid_max: no /proc entry, so the fallback is used


def test_every_command_is_classified_and_only_lookups_are_read_only() -> None:
    assert set(COMMAND_ACCESS) == set(COMMANDS)
    read_only = {c for c, need in COMMAND_ACCESS.items() if need is Access.READ}
    assert read_only == {"ping", "list", "status", "logs"}


def test_root_and_the_daemon_user_get_everything() -> None:
    assert POLICY.access(Peer(GONE, 0, 0)) is Access.FULL
    assert POLICY.access(Peer(GONE, 500, 500)) is Access.FULL


def test_groups_by_primary_gid_or_by_the_member_list_when_proc_is_gone() -> None:
    assert POLICY.access(Peer(GONE, 3000, 1001)) is Access.FULL
    assert POLICY.access(Peer(GONE, 2002, 3000)) is Access.FULL  # listed in /etc/group
    assert POLICY.access(Peer(GONE, 3000, 1002)) is Access.READ
    assert POLICY.access(Peer(GONE, 3000, 3000)) is Access.NONE
    assert POLICY.access(None) is Access.NONE


def test_without_groups_only_root_and_the_daemon_user() -> None:
    assert AccessPolicy(500).access(Peer(GONE, 3000, 1001)) is Access.NONE


def test_supplementary_groups_come_from_the_live_process() -> None:
    mine = process_groups(os.getpid())
    assert mine == set(os.getgroups())
    assert process_groups(GONE) is None
    rule = GroupRule("x", 4242, frozenset({os.getuid()}))
    me = Peer(os.getpid(), os.getuid(), os.getgid())
    # /proc is readable: its Groups line wins over the member list.
    assert rule.holds(me, process_groups(me.pid)) == (4242 in os.getgroups())


def test_peer_of_a_socketpair_is_this_process() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        assert peer_of(a) == Peer(os.getpid(), os.getuid(), os.getgid())
