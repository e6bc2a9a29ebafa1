#!/usr/bin/env python3
"""Compares the Parquet tables of two `lineage batch` output folders, e.g. one run on the CPU and
one on a GPU (`scripts/gpu-check.sh`).

    python3 scripts/compare_tables.py OUT_A OUT_B [--tol 1e-4] [--tables evals,barriers,...]

For each table present in OUT_A, the rows of both are put in the same order (sorted by their
non-float columns) and every float column is compared: the largest absolute difference is printed.
Non-float columns (steps, runs, basin labels, ...) must be equal. Exit status 1 when a checked
table is missing from OUT_B, its rows or non-float values differ, or a float differs by more than
`--tol`; 0 otherwise. Tables named in `--informative` are printed but never fail the check (their
values go through an optimiser, e.g. linear probes, and may move more than a forward pass does).
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

CHECKED = ["evals", "interpolation", "barriers", "clusters", "timeline", "similarity", "code_length"]
INFORMATIVE = ["probes", "generalization", "co_membership"]


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in frame.columns if not pd.api.types.is_float_dtype(frame[c])]
    keys = [c for c in keys if frame[c].map(lambda v: isinstance(v, (str, int, bool)) or v is None).all()]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True) if keys else frame


def compare(name: str, a_dir: Path, b_dir: Path, tol: float, strict: bool) -> bool:
    a_path, b_path = a_dir / f"{name}.parquet", b_dir / f"{name}.parquet"
    if not a_path.exists():
        print(f"{name:>16}: not written in {a_dir} (skipped)")
        return True
    if not b_path.exists():
        print(f"{name:>16}: FAIL, missing in {b_dir}")
        return not strict
    a, b = ordered(pd.read_parquet(a_path)), ordered(pd.read_parquet(b_path))
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        print(f"{name:>16}: FAIL, shapes differ: {a.shape} {list(a.columns)} vs {b.shape} {list(b.columns)}")
        return not strict
    worst, worst_col, ok = 0.0, "-", True
    for col in a.columns:
        if pd.api.types.is_float_dtype(a[col]):
            x, y = a[col].to_numpy(), b[col].to_numpy()
            if (pd.isna(x) != pd.isna(y)).any():
                print(f"{name:>16}: FAIL, column {col}: missing values differ")
                ok = False
                continue
            both = ~pd.isna(x)
            diff = float(abs(x[both] - y[both]).max()) if both.any() else 0.0
            if diff > worst:
                worst, worst_col = diff, col
        elif not a[col].astype(str).equals(b[col].astype(str)):
            print(f"{name:>16}: FAIL, column {col} differs")
            ok = False
    ok = ok and worst <= tol
    verdict = "ok" if ok else ("FAIL" if strict else "differs (informative)")
    print(f"{name:>16}: {len(a)} rows, largest difference {worst:.3g} ({worst_col}): {verdict}")
    return ok or not strict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--tables", default=",".join(CHECKED))
    parser.add_argument("--informative", default=",".join(INFORMATIVE))
    args = parser.parse_args()
    ok = True
    for name in filter(None, args.tables.split(",")):
        ok &= compare(name, args.a, args.b, args.tol, strict=True)
    for name in filter(None, args.informative.split(",")):
        compare(name, args.a, args.b, args.tol, strict=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
