"""Write the legacy bundles and golden recommendations under tests/data/legacy_v0_1/.

Run once, with skfewrec 0.1.0 as it was before the fold-in core was reorganised
(commit 59f63d6), from the repository root::

    python tests/data/make_legacy_bundles.py

It fits every estimator on small *synthetic* data (no real data goes into the
repository), saves each as a zip bundle (the format of 0.1.0, which names private
module paths such as ``skfewrec._factors.ALSFactors``) and records, per model,

- ``<name>.zip``: the bundle;
- ``golden.npz``: ``<name>_ids``/``<name>_scores``, the recommendations of the
  fitted model for the users ``X_new`` (also stored there), and ``<name>_fresh_ids``,
  those of a model fitted afresh on the same data with the same seeds.

One entry was rewritten on purpose since: ``reranker_fresh_ids``, after the
re-ranker stopped storing the warm interaction matrix (its user-kNN feature is now
read from the item co-occurrence table, so a fresh fit trains on other features;
benchmarks/rerank_warm.py measured the few-shot curve before and after). The saved
re-ranker bundle still answers exactly as before.

Since the defaults became "auto" (issue 10: ``ALSFactors`` chooses its
regularization and confidence scale, ``ClosedFormFoldIn`` its prior strength and
support shrinkage, on the warm data), ``models()`` spells out 0.1.0's defaults
(``confidence_scale=1.0``, ``prior_strength=1.0``, ``shrinkage=0``; and
``GradientFoldIn``'s ``meta_cv=None``: 0.1.0 did not cross-fit its meta-learning)
so that a fresh fit is still the configuration the bundles were written with.

``tests/test_legacy.py`` loads every bundle with the current code and checks that
it gives identical recommendations, and that fitting afresh still gives the same.
"""

import json
from pathlib import Path

import numpy as np

import skfewrec
from skfewrec.datasets import make_interactions

OUT = Path(__file__).resolve().parent / "legacy_v0_1"


def data():
    X = make_interactions(n_users=160, n_items=60, random_state=0).X
    return X[:130].tocsr(), X[130:].tocsr()


def factors(seed=0):
    return skfewrec.ALSFactors(
        n_components=6, max_iter=4, regularization=0.1, confidence_scale=1.0, random_state=seed
    )


def closed_form(**kwargs):
    """ClosedFormFoldIn with 0.1.0's defaults (no prior, strength 1, no shrinkage)."""
    return skfewrec.ClosedFormFoldIn(
        **{"prior": "none", "prior_strength": 1.0, "shrinkage": 0.0, **kwargs}
    )


def models():
    """name -> unfitted estimator; every random choice is seeded."""
    from sklearn.pipeline import make_pipeline

    from skfewrec.preprocessing import BM25Weighting

    return {
        "closed_form_none": closed_form(factors=factors(), prior="none"),
        "closed_form_mean": closed_form(factors=factors(), prior="mean"),
        "closed_form_gaussian": closed_form(
            factors=factors(), prior="gaussian", prior_strength=0.5
        ),
        "closed_form_spark": closed_form(
            factors=factors(), prior="gaussian", convention="spark", confidence_scale=2.0
        ),
        "closed_form_explicit": closed_form(
            factors=skfewrec.ExplicitALSFactors(n_components=4, max_iter=4, random_state=0),
            objective="explicit",
            prior="gaussian",
        ),
        "gradient": skfewrec.GradientFoldIn(
            factors(), n_steps=3, meta_iter=8, meta_batch_size=32, meta_cv=None, random_state=0
        ),
        "implicit_fold_in": skfewrec.ImplicitFoldIn(factors()),
        "most_popular": skfewrec.MostPopular(),
        "ease": skfewrec.EASE(l2=50.0),
        "item_knn": skfewrec.ItemKNN(n_neighbors=10),
        "reranker": skfewrec.LightGBMReranker(
            closed_form(factors=factors(), prior="gaussian"),
            n_candidates=20,
            n_estimators=8,
            cv=2,
            n_episodes=2,
            random_state=0,
        ),
        "pipeline_bm25": make_pipeline(
            BM25Weighting(), closed_form(factors=factors(), prior="gaussian")
        ),
    }


def _recommend(model, X_new):
    last = model[-1] if hasattr(model, "steps") else model
    Xt = model[:-1].transform(X_new) if hasattr(model, "steps") else X_new
    return last.recommend(Xt, k=5)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    X_warm, X_new = data()
    golden = {"X_new_data": X_new.data, "X_new_indices": X_new.indices}
    golden["X_new_indptr"] = X_new.indptr
    for name, model in models().items():
        R = X_warm.copy()
        if name == "closed_form_explicit":
            R.data = 1.0 + (R.data % 5)
        model.fit(R)
        ids, scores = _recommend(model, X_new)
        skfewrec.save(model, OUT / f"{name}.zip")
        golden[f"{name}_ids"] = ids
        golden[f"{name}_scores"] = scores
        fresh = models()[name].fit(R)
        golden[f"{name}_fresh_ids"] = _recommend(fresh, X_new)[0]
    # a model saved with its id maps: the encoder travels in the bundle
    import pandas as pd

    from skfewrec.preprocessing import InteractionEncoder

    rows, cols = X_warm.nonzero()
    log = pd.DataFrame({"user": rows + 1000, "item": [f"i{c}" for c in cols]})
    encoder = InteractionEncoder().fit(log)
    model = models()["closed_form_gaussian"].fit(encoder.transform(log))
    skfewrec.save(model, OUT / "closed_form_encoded.zip", encoder=encoder)
    X_enc = X_new[:, [int(i[1:]) for i in encoder.item_ids_]]
    golden["closed_form_encoded_ids"] = model.recommend(X_enc, k=5)[0]
    golden["closed_form_encoded_item_ids"] = encoder.item_ids_.astype(str)
    np.savez_compressed(OUT / "golden.npz", **golden)
    (OUT / "README.json").write_text(
        json.dumps({"skfewrec": skfewrec.__version__, "commit": "59f63d6"}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
