"""`python -m exercises NAME [NAME ...] [--solutions]`: run the checkers of exercise modules.

Without `--solutions` the checkers judge the functions in `exercises/NAME.py` — your versions;
with it, the reference solutions in `solutions/NAME.py`. `--list` lists the modules. The exit
status is 0 when every exercise checked passes.
"""

from __future__ import annotations

import argparse
import sys

from exercises import exercises, judge, modules

MARKS = {"pass": "passed", "todo": "to do", "fail": "FAILED"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exercises", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("names", nargs="*", help="exercise modules, e.g. attention tutorial_04")
    parser.add_argument("--solutions", action="store_true",
                        help="check the reference solutions instead of your versions")
    parser.add_argument("--list", action="store_true", help="list the exercise modules")
    args = parser.parse_args(argv)
    if args.list or not args.names:
        for name in modules():
            print(f"{name:<24} {len(exercises(name))} exercises")
        return 0
    unknown = [n for n in args.names if n not in modules()]
    if unknown:
        parser.error(f"no exercise module {', '.join(unknown)}; see --list")
    passed = total = 0
    for name in args.names:
        where = f"solutions/{name}.py" if args.solutions else f"exercises/{name}.py"
        print(where)
        for i, exercise in enumerate(exercises(name), 1):
            verdict = judge(exercise, exercise.solution() if args.solutions else exercise.stub)
            print(f"  {i}. {exercise.name:<32} {MARKS[verdict.status]}")
            if verdict.message and verdict.status != "pass":
                print(f"     {verdict.message}")
            passed += verdict.status == "pass"
            total += 1
    print(f"{passed} of {total} passed")
    return 0 if passed == total else 1


if __name__ == "__main__":
    sys.exit(main())
