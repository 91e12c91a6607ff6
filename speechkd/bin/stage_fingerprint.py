"""Check or record a stage fingerprint (used by local/stage_lib.sh).

``python -m speechkd.bin.stage_fingerprint check --stamp S --inputs A B --outputs C --params P``
exits 0 when the stage can be skipped (and says why), 1 when it must run.
``... record ...`` writes the stamp after the stage finished.
"""

from __future__ import annotations

import argparse

from speechkd.utils.cli import run_cli
from speechkd.utils.fingerprint import record_stage, stage_is_current


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["check", "record"])
    parser.add_argument("--stamp", required=True)
    parser.add_argument("--inputs", nargs="*", default=[])
    parser.add_argument("--outputs", nargs="*", default=[])
    parser.add_argument("--params", default="")
    args = parser.parse_args(argv)
    if args.action == "check":
        current, reason = stage_is_current(args.stamp, args.inputs, args.outputs, args.params)
        print(reason)
        return 0 if current else 1
    record_stage(args.stamp, args.inputs, args.outputs, args.params)
    return 0


if __name__ == "__main__":
    run_cli(main)
