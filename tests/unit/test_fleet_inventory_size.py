"""inventory.yaml lists a whole fleet: it may hold more values than any other file (3,000
clients are over 10,000 values; the central's target is 50,000 clients), while the bound that
stops alias bombs still holds for it and for every other file."""

from __future__ import annotations

import json
from pathlib import Path

from mastercontrol.config.load import load_daemon_config, load_inventory


def test_a_large_fleet_inventory_loads(tmp_path: Path) -> None:
    clients = [{"name": f"pi-{i:05d}", "host": f"10.0.{i // 256}.{i % 256}", "api_token": f"t{i}"}
               for i in range(3_000)]  # fmt: skip
    path = tmp_path / "inventory.yaml"
    path.write_text(json.dumps({"clients": clients}))
    inventory, problems = load_inventory(path)
    assert problems == []
    assert len(inventory.clients) == 3_000
    assert inventory.clients[-1].api_token == "t2999"


BOMB = """\
a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
"""


def test_an_alias_bomb_is_still_refused(tmp_path: Path) -> None:
    (tmp_path / "inventory.yaml").write_text(BOMB)
    _, problems = load_inventory(tmp_path / "inventory.yaml")
    assert any("too many values (over 1000000" in p for p in problems), problems
    (tmp_path / "daemon.yaml").write_text(BOMB)
    _, problems = load_daemon_config(tmp_path / "daemon.yaml")
    assert any("too many values (over 10000," in p for p in problems), problems
