#!/usr/bin/env python3
"""Cross-check of culprit's BARO and N-Sigma re-implementations against RCAEval's own code.

Runs RCAEval's `baro` and `nsigma` (PyPI `rcaeval`, 1.8.x) on the same cases `culprit eval`
reads: RCD Sock Shop (normal.csv then anomalous.csv, the injection at the first anomalous row)
and Nezha OnlineBoutique (per-pod metrics, the hour before the injection and up to ten minutes
after it, cut at the next injection, as culprit's adapter does). Prints AC@1/3/5 per dataset as
JSON.

Not part of the Rust build or the tests. Set-up (a venv of its own; RCAEval's full dependency
set is large, its two functions need only numpy, pandas and scikit-learn):

    python3 -m venv .venv-rcaeval
    .venv-rcaeval/bin/pip install --no-deps rcaeval==1.8.1
    .venv-rcaeval/bin/pip install numpy pandas scikit-learn requests tqdm
    .venv-rcaeval/bin/python scripts/rcaeval_crosscheck.py ../shared/datasets
"""
import ast
import csv
import glob
import gzip
import importlib.util
import json
import os
import sys
import warnings
from datetime import datetime, timezone

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.preprocessing import RobustScaler, StandardScaler  # noqa: E402

import RCAEval  # noqa: E402
from RCAEval.io.time_series import preprocess  # noqa: E402

PKG = os.path.dirname(RCAEval.__file__)


def load_methods():
    """RCAEval's `baro` (its own module) and `nsigma` (defined in `RCAEval.e2e`, whose package
    import pulls in every optional dependency, so the function alone is compiled from source)."""
    spec = importlib.util.spec_from_file_location("rcaeval_baro", os.path.join(PKG, "e2e", "baro.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    source = open(os.path.join(PKG, "e2e", "__init__.py")).read()
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "nsigma")
    scope = {"np": np, "pd": pd, "RobustScaler": RobustScaler, "StandardScaler": StandardScaler, "preprocess": preprocess}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "nsigma", "exec"), scope)
    return {"rcaeval:baro": mod.baro, "rcaeval:nsigma": scope["nsigma"]}


def to_services(ranks):
    out = []
    for r in ranks:
        s = r.split("_")[0]
        if s not in out:
            out.append(s)
    return out


def rcd_cases(root):
    base = os.path.join(root, "rcd_sockshop")
    with open(os.path.join(base, "cases_index.csv")) as f:
        for row in csv.DictReader(f):
            normal = pd.read_csv(os.path.join(base, row["normal_csv"]))
            anomal = pd.read_csv(os.path.join(base, row["anomalous_csv"]))
            data = pd.concat([normal, anomal], ignore_index=True)
            # The two windows were recorded at different times: renumber the anomalous rows to
            # follow the normal ones, one second apart, so that `time < inject` splits them.
            data["time"] = np.arange(len(data))
            yield row["root_cause_service"], data, len(normal), "sock-shop"


def pod_to_service(pod):
    parts = pod.split("-")
    return "-".join(parts[:-2]) if len(parts) > 2 else pod


def parse_time(s):
    # "2022-08-22 03:51:19.799087274 +0000 UTC m=+0.305041286"
    return int(datetime.strptime(s[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp())


def nezha_ob_cases(root):
    base = os.path.join(root, "nezha")
    rows = [r for r in csv.DictReader(open(os.path.join(base, "cases_index.csv"))) if r["system"] == "onlineboutique"]
    injects = sorted(parse_time(r["inject_time"] + " +0000") for r in rows)
    frames = {}
    for r in rows:
        date = r["date"]
        if date not in frames:
            cols = {}
            for path in sorted(glob.glob(os.path.join(base, "onlineboutique", "rca_data", date, "metric", "*_metric.csv.gz"))):
                df = pd.read_csv(path)
                svc = pod_to_service(df["PodName"].iloc[0])
                t = df["Time"].map(parse_time)
                for c in df.columns:
                    if c in ("Time", "TimeStamp", "PodName") or c.startswith("Node"):
                        continue
                    cols[f"{svc}_{c}"] = pd.Series(pd.to_numeric(df[c], errors="coerce").to_numpy(), index=t // 60 * 60)
            wide = pd.DataFrame({k: v[~v.index.duplicated()] for k, v in cols.items()}).sort_index()
            wide = wide.replace([np.inf, -np.inf], np.nan).ffill().fillna(0)
            wide.insert(0, "time", wide.index)
            frames[date] = wide.reset_index(drop=True)
        inject = parse_time(r["inject_time"] + " +0000")
        later = [t for t in injects if t > inject]
        end = min(inject + 600, later[0]) if later else inject + 600
        wide = frames[date]
        data = wide[(wide["time"] >= inject - 3600) & (wide["time"] < end)].reset_index(drop=True)
        yield r["root_cause_service"], data, inject, "online-boutique"


def score(cases, methods):
    out = {m: [0, 0, 0, 0] for m in methods}
    for truth, data, inject, dataset in cases:
        for name, fn in methods.items():
            ranks = to_services(fn(data, inject_time=inject, dataset=dataset)["ranks"])
            k = ranks.index(truth) + 1 if truth in ranks else None
            acc = out[name]
            acc[3] += 1
            for i, kk in enumerate((1, 3, 5)):
                if k is not None and k <= kk:
                    acc[i] += 1
    return {m: {"cases": a[3], "ac@1": a[0] / a[3], "ac@3": a[1] / a[3], "ac@5": a[2] / a[3]} for m, a in out.items()}


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets"
    methods = load_methods()
    result = {
        "rcd_sockshop": score(rcd_cases(root), methods),
        "nezha/onlineboutique": score(nezha_ob_cases(root), methods),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
