"""Pure parts of the deployer: waves and outcomes, the health gate's rule and its polling with a
fake clock, release ids, and quoting of every remote command."""

from __future__ import annotations

import shlex

import pytest

from mastercontrol.config.model import InventoryClient
from mastercontrol.deploy import gate, layout, plan
from mastercontrol.deploy.plan import Outcome, Status
from mastercontrol.errors import DeployError


def clients(n: int, tags: tuple[str, ...] = ()) -> list[InventoryClient]:
    return [InventoryClient(name=f"pi-{i}", host="127.0.0.1", tags=tags) for i in range(n)]


def test_waves_keep_inventory_order_batch_at_a_time() -> None:
    names = [[c.name for c in w] for w in plan.waves(clients(5), 2)]
    assert names == [["pi-0", "pi-1"], ["pi-2", "pi-3"], ["pi-4"]]
    with pytest.raises(ValueError):
        plan.waves(clients(1), 0)


def test_select_by_name_and_tag_and_report_unknown_names() -> None:
    pool = [*clients(3), InventoryClient(name="cam", host="h", tags=("camera",))]
    chosen, unknown = plan.select(pool, ("pi-1", "nope"))
    assert [c.name for c in chosen] == ["pi-1"] and unknown == ["nope"]
    chosen, _ = plan.select(pool, (), "camera")
    assert [c.name for c in chosen] == ["cam"]


@pytest.mark.parametrize(
    ("outcomes", "stopped", "status"),
    [
        ([Outcome.UPDATED, Outcome.UPDATED], False, Status.SUCCEEDED),
        ([Outcome.UPDATED, Outcome.PENDING], False, Status.INCOMPLETE),
        ([Outcome.ROLLED_BACK, Outcome.UNTOUCHED], True, Status.FAILED),
        ([Outcome.UPDATED, Outcome.FAILED], False, Status.FAILED),
    ],
)
def test_final_status(outcomes: list[Outcome], stopped: bool, status: Status) -> None:
    assert plan.final_status(outcomes, stopped) is status


def test_pending_clients_do_not_fail_a_wave() -> None:
    assert not plan.wave_failed([plan.Result("a", Outcome.PENDING)])
    assert plan.wave_failed([plan.Result("a", Outcome.PENDING), plan.Result("b", Outcome.FAILED)])


def w(state: str, restarts: int = 0) -> dict[str, object]:
    return {"name": "svc", "state": state, "restarts": restarts}


@pytest.mark.parametrize(
    ("snap", "healthy", "final"),
    [
        (gate.Snapshot("r2", (w("RUNNING"),)), True, False),
        (gate.Snapshot("r1", (w("RUNNING"),)), False, False),  # old release still reported
        (gate.Snapshot("r2", (w("FATAL"),)), False, True),
        (gate.Snapshot("r2", (w("BACKOFF"),)), False, False),
        (gate.Snapshot("r2", (w("RUNNING", 2),)), False, False),  # restarted since the start
        (gate.Snapshot(error="refused"), False, False),
    ],
)
def test_judge(snap: gate.Snapshot, healthy: bool, final: bool) -> None:
    v = gate.judge(snap, "r2", {"svc": 0})
    assert (v.healthy, v.final) == (healthy, final)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_gate_passes_after_min_healthy_without_a_break_and_fails_at_the_deadline() -> None:
    clock = FakeClock()
    script = iter(
        [gate.Snapshot("r2", (w("STARTING"),))] + [gate.Snapshot("r2", (w("RUNNING"),))] * 100
    )
    verdicts = gate.wait(
        {"ok": lambda: next(script), "stuck": lambda: gate.Snapshot("r2", (w("BACKOFF"),))},
        "r2", 10.0, 2.0, clock=clock, sleep=clock.sleep, interval=0.5,
    )  # fmt: skip
    assert verdicts["ok"].healthy
    assert not verdicts["stuck"].healthy and "within 10s" in verdicts["stuck"].reason
    assert clock.now <= 10.5  # bounded by the deadline


def test_gate_fails_a_fatal_client_at_once() -> None:
    clock = FakeClock()
    verdicts = gate.wait({"a": lambda: gate.Snapshot("r2", (w("FATAL"),))}, "r2", 60, 5,
                         clock=clock, sleep=clock.sleep)  # fmt: skip
    assert not verdicts["a"].healthy and clock.now == 0.0


@pytest.mark.parametrize(
    "bad", ["", "../etc", "a b", "x;rm -rf /", "-rf", "$(id)", "a/b", "a" * 81]
)
def test_bad_release_ids_are_refused(bad: str) -> None:
    with pytest.raises(DeployError):
        layout.check_release_id(bad)


def test_new_release_ids_sort_by_time() -> None:
    a = layout.new_release_id("abc1234", now=1_700_000_000)
    b = layout.new_release_id(None, now=1_700_000_060)
    assert a == "20231114T221320Z-abc1234" and b.endswith("-nogit") and a < b


def test_every_value_in_remote_commands_is_quoted() -> None:
    where = layout.RemoteLayout("/opt/my dir;touch /tmp/pwned")
    cmd = layout.install_command(where, "r1", 5, "python3; reboot")
    argv = shlex.split(cmd)
    assert argv == ["sh", "/opt/my dir;touch /tmp/pwned/releases/r1/bootstrap.sh", "install",
                    "/opt/my dir;touch /tmp/pwned", "r1", "5", "python3; reboot"]  # fmt: skip
    assert shlex.split(layout.rollback_command(where, "r2", "r1"))[-1] == "r1"


def test_the_deployers_http_calls_never_send_the_token_after_a_redirect() -> None:
    """A client API or a central that redirects gets an error, not the token at a new place."""
    import http.server
    import threading

    from mastercontrol.deploy.central import Central
    from mastercontrol.deploy.gate import api_probe

    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            if self.path.startswith("/elsewhere"):
                seen.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                return
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{port}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        snap = api_probe(f"http://127.0.0.1:{port}", "secret-token", timeout=5)()
        assert snap.error is not None and "302" in snap.error
        central = Central(f"http://127.0.0.1:{port}", "secret-token")
        assert central.create({"release": "r1"}) is None and central.last_error
        assert seen == []
    finally:
        server.shutdown()
        server.server_close()


def _failed(name: str, *, before_switch: bool) -> plan.Result:
    return plan.Result(name, Outcome.FAILED, "x", before_switch=before_switch)


def test_max_failed_tolerates_only_failures_before_the_switch_within_the_count() -> None:
    ok = plan.Result("a", Outcome.UPDATED, switched=True)
    one = [ok, _failed("b", before_switch=True)]
    assert plan.tolerated(one, 0, 0) == []  # the default: stop at the first failure
    assert plan.tolerated(one, 0, 1) == [one[1]]
    assert plan.tolerated(one, 1, 1) == []  # an earlier wave's failure counts too
    two = [_failed("b", before_switch=True), _failed("c", before_switch=True)]
    assert plan.tolerated(two, 0, 1) == [] and plan.tolerated(two, 0, 2) == two
    # A client that may have switched (daemon did not start, connection lost) never is.
    unknown = [_failed("b", before_switch=True), _failed("c", before_switch=False)]
    assert plan.tolerated(unknown, 0, 5) == []
    assert plan.tolerated([ok], 0, 0) == []


def test_first_answer_keeps_the_first_probe_that_answers() -> None:
    silent = gate.Snapshot(error="connection refused")
    heard = gate.Snapshot(release="r2")
    assert gate.first_answer(lambda: silent, lambda: heard)() is heard
    both = gate.first_answer(lambda: silent, lambda: gate.Snapshot(error="central: no"))()
    assert both.error == "connection refused; central: no"


def test_the_centrals_view_counts_only_a_heartbeat_after_the_switch() -> None:
    from mastercontrol.deploy.central import Central

    class Stub(Central):
        answer: object = None

        def call(self, method: str, path: str, body: object = None) -> object:
            assert (method, path) == ("GET", "/api/v1/clients/pi-1")
            return self.answer

    central = Stub("http://central", "t")
    probe = central.health_probe("pi-1", since_wall=100.0)
    central.answer = {"release": "r2", "last_seen": 99.0, "workloads": []}
    assert probe().error == "central: no heartbeat from it since the switch yet"
    central.answer = {"release": "r2", "last_seen": 101.0,
                      "workloads": [{"name": "svc", "state": "RUNNING"}, "junk"]}  # fmt: skip
    snap = probe()
    assert (snap.error, snap.release, snap.workloads) == (
        None, "r2", ({"name": "svc", "state": "RUNNING"},),
    )  # fmt: skip
    central.answer = None
    assert probe().error == "central: no answer"
