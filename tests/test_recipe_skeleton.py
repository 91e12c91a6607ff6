"""The shell side of recipes: parse_options.sh, the job launcher and fingerprinted stages."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from speechkd.errors import ConfigError
from speechkd.launch.spec import parse_launch_args
from speechkd.utils.fingerprint import record_stage, stage_is_current

ROOT = Path(__file__).resolve().parents[1]


def _bash(script: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPEECHKD_ROOT=str(ROOT), PYTHONPATH=str(ROOT))
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def option_script(tmp_path: Path) -> Path:
    script = tmp_path / "run.sh"
    script.write_text(
        "#!/usr/bin/env bash\nstage=0\nstop_stage=100\nuse_gpu=false\nnj=4\n"
        f". {ROOT}/local/parse_options.sh || exit 1\n"
        'echo "stage=$stage stop_stage=$stop_stage use_gpu=$use_gpu nj=$nj rest=$*"\n'
    )
    return script


def test_parse_options_sets_variables(option_script: Path) -> None:
    out = _bash(f"bash {option_script} --stop-stage 3 --nj=2", option_script.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "stage=0 stop_stage=3 use_gpu=false nj=2 rest="


def test_parse_options_rejects_leftover_arguments(option_script: Path) -> None:
    out = _bash(f"bash {option_script} --nj 2 a b", option_script.parent)
    assert out.returncode != 0 and out.stdout == ""
    assert "unexpected argument(s): 'a' 'b'" in out.stderr
    # a value with spaces left unquoted: --nj takes "3"; the rest is named, with the fix
    out = _bash(f"bash {option_script} --nj 3 4 --stage 1", option_script.parent)
    assert out.returncode != 0
    assert "unexpected argument(s): '4' '--stage' '1'" in out.stderr
    assert "--nj got only '3': quote a value with spaces" in out.stderr


@pytest.mark.parametrize(
    "options, message",
    [
        ("--stage abc", "option --stage takes an integer, not 'abc'"),
        ("--stop-stage=1.5", "option --stop-stage takes an integer, not '1.5'"),
        ("--nj 0", "option --nj takes a positive integer, not '0'"),
    ],
)
def test_parse_options_integer_options(option_script: Path, options: str, message: str) -> None:
    out = _bash(f"bash {option_script} {options}", option_script.parent)
    assert out.returncode != 0 and out.stdout == ""
    assert message in out.stderr
    ok = _bash(f"bash {option_script} --stage -1 --stop-stage 12", option_script.parent)
    assert ok.returncode == 0 and "stage=-1 stop_stage=12" in ok.stdout


def test_parse_options_unknown_option_lists_valid_ones(option_script: Path) -> None:
    out = _bash(f"bash {option_script} --stop_stag 3", option_script.parent)
    assert out.returncode != 0
    assert "unknown option --stop_stag" in out.stderr
    assert "--stage --stop-stage --use-gpu --nj --config" in out.stderr


def test_parse_options_config_file_and_booleans(option_script: Path) -> None:
    (option_script.parent / "my.conf").write_text("nj=7\nuse_gpu=true\n")
    out = _bash(f"bash {option_script} --config my.conf --stage 2", option_script.parent)
    assert out.stdout.strip() == "stage=2 stop_stage=100 use_gpu=true nj=7 rest="
    bad = _bash(f"bash {option_script} --use-gpu yes", option_script.parent)
    assert bad.returncode != 0 and "takes true or false" in bad.stderr
    missing = _bash(f"bash {option_script} --config nope.conf", option_script.parent)
    assert missing.returncode != 0 and "nope.conf not found" in missing.stderr


def test_help_shows_option_comments_and_stages(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        "stage=0\n"
        'languages="ca cs"   # languages of the # test sets\n'
        "corpus_dir=         # the corpus, holding\n"
        "                    # clips/ and train.tsv\n"
        "seed=1\n"
        f". {ROOT}/local/parse_options.sh || exit 1\n"
        "log() { :; }\n"
        '# log "Stage 5: a comment, not a stage"\n'
        'if [ $stage -le 0 ]; then log "Stage 0: prepare $(echo "$languages")"; fi\n'
        'log "Stage 1: a long announcement split" \\\n  "over two lines"\n'
        ". ./local/recipes/distill_w2v2.sh  # the shared method stages\n"
        'log "Stage 100: report"\n'
    )
    out = _bash(f"bash {script} --languages en --help", tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    comments = {}
    for line in lines:
        if line.startswith("  --"):
            option, _, comment = line.partition("  # ")
            comments[option.strip()] = comment
    assert comments["--languages en"] == "languages of the # test sets"
    assert comments["--corpus-dir"] == "the corpus, holding clips/ and train.tsv"
    assert comments["--stage 0"] == "" and comments["--seed 1"] == ""
    stages = lines[lines.index("Stages (run those from --stage to --stop-stage):") + 1 :]
    assert stages[:2] == [
        '  Stage 0: prepare $(echo "$languages")',
        "  Stage 1: a long announcement split over two lines",
    ]
    # the stages of local/recipes/distill_w2v2.sh, where the script sources it
    assert stages[2].startswith("  Stage 10: ") and stages[-2].startswith("  Stage 18: ")
    assert stages[-1] == "  Stage 100: report"
    assert not any("Stage 5" in line for line in stages)


def test_every_recipe_help_lists_its_stages() -> None:
    for run in sorted(ROOT.glob("egs/*/*/run.sh")) + [ROOT / "egs/mini/run.sh"]:
        out = _bash(f"bash {run} --help", ROOT)
        assert out.returncode == 0, (run, out.stderr)
        assert "  --stop-stage 100" in out.stdout, run
        stages = out.stdout.split("Stages (run those from --stage to --stop-stage):\n")[1]
        assert "  Stage 0: " in stages and "  Stage 100: " in stages, run


RECORD = 'RUN_COMMAND=$(. "$RECIPE_DIR/local/stage_lib.sh" && record_command ./run.sh "$@")'


def test_every_recipe_records_its_command_quoted() -> None:
    for run in sorted(ROOT.glob("egs/*/*/run.sh")) + [ROOT / "egs/mini/run.sh"]:
        lines = run.read_text().splitlines()
        assert sum(line.startswith(RECORD) for line in lines) == 1, run
        assert not any("$*" in line for line in lines if line.startswith("RUN_COMMAND")), run
        assert 'echo "$RUN_COMMAND" >> "$expdir/commands.log"' in lines, run


def test_recorded_command_reruns_with_the_same_options(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "local").symlink_to(ROOT / "local")
    run = recipe / "run.sh"
    run.write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        'RECIPE_DIR=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)\n'
        f"{RECORD}\n"
        "stage=0\ntrain_opts=\nnote=\n"
        '. "$RECIPE_DIR/local/parse_options.sh" || exit 1\n'
        'echo "$RUN_COMMAND" >> commands.log\n'
        'printf \'%s|%s|%s\\n\' "$stage" "$train_opts" "$note"\n'
    )
    run.chmod(0o755)
    env = dict(os.environ, SPEECHKD_ROOT=str(ROOT))
    options = [
        "--train-opts",
        "--epochs 2 --lr 1e-3",
        "--note",
        'it\'s "quoted" $HOME *',
        "--stage=3",
    ]
    first = subprocess.run(
        ["./run.sh", *options], cwd=recipe, env=env, capture_output=True, text=True, timeout=60
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout == '3|--epochs 2 --lr 1e-3|it\'s "quoted" $HOME *\n'
    recorded = (recipe / "commands.log").read_text().splitlines()
    assert recorded[0] == (
        "./run.sh --train-opts '--epochs 2 --lr 1e-3' "
        "--note 'it'\\''s \"quoted\" $HOME *' --stage=3"
    )
    again = _bash(recorded[0], recipe)  # the recorded line, pasted into a shell
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert (recipe / "commands.log").read_text().splitlines() == [recorded[0]] * 2


def test_launch_array_runs_every_task_and_names_failures(tmp_path: Path) -> None:
    out = _bash(
        f"{ROOT}/local/launch.sh --max-jobs-run 2 JOB=1:4 log/t.JOB.log "
        "'echo task JOB; [ JOB -ne 3 ]'",
        tmp_path,
    )
    assert out.returncode == 1
    assert "task 3 failed with exit code 1; see log/t.3.log" in out.stderr
    assert "1 / 4 failed" in out.stderr
    for i in range(1, 5):
        log = (tmp_path / f"log/t.{i}.log").read_text()
        assert f"task {i}\n" in log
        assert f"# Ended (code {0 if i != 3 else 1})" in log


def test_launch_quotes_arguments_and_rejects_bad_options(tmp_path: Path) -> None:
    out = _bash(f"{ROOT}/local/launch.sh JOB=2:3 log/q.JOB.log echo 'a  b' JOB", tmp_path)
    assert out.returncode == 0, out.stderr
    assert "a  b 3\n" in (tmp_path / "log/q.3.log").read_text()
    with pytest.raises(ConfigError, match="unknown option --gpus"):
        parse_launch_args(["--gpus", "1", "log", "true"])
    with pytest.raises(ConfigError, match="must contain JOB"):
        parse_launch_args(["JOB=1:2", "log/x.log", "true"])
    with pytest.raises(ConfigError, match="empty job range"):
        parse_launch_args(["JOB=3:2", "log/x.JOB.log", "true"])


def test_fingerprint_skips_only_while_unchanged(tmp_path: Path) -> None:
    inp, out, stamp = tmp_path / "in.txt", tmp_path / "out", tmp_path / "s/stage.json"
    inp.write_text("a")
    out.mkdir()
    (out / "x").write_text("1")
    with pytest.raises(FileNotFoundError):
        record_stage(stamp, [str(inp)], [str(tmp_path / "absent")], "p")
    assert stage_is_current(stamp, [str(inp)], [str(out)], "p") == (False, "never finished")
    record_stage(stamp, [str(inp)], [str(out)], "p")
    assert json.loads(stamp.read_text())["params"] == "p"
    assert stage_is_current(stamp, [str(inp)], [str(out)], "p")[0]
    assert stage_is_current(stamp, [str(inp)], [str(out)], "q") == (False, "parameters changed")
    inp.write_text("b")
    assert stage_is_current(stamp, [str(inp)], [str(out)], "p") == (False, f"input changed: {inp}")
    record_stage(stamp, [str(inp)], [str(out)], "p")
    # a path named twice (a teacher that also initialises its student) is one input
    assert stage_is_current(stamp, [str(inp), str(inp)], [str(out)], "p")[0]
    (out / "x").unlink()
    assert not stage_is_current(stamp, [str(inp)], [str(out)], "p")[0]


def test_stage_lib_skips_then_reruns_on_change(tmp_path: Path) -> None:
    script = f"""
set -e
. {ROOT}/local/stage_lib.sh
stamp_dir=stamps
run() {{
  if stage_needed demo "in.txt" "out.txt" "$1"; then
    cp in.txt out.txt; echo ran >> count; stage_done demo "in.txt" "out.txt" "$1"
  fi
}}
echo hello > in.txt
run a; run a; run b; echo x >> in.txt; run b
"""
    out = _bash(script, tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "count").read_text().count("ran") == 3
    assert "skipped (inputs, outputs and parameters unchanged)" in out.stderr
    assert "running (parameters changed)" in out.stderr


def test_recipe_options_from_any_directory(tmp_path: Path) -> None:
    for cwd, script in [(ROOT, "egs/mini/run.sh"), (ROOT / "egs", "mini/run.sh")]:
        out = _bash(f"bash {script} --help", cwd)
        assert out.returncode == 0, out.stderr
        assert "--stop-stage 100" in out.stdout and "--scale small" in out.stdout
        bad = _bash(f"bash {script} --stgae 2", cwd)
        assert bad.returncode != 0 and "unknown option --stgae" in bad.stderr


def test_parse_options_refuses_after_cd(tmp_path: Path) -> None:
    script = tmp_path / "sub" / "run.sh"
    script.parent.mkdir()
    script.write_text(f"stage=0\ncd /\n. {ROOT}/local/parse_options.sh\necho stage=$stage\n")
    out = _bash("bash sub/run.sh --stage 3", tmp_path)
    assert out.returncode != 0 and "source parse_options.sh before any cd" in out.stderr
