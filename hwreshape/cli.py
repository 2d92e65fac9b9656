"""The ``hwreshape`` console script: a thin front door that only calls the packages.

Commands:

  hwreshape env                 host versions, g++, ap_types, Vivado/Vitis; exit 1 if a host is broken
  hwreshape demo [--out DIR] [--only WORD ...] [--full] [--list]
                                run the demo stage of every capability and print a summary table
  hwreshape report MODEL ...    hardware-cost report of one or more models (hwreshape report --help)

Usage errors exit with status 2 and one line on stderr; a failed demo stage makes ``demo`` exit with 1.
"""

from __future__ import annotations

import argparse
import os
import sys


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (``hwreshape: error: ...``) and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from hwreshape import __version__

    parser = _Parser(
        prog="hwreshape",
        description="Reshape neural networks for cheaper FPGA/ASIC hardware inside FINN and hls4ml.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'hwreshape COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"hwreshape {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    sub.add_parser("env", help="print host versions and check that every host imports")
    demo = sub.add_parser("demo", help="run the demo stage of every capability")
    demo.add_argument(
        "--out", default="demo_out", help="folder for plots and build outputs (default: demo_out)"
    )
    demo.add_argument(
        "--only", nargs="+", metavar="WORD", help="run only the stages whose name contains one of these words"
    )
    demo.add_argument("--full", action="store_true", help="larger settings where a stage offers them")
    demo.add_argument("--list", action="store_true", help="list the stages and exit")
    # 'report' has its own parser (hwreshape.report.main); everything after the word goes to it unchanged
    sub.add_parser("report", help="hardware-cost report of one or more models", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if argv and argv[0] == "report":
        from hwreshape.report import main as report_main

        return report_main(argv[1:])
    args = parser.parse_args(argv)

    if args.command == "env":
        from hwreshape.env import main as env_main

        return env_main([])
    # args.command == "demo". TensorFlow's C++ start-up log (e.g. "failed call to cuInit" on a machine without a
    # GPU driver) is printed at ERROR level although nothing failed: the demo process (and the child processes
    # of its stages) hide TensorFlow's C++ log; Python errors still show. Library callers of demo.run decide
    # their own environment.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    from hwreshape import demo as demo_mod

    if args.list:
        for name, target in demo_mod.STAGES:
            print(f"{name:32s} {target}")
        return 0
    if args.only:
        selected = demo_mod.select(args.only)
        if not selected:
            names = ", ".join(n for n, _ in demo_mod.STAGES)
            parser.exit(
                2,
                f"hwreshape demo: error: no stage name contains {' or '.join(args.only)!s} (stages: {names})\n",
            )
    outcomes = demo_mod.run(args.out, only=args.only, quick=not args.full)
    demo_mod.print_summary(outcomes)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
