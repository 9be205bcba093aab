"""``python -m benchmarks [--quick] [--only SCENARIO[,SCENARIO]] [--pairs PAIR[,PAIR]] [--customers N] [--state-url URL]``"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from benchmarks.harness import FULL, PAIRS, QUICK, SCENARIOS, Size, render, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5,000 customers instead of 100,000")
    parser.add_argument("--only", default="", help=f"scenarios, comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("--pairs", default=",".join(PAIRS), help="pairs, comma-separated")
    parser.add_argument("--customers", type=int, help="customers to seed (items a tenth, invoices a fifth)")
    parser.add_argument("--no-save", action="store_true", help="print the table, keep no result file")
    parser.add_argument("--state-url", help="keep the tool's state in this PostgreSQL database (a schema per pair, "
                                            "dropped after) instead of a SQLite file")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.customers:
        plan = replace(plan, mode=f"{plan.mode}-{args.customers}", latency_customers=args.customers,
                       size=Size(args.customers, max(6, args.customers // 10), max(3, args.customers // 5)))
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    pairs = tuple(p.strip() for p in args.pairs.split(",") if p.strip())
    if args.state_url:
        plan = replace(plan, mode=f"{plan.mode}-postgres")
    report = run(plan, pairs=pairs, only=only, save=not args.no_save, state_url=args.state_url,
                 say=lambda text: print(text, file=sys.stderr, flush=True))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
