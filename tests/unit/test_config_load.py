"""Workload files: the examples load cleanly and every kind of mistake gets a located message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mastercontrol.config.load import load_config_dir, load_config_files
from mastercontrol.config.model import CatchUp, RunMode, WorkloadType

REPO = Path(__file__).resolve().parents[2]
BROKEN = Path(__file__).parent / "configs_broken"

# Fixture file -> the exact start of its one problem message (after "configs_broken/").
EXPECTED = {
    "unknown_field.yaml": "4: schedul: unknown field; did you mean 'schedule'?",
    "wrong_type.yaml": "4: max_runs: expected an integer, got 'three'",
    "missing_name.yaml": "2: name: missing required field",
    "missing_type.yaml": "1: type: missing required field",
    "missing_module.yaml": "1: module: missing required field",
    "missing_schedule.yaml": "1: schedule: missing required field for run_mode schedule",
    "missing_max_runs.yaml": "1: max_runs: missing required field for run_mode n_times",
    "nice_range.yaml": "4: cpu_nice: must be between -20 and 19, got 25",
    "memory_too_small.yaml": "4: memory_limit_mb: must be between 16 and",
    "timeout_zero.yaml": "4: timeout: must be greater than 0",
    "port_range.yaml": "5: health_check.tcp: must be a port between 1 and 65535, got 70000",
    "bad_cron.yaml": "4: schedule: invalid cron expression '61 * * * *'",
    "bad_enum.yaml": "2: type: expected one of agent, script, service, got 'agnet'; "
    "did you mean 'agent'?",
    "schedule_not_schedule_mode.yaml": "4: schedule: only used with run_mode schedule",
    "max_runs_not_n_times.yaml": "5: max_runs: only used with run_mode n_times",
    "module_and_command.yaml": "4: command: give module or command, not both",
    "command_with_entry_point.yaml": "4: entry_point: only used with module, not with command",
    "catch_up_without_schedule.yaml": "5: catch_up: only used with run_mode schedule",
    "health_check_not_forever.yaml": "5: health_check: only used with run_mode forever",
    "health_check_no_probe.yaml": "4: health_check: needs one probe",
    "health_check_two_probes.yaml": "6: health_check.http: give only one probe",
    "dup_name_b.yaml": "2: name: duplicate workload name 'dup_name' "
    "(also in configs_broken/dup_name_a.yaml:1)",
    "top_level_list.yaml": "1: top level must be a mapping of workload settings, got a list",
    "empty.yaml": "1: file is empty",
    "syntax_error.yaml": "3:7: YAML syntax error: expected ',' or ']'",
    "duplicate_key.yaml": "5: max_runs: duplicate key (first at line 4)",
    "coerced_version.yaml": '5: version: YAML reads 1.10 as the number 1.1; quote it: "1.10"',
    "coerced_schedule.yaml": "4: schedule: YAML reads 12:30 as the number 750 (base 60); quote",
    "coerced_name.yaml": '1: name: YAML reads no as the boolean false; quote it: "no"',
    "python_tag.yaml": "6: params.x: tag !!python/object/apply:os.getcwd is not allowed",
}


@pytest.fixture(scope="module")
def broken() -> list[str]:
    # Relative path on purpose: messages must name files the way the caller named the dir.
    cwd = os.getcwd()
    os.chdir(BROKEN.parent)
    try:
        return load_config_dir("configs_broken").problems
    finally:
        os.chdir(cwd)


def test_examples_load_without_problems() -> None:
    configs = load_config_dir(REPO / "examples" / "configs")
    assert configs.problems == []
    assert configs.ok
    assert set(configs.workloads) == {"hello_agent", "data_collector", "ticker", "counter"}
    assert configs.workloads["counter"].max_runs == 3
    assert configs.workloads["counter"].run_mode is RunMode.N_TIMES
    assert configs.workloads["ticker"].run_mode is RunMode.FOREVER
    collector = configs.workloads["data_collector"]
    assert collector.params == {"source_url": "https://api.example.com/data", "batch_size": 100}
    assert collector.source.endswith("data_collector.yaml")
    assert collector.source_line == 2


def test_every_broken_fixture_has_an_expectation() -> None:
    fixtures = {p.name for p in BROKEN.glob("*.yaml")} - {"dup_name_a.yaml"}
    assert fixtures == set(EXPECTED)


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_broken_file_reports_located_problem(broken: list[str], filename: str) -> None:
    mine = [p for p in broken if p.startswith(f"configs_broken/{filename}:")]
    assert len(mine) == 1, mine
    expected = f"configs_broken/{filename}:{EXPECTED[filename]}"
    assert mine[0].startswith(expected), mine[0]
    assert "\n" not in mine[0]


def test_broken_files_contribute_no_workload_but_first_duplicate_stays() -> None:
    configs = load_config_dir(BROKEN)
    assert list(configs.workloads) == ["dup_name"]
    assert configs.workloads["dup_name"].max_runs == 1  # dup_name_a.yaml, the first by name
    assert not configs.ok


def test_bad_file_does_not_stop_good_ones() -> None:
    good = "name: good\ntype: service\nmodule: examples.services.ticker\n"
    configs = load_config_files(
        {"a_bad.yaml": "name: bad\ntype: nope\nmodule: m\n", "b_good.yaml": good}
    )
    assert list(configs.workloads) == ["good"]
    assert configs.problems[0].startswith("a_bad.yaml:2: type: expected one of")


def test_problems_are_sorted_by_file_then_line() -> None:
    files = {
        "b.yaml": "name: b\ntype: agent\nmodule: m\nschedule: '* * * * *'\ncpu_nice: 99\nfoo: 1\n",
        "a.yaml": "name: a\ntype: agent\nmodule: m\nbar: 1\nschedule: 'x'\n",
    }
    problems = load_config_files(files).problems
    assert [p.split(": ")[0] for p in problems] == ["a.yaml:4", "a.yaml:5", "b.yaml:5", "b.yaml:6"]


def test_defaults_by_type_and_explicit_run_mode() -> None:
    files = {
        "agent.yaml": "name: ag\ntype: agent\nmodule: m\nschedule: '@hourly'\ncatch_up: once\n",
        "script.yaml": "name: sc\ntype: script\nmodule: m\nmax_runs: 2\n",
        "svc.yaml": "name: sv\ntype: service\ncommand: sleep 60\n",
        "agent_forever.yaml": "name: af\ntype: agent\nrun_mode: forever\nmodule: m\n",
    }
    configs = load_config_files(files)
    assert configs.problems == []
    w = configs.workloads
    assert w["ag"].run_mode is RunMode.SCHEDULE and w["ag"].catch_up is CatchUp.ONCE
    assert w["sc"].run_mode is RunMode.N_TIMES and w["sc"].type is WorkloadType.SCRIPT
    assert w["sv"].run_mode is RunMode.FOREVER and w["sv"].command == ("sleep", "60")
    assert w["af"].run_mode is RunMode.FOREVER


def test_missing_config_dir_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    configs = load_config_dir(tmp_path / "nope")
    assert configs.problems == [f"{tmp_path / 'nope'}: config directory not found"]
    assert configs.workloads == {}


def test_daemon_and_inventory_files_are_not_workloads(tmp_path: Path) -> None:
    (tmp_path / "daemon.yaml").write_text("daemon:\n  log_backups: 7\n")
    (tmp_path / "inventory.yaml").write_text("clients: []\n")
    (tmp_path / "notes.txt").write_text("not yaml at all: [")
    (tmp_path / "w.yml").write_text("name: w\ntype: service\nmodule: examples.services.ticker\n")
    configs = load_config_dir(tmp_path)
    assert configs.problems == []
    assert list(configs.workloads) == ["w"]
    assert configs.daemon.daemon.log_backups == 7
    # daemon.yaml's log settings are the workloads' defaults
    assert configs.workloads["w"].log_backups == 7


def test_bad_daemon_yaml_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "daemon.yaml").write_text("daemon:\n  log_level: loud\n")
    configs = load_config_dir(tmp_path)
    assert configs.problems == [
        f"{tmp_path}/daemon.yaml:2: daemon.log_level: "
        "expected one of debug, info, warning, error, got 'loud'"
    ]


def test_in_memory_files_must_be_yaml_names() -> None:
    configs = load_config_files({"run.sh": "echo hi"})
    assert configs.problems == ["run.sh: not a workload file: the name must end in .yaml or .yml"]


def test_unreadable_utf8_is_reported_with_line(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_bytes(b"name: w\ntype: \xff\n")
    assert load_config_dir(tmp_path).problems == [f"{tmp_path}/w.yaml:2: not UTF-8 text (byte 14)"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_runs: yes", "3: max_runs: expected an integer, got the boolean true"),
        ("max_runs: 0", "3: max_runs: must be 1 or more, got 0"),
        ("params: [1, 2]", "4: params: expected a mapping, got a list"),
        (
            "tags: [ok, 1.0]",
            '4: tags: item 2: YAML reads 1.0 as a number, not text; quote it: "1.0"',
        ),
        ("env: {PORT: 8080, DEBUG: on}", "4: env: DEBUG: YAML reads on as the boolean true"),
        ("env: {BAD-NAME: x}", "4: env: 'BAD-NAME' is not an environment variable name"),
        ("version: 2024-01-01", "4: version: YAML reads 2024-01-01 as a date"),
        ("stop_signal: KILL", "4: stop_signal: expected one of TERM, INT, QUIT, HUP, USR1, USR2"),
        ("entry_point: 1abc", "4: entry_point: '1abc' is not a Python name"),
        ("working_dir: relative/dir", "4: working_dir: must be an absolute path"),
        ("restart_delay: 10\nrestart_delay_max: 5", "5: restart_delay_max: must not be less than"),
        ("timeout: .inf", "4: timeout: expected a number, got the number .inf"),
        ("memory_limit_mb: 268435456", "4: memory_limit_mb: must be between 16 and 65536"),
        ("entry_point:", "4: entry_point: expected a string, got nothing (null)"),
    ],
)
def test_field_problem(line: str, message: str) -> None:
    text = f"name: w\ntype: script\nmax_runs: 2\n{line}\nmodule: m\n"
    if line.startswith("max_runs"):
        text = f"name: w\ntype: script\n{line}\nmodule: m\n"
    problems = load_config_files({"w.yaml": text}).problems
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"w.yaml:{message}"), problems[0]


def test_lossless_values_are_accepted() -> None:
    text = (
        "name: 123\ntype: service\nmodule: m\nversion: 2\nenv: {PORT: 8080}\n"
        "stop_signal: SIGINT\nparams: {yes: no, n: 1.5}\nenabled: false\n"
    )
    configs = load_config_files({"w.yaml": text})
    assert configs.problems == []
    w = configs.workloads["123"]
    assert (w.version, w.env, w.stop_signal) == ("2", {"PORT": "8080"}, "INT")
    assert w.params == {"yes": False, "n": 1.5}  # params are free-form YAML data
    assert w.enabled is False


def test_null_optional_field_means_not_set() -> None:
    text = "name: w\ntype: service\nmodule: m\ntimeout:\nversion: ~\n"
    configs = load_config_files({"w.yaml": text})
    assert configs.problems == []
    assert configs.workloads["w"].timeout is None


def test_health_check_is_built() -> None:
    text = "name: web\ntype: service\ncommand: [python3, -m, http.server]\nhealth_check:\n"
    text += "  http: http://127.0.0.1:8000/\n  interval: 5\n  failures: 2\n"
    configs = load_config_files({"web.yaml": text})
    assert configs.problems == []
    check = configs.workloads["web"].health_check
    assert check is not None
    assert (check.http, check.interval, check.failures, check.tcp) == (
        "http://127.0.0.1:8000",
        5.0,
        2,
        None,
    )
