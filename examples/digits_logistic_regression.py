"""Non-spiking baseline for ``eventprop train digits``: logistic regression on the same pixels.

Same fixed split as the spiking runs (:func:`eventprop.datasets.digits_split`), pixels
scaled to [0, 1] as the encoder sees them. The inverse regularisation strength ``C`` is
chosen on the validation split, the model is fitted on the training split only, and the
test split is scored once. Deterministic (L-BFGS), so one run is the result.

    .venv/bin/python examples/digits_logistic_regression.py

Needs scikit-learn (in the ``dev`` extra).
"""

from __future__ import annotations

import json

from sklearn.linear_model import LogisticRegression

from eventprop.datasets import digits_split

GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def main() -> dict[str, float]:
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (digits_split(s) for s in ("train", "validation", "test"))
    x_tr, x_va, x_te = x_tr / 16.0, x_va / 16.0, x_te / 16.0

    def fit(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=10_000).fit(x_tr, y_tr)

    val = {c: fit(c).score(x_va, y_va) for c in GRID}
    best_c = max(GRID, key=lambda c: (val[c], -c))  # ties: the stronger regularisation
    result = {"C": best_c, "validation_accuracy": val[best_c], "test_accuracy": fit(best_c).score(x_te, y_te)}
    for c in GRID:
        print(f"C={c:<6} validation accuracy {100 * val[c]:.2f}%")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
