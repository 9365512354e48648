#!/usr/bin/env python3
"""Trains the XGBoost member of hydrowatch's cycle ensemble and exports it to ONNX.

Reproducible: pinned packages (requirements.txt), fixed seeds, one thread.

    python3 -m venv .venv && .venv/bin/pip install -r models/xgboost/requirements.txt
    cargo run --release -- export-features --data ../shared/data/hydraulic-rig --out /tmp/features.csv
    .venv/bin/python models/xgboost/train_xgb.py --features /tmp/features.csv --out models/artifacts

The features are the ones the running system computes (`hydrowatch export-features`
writes them with `hydrowatch_models::cycle`), so training and inference cannot drift
apart. For each component (cooler, valve, pump, accumulator) one multi-class
classifier over the component's condition levels is trained on every cycle and
converted to ONNX (a TreeEnsembleClassifier node); the four are combined into
one model, `xgb-cycle.onnx` (input `input` float32 [N, 439], outputs
`<component>_probabilities`), so the running system makes one ONNX Runtime call
per cycle; its probabilities are checked against XGBoost's own.
`xgb-cycle.json` lists each output's class levels and the versions.
Cross-validation (stratified 5-fold and 5-fold keeping runs of cycles together,
the folds `export-features` writes) is printed and written to `xgb-cv.json`.

Data: ZeMA hydraulic test rig, CC BY 4.0 -- N. Helwig, E. Pignanelli, A. Schuetze,
"Condition Monitoring of a Complex Hydraulic System Using Multivariate
Statistics", I2MTC 2015, doi:10.1109/I2MTC.2015.7151267; UCI ML Repository 447.
"""

import argparse
import csv
import hashlib
import json
import pathlib
import sys

import numpy as np
import onnx
import onnxmltools
import onnxruntime
import xgboost
from onnxmltools.convert.common.data_types import FloatTensorType

COMPONENTS = ["cooler", "valve", "pump", "accumulator"]
HEALTHY = {"cooler": 100, "valve": 100, "pump": 0, "accumulator": 130}
SEED = 20151267
PARAMS = dict(
    n_estimators=300,
    max_depth=4,
    learning_rate=0.1,
    subsample=0.8,
    colsample_bytree=0.5,
    tree_method="hist",
    n_jobs=1,
    random_state=SEED,
)


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(header)}
    first_feature = col["stable"] + 1
    x = np.array([[float(v) for v in r[first_feature:]] for r in body], dtype=np.float64)
    labels = {c: np.array([int(r[col[c]]) for r in body]) for c in COMPONENTS}
    folds = {
        "runs": np.array([int(r[col["fold_runs"]]) for r in body]),
        "stratified": np.array([int(r[col["fold_stratified"]]) for r in body]),
    }
    return x.astype(np.float32), labels, folds, header[first_feature:]


def fit(x, y_levels):
    classes = sorted(set(int(v) for v in y_levels))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[int(v)] for v in y_levels])
    model = xgboost.XGBClassifier(**PARAMS)
    if len(classes) == 1:
        return None, classes
    model.fit(x, y)
    return model, classes


def p_degraded(model, classes, component, x):
    if model is None:
        return np.full(len(x), 0.0 if classes[0] == HEALTHY[component] else 1.0)
    proba = model.predict_proba(x)
    healthy = classes.index(HEALTHY[component]) if HEALTHY[component] in classes else None
    return 1.0 - (proba[:, healthy] if healthy is not None else 0.0)


def cross_validate(x, labels, folds, predictions=None, scheme=""):
    """Per component: accuracy, false alarms, misses; out-of-fold predictions
    appended to `predictions` as (scheme, cycle, component, level, p_degraded,
    shares), shares = `level:probability` joined by `;`."""
    report = {}
    for c in COMPONENTS:
        y = labels[c]
        predicted = np.zeros_like(y)
        p_deg = np.zeros(len(y))
        shares = [""] * len(y)
        for k in sorted(set(folds)):
            train, test = folds != k, folds == k
            model, classes = fit(x[train], y[train])
            if model is None:
                predicted[test] = classes[0]
            else:
                predicted[test] = np.array(classes)[model.predict(x[test])]
            p_deg[test] = p_degraded(model, classes, c, x[test])
            if model is not None:
                proba = model.predict_proba(x[test])
                for row, i in zip(proba, np.flatnonzero(test)):
                    shares[i] = ";".join(f"{lv}:{p:.6g}" for lv, p in zip(classes, row))
        if predictions is not None:
            predictions.extend(
                (scheme, i, c, int(predicted[i]), float(p_deg[i]), shares[i])
                for i in range(len(y)))
        healthy = y == HEALTHY[c]
        alarm = p_deg >= 0.5
        report[c] = {
            "accuracy": float(np.mean(predicted == y)),
            "false_alarm_rate": float(np.mean(alarm[healthy])) if healthy.any() else None,
            "miss_rate": float(np.mean(~alarm[~healthy])) if (~healthy).any() else None,
        }
    return report


def convert(model, n_features):
    return onnxmltools.convert_xgboost(
        model,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        target_opset=15,
    )


def combine(converted, n_features):
    """One graph: the shared input fed to every component's trees, one
    probabilities output per component."""
    nodes, initializers, outputs = [], [], []
    for component, model in converted:
        prefixed = onnx.compose.add_prefix(model, prefix=f"{component}_")
        graph = prefixed.graph
        nodes.append(onnx.helper.make_node(
            "Identity", ["input"], [f"{component}_input"], name=f"{component}_feed"))
        nodes.extend(graph.node)
        initializers.extend(graph.initializer)
        outputs.extend(o for o in graph.output if o.name == f"{component}_probabilities")
    graph = onnx.helper.make_graph(
        nodes, "xgb_cycle",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, n_features])],
        outputs, initializers)
    first = converted[0][1]
    opsets = list(first.opset_import)
    if not any(o.domain in ("", "ai.onnx") for o in opsets):
        # The Identity feeding each model lives in the default domain.
        opsets.append(onnx.helper.make_opsetid("", 15))
    combined = onnx.helper.make_model(
        graph, opset_imports=opsets, producer_name="hydrowatch train_xgb.py")
    combined.ir_version = first.ir_version
    onnx.checker.check_model(combined)
    return combined


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", required=True, type=pathlib.Path)
    ap.add_argument("--out", required=True, type=pathlib.Path)
    ap.add_argument("--no-cv", action="store_true", help="skip cross-validation")
    ap.add_argument("--cv-predictions", type=pathlib.Path,
                    help="also write the out-of-fold predictions (CSV) for "
                         "`hydrowatch evaluate --cv --xgb-cv FILE`")
    args = ap.parse_args()
    x, labels, folds, names = load(args.features)
    print(f"{len(x)} cycles x {x.shape[1]} features from {args.features}")
    args.out.mkdir(parents=True, exist_ok=True)

    cv = {}
    predictions = []
    if not args.no_cv:
        for name in ["stratified", "runs"]:
            cv[name] = cross_validate(x, labels, folds[name], predictions, name)
            for c, r in cv[name].items():
                fa = "-" if r["false_alarm_rate"] is None else f"{100 * r['false_alarm_rate']:.2f} %"
                miss = "-" if r["miss_rate"] is None else f"{100 * r['miss_rate']:.2f} %"
                print(f"xgboost, 5-fold CV ({name}): {c:<12} accuracy {100 * r['accuracy']:.2f} %"
                      f"  false alarms {fa}  misses {miss}")
        (args.out / "xgb-cv.json").write_text(json.dumps(cv, indent=2) + "\n")
        if args.cv_predictions:
            with open(args.cv_predictions, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["scheme", "cycle", "component", "level", "p_degraded", "shares"])
                w.writerows(predictions)

    fitted, converted = [], []
    for c in COMPONENTS:
        model, classes = fit(x, labels[c])
        if model is None:
            sys.exit(f"{c}: only one condition level in the data; nothing to learn")
        fitted.append((c, model, classes))
        converted.append((c, convert(model, x.shape[1])))
    path = args.out / "xgb-cycle.onnx"
    onnx.save_model(combine(converted, x.shape[1]), str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]
    got = dict(zip(output_names, session.run(None, {"input": x})))
    targets = []
    for c, model, classes in fitted:
        output = f"{c}_probabilities"
        err = float(np.max(np.abs(got[output] - model.predict_proba(x))))
        if err > 1e-4:
            sys.exit(f"{c}: ONNX probabilities differ from XGBoost's by {err}")
        targets.append({
            "component": c,
            "output": output,
            "classes": classes,
            "healthy": HEALTHY[c],
            "max_abs_error_vs_xgboost": err,
        })
        print(f"{c}: output {output} classes {classes} (max |ONNX - XGBoost| {err:.1e})")
    manifest = {
        "format": 2,
        "file": path.name,
        "input": "input",
        "sha256_12": hashlib.sha256(path.read_bytes()).hexdigest()[:12],
        "features": int(x.shape[1]),
        "feature_names_sha256_12": hashlib.sha256("\n".join(names).encode()).hexdigest()[:12],
        "params": PARAMS,
        "versions": {
            "xgboost": xgboost.__version__,
            "onnxmltools": onnxmltools.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
        },
        "targets": targets,
    }
    (args.out / "xgb-cycle.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {args.out / 'xgb-cycle.json'}")


if __name__ == "__main__":
    main()
