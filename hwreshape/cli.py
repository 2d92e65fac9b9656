"""The ``hwreshape`` console script: a thin front door that only calls the packages.

hwreshape env                 host versions, g++, ap_types, Vivado/Vitis; exit 1 if a host is broken
hwreshape demo [--out DIR] [--only NAME ...]
                              run every registered capability stage, print a summary table
hwreshape report MODEL ...    hardware-cost report (see ``hwreshape report --help``)
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="hwreshape", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("env", help="print host versions and check that every host imports")
    demo = sub.add_parser("demo", help="run the demo stages of every capability")
    demo.add_argument(
        "--out", default="demo_out", help="folder for plots and build outputs (default demo_out)"
    )
    demo.add_argument("--only", nargs="*", help="run only stages whose name contains one of these words")
    demo.add_argument("--full", action="store_true", help="larger settings where a stage offers them")
    demo.add_argument("--list", action="store_true", help="list the registered stages and exit")
    sub.add_parser("report", help="hardware-cost report of a model", add_help=False)
    args, rest = parser.parse_known_args(argv)

    if args.command == "env":
        from hwreshape.env import main as env_main

        return env_main(rest)
    if args.command == "demo":
        from hwreshape import demo as demo_mod

        if args.list:
            for name, target in demo_mod.STAGES:
                print(f"{name:32s} {target}")
            return 0
        outcomes = demo_mod.run(args.out, only=args.only, quick=not args.full)
        demo_mod.print_summary(outcomes)
        return 0 if outcomes and all(o.ok for o in outcomes) else 1
    if args.command == "report":
        from hwreshape.report import main as report_main

        return report_main(rest)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
