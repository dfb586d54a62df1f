"""The ``routilux`` command line: targets, parameters, exit statuses, errors and help."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from routilux.cli import MISSING_EXTRA, main
from routilux.cli._app import cli
from routilux.cli._targets import CliUsageError, load_params, parse_param

FLOWS = textwrap.dedent(
    '''
    from routilux import Flow, Routine


    class Double(Routine):
        type_name = "clitest.Double"

        def __init__(self):
            super().__init__()
            self.add_slot("input")
            self.set_logic(self._run)

        def _run(self, slot_data, policy_message, job_state):
            for p in slot_data["input"]:
                if p.get("fail"):
                    raise ValueError("asked to fail")
                job_state.shared_data["doubled"] = p["n"] * 2
                self.send_output("result", n=p["n"] * 2)


    def build_flow():
        flow = Flow(flow_id="double")
        flow.add_routine(Double(), "double")
        return flow


    flow = build_flow()
    not_a_flow = 42
    '''
)


@pytest.fixture
def flows_py(tmp_path: Path) -> Path:
    path = tmp_path / "cliflows.py"
    path.write_text(FLOWS, encoding="utf-8")
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="routilux")


class TestRun:
    def test_completed_job_exits_0_with_summary(self, flows_py: Path) -> None:
        result = invoke("run", f"{flows_py}:flow", "--param", "n=21")
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0].startswith("running flow 'double'")
        assert any(line.startswith("completed in ") for line in lines)
        assert "  shared_data['doubled'] = 42" in lines
        row = next(line.split() for line in lines if line.startswith("double "))
        assert row[:3] == ["double", "1", "0"]  # one activation, no error

    def test_failed_job_exits_1_and_names_the_error(self, flows_py: Path) -> None:
        result = invoke("run", f"{flows_py}:flow", "--param", "n=1", "--param", "fail=true")
        assert result.exit_code == 1
        assert "error in routine 'double': ValueError: asked to fail" in result.stdout

    def test_json_summary(self, flows_py: Path) -> None:
        result = invoke("run", f"{flows_py}:build_flow", "--json", "-p", "n=5")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["status"] == "completed" and data["flow_id"] == "double"
        assert data["shared_data"] == {"doubled": 10}
        assert data["output_log"][0]["data"] == {"n": 10}
        assert data["routines"]["double"]["activations"] == 1
        assert data["error"] is None

    def test_params_file_then_param_overrides(self, flows_py: Path, tmp_path: Path) -> None:
        params = tmp_path / "p.json"
        params.write_text('{"n": 3, "fail": true}', encoding="utf-8")
        result = invoke("run", f"{flows_py}:flow", "--params-file", str(params),
                        "--param", "fail=false", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["shared_data"] == {"doubled": 6}

    @pytest.mark.parametrize(
        ("target", "message"),
        [
            ("missing.yaml", "error: no such file: missing.yaml"),
            ("no_such_module_xyz:flow", "error: no module named 'no_such_module_xyz'"),
            ("{py}:nope", "has no attribute 'nope'"),
            ("{py}:not_a_flow", "is a int, not a Flow"),
            ("{py}", "unsupported file type '.py'"),
        ],
    )
    def test_bad_targets_are_one_line_usage_errors(
        self, flows_py: Path, target: str, message: str
    ) -> None:
        result = invoke("run", target.format(py=flows_py))
        assert result.exit_code == 2
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output

    def test_bad_param_is_a_usage_error(self, flows_py: Path) -> None:
        result = invoke("run", f"{flows_py}:flow", "--param", "novalue")
        assert result.exit_code == 2
        assert result.stderr.startswith("error: --param 'novalue': expected KEY=VALUE")

    def test_flow_file_problems_are_all_listed(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"flow_id": "bad", "routines": {
            "a": {"type": "no.such.Type"}, "b": {"type": "also.missing"}}}), encoding="utf-8")
        result = invoke("run", str(bad))
        assert result.exit_code == 2
        assert "routines.a.type: routine type 'no.such.Type' is not registered" in result.stderr
        assert "routines.b.type: routine type 'also.missing' is not registered" in result.stderr


class TestDebug:
    def test_debug_shows_the_traceback_anywhere_on_the_line(self, flows_py: Path) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "routilux.cli", "run", f"{flows_py}:nope", "--debug"],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 2
        assert "Traceback (most recent call last)" in proc.stderr
        assert proc.stderr.rstrip().endswith("has no attribute 'nope'")

    def test_without_debug_no_traceback(self, flows_py: Path) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "routilux.cli", "run", f"{flows_py}:nope"],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 2
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


class TestValidate:
    def test_sound_python_flow(self, flows_py: Path) -> None:
        result = invoke("validate", f"{flows_py}:flow")
        assert result.exit_code == 0 and result.stdout.strip().endswith(": ok")

    def test_every_problem_with_its_path_and_exit_1(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({
            "flow_id": "bad",
            "routines": {"a": {"type": "no.such.Type"}, "b": {"type": "x", "max_concurrency": 0}},
            "connections": ["nonsense"],
        }), encoding="utf-8")
        result = invoke("validate", str(bad))
        assert result.exit_code == 1
        lines = result.stdout.splitlines()
        assert any(line.startswith("routines.a.type: ") for line in lines)
        assert any(line.startswith("routines.b.type: ") for line in lines)
        assert any(line.startswith("connections[0]") for line in lines)
        assert f"{bad}: {len(lines)} problem(s)" in result.stderr

    def test_unparsable_file_is_a_problem(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.json"
        bad.write_text("{not json", encoding="utf-8")
        result = invoke("validate", str(bad))
        assert result.exit_code == 1
        assert "not valid JSON" in result.stdout

    def test_missing_file_is_a_usage_error(self) -> None:
        result = invoke("validate", "nowhere.yaml")
        assert result.exit_code == 2 and result.stderr == "error: no such file: nowhere.yaml\n"


class TestGraph:
    def test_mermaid_to_stdout(self, flows_py: Path) -> None:
        result = invoke("graph", f"{flows_py}:flow")
        assert result.exit_code == 0
        assert result.stdout.startswith("flowchart LR\n")
        assert 'r0["double<br/>clitest.Double<br/>policy: immediate"]' in result.stdout

    def test_dot_to_a_file(self, flows_py: Path, tmp_path: Path) -> None:
        out = tmp_path / "g.dot"
        result = invoke("graph", f"{flows_py}:flow", "--format", "dot", "-o", str(out))
        assert result.exit_code == 0
        assert out.read_text(encoding="utf-8").startswith('digraph "double" {')


class TestHelp:
    @pytest.mark.parametrize(
        "command", [[], ["run"], ["validate"], ["graph"], ["plugins"], ["serve"], ["jobs"]]
    )
    def test_every_help_has_examples(self, command: list[str]) -> None:
        result = invoke(*command, "--help")
        assert result.exit_code == 0
        assert "Examples:" in result.stdout
        assert "routilux " in result.stdout.split("Examples:")[1]

    def test_module_import_is_explained_in_run_help(self) -> None:
        text = invoke("run", "--help").stdout
        assert "only" in text and "because you typed it on the command line" in text

    def test_jobs_needs_a_server_url_or_a_store(self) -> None:
        for args in (["jobs", "list"], ["jobs", "get", "j1"], ["jobs", "resume", "j1"]):
            result = CliRunner().invoke(cli, args, prog_name="routilux",
                                        env={"ROUTILUX_SERVER": None})
            assert result.exit_code == 2 and "--server URL" in result.stderr, args

    def test_jobs_help_names_both_a_server_and_a_store(self) -> None:
        text = invoke("jobs", "--help").stdout
        assert "--server" in text and "--store" in text
        for command in ("list", "resume"):
            assert "--store" in invoke("jobs", command, "--help").stdout


class TestParams:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [("n=3", ("n", 3)), ("s=abc", ("s", "abc")), ('s="3"', ("s", "3")),
         ("b=true", ("b", True)), ("l=[1, 2]", ("l", [1, 2])), ("e=", ("e", "")),
         ("eq=a=b", ("eq", "a=b"))],
    )
    def test_values_are_json_or_text(self, text: str, expected: tuple) -> None:
        assert parse_param(text) == expected

    def test_params_file_must_hold_an_object(self, tmp_path: Path) -> None:
        path = tmp_path / "p.json"
        path.write_text("[1, 2]", encoding="utf-8")
        with pytest.raises(CliUsageError, match="must hold an object"):
            load_params(str(path), [])

    def test_yaml_params_file(self, tmp_path: Path) -> None:
        path = tmp_path / "p.yaml"
        path.write_text("n: 4\nname: Ada\n", encoding="utf-8")
        assert load_params(str(path), ["n=5"]) == {"n": 5, "name": "Ada"}


class TestMissingExtra:
    def test_main_explains_how_to_install_click(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setitem(sys.modules, "click", None)  # import click -> ImportError
        with pytest.raises(SystemExit) as exc:
            main(["--help"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err == MISSING_EXTRA + "\n" and 'pip install "routilux[cli]"' in err

    def test_importing_routilux_needs_neither_click_nor_rich(self) -> None:
        code = (
            "import sys; sys.modules['click'] = None; sys.modules['rich'] = None\n"
            "import routilux, routilux.cli, routilux.graph\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
