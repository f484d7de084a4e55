"""The demo behind ``make demo`` and ``skfewrec demo``: the few-shot curve, end to end.

Pretrains ALS on warm users of the embedded synthetic dataset (or a MovieLens
folder given with ``--data``), folds in new users from n = 1, 3, 5, 10, 20 shots,
and prints NDCG@20 and Recall@20 for most-popular, implicit's own fold-in and
skfewrec's closed form with an empirical-Bayes prior.
"""

import argparse
import time

import pandas as pd
from sklearn.frozen import FrozenEstimator

from ..adapters._closed_form import ClosedFormFoldIn
from ..baselines import ImplicitFoldIn, MostPopular
from ..factors._als import ALSFactors


def load(data, random_state=0):
    """The demo's interactions: synthetic by default, else a MovieLens folder."""
    from ..datasets import load_movielens, make_interactions

    if data is None:
        bunch = make_interactions(n_users=3000, n_items=800, random_state=random_state)
        return "synthetic (make_interactions, 3000 users x 800 items)", bunch.X
    bunch = load_movielens(data, min_rating=4, binarize=True)
    return f"{data} (ratings >= 4)", bunch.X


def run(data=None, *, n_shots=(1, 3, 5, 10, 20), k=20, random_state=0, quiet=False):
    """Fit the demo's models and return the few-shot curve as a DataFrame.

    Parameters
    ----------
    data : str or path, default=None
        A MovieLens folder; None uses the embedded synthetic dataset.
    n_shots : tuple of int
        Shot counts of the curve.
    k : int
        Cut-off of the ranking.
    random_state : int
        Seeds the split, ALS and the support draws.
    quiet : bool
        Print no progress and no table (``skfewrec demo --quiet`` still prints the
        table: it calls :func:`print_curve` itself).

    Returns
    -------
    curve : pandas.DataFrame
        One row per (model, n_shots) with ``ndcg``, ``recall`` and ``n_users``.

    Examples
    --------
    >>> from skfewrec.apps.demo import run
    >>> curve = run(n_shots=(1, 5), quiet=True)
    >>> sorted(curve["model"].unique())
    ['closed_form_gaussian', 'implicit_foldin', 'most_popular']
    """
    from ..model_selection import fewshot_curve, train_test_split_users

    say = (lambda *a: None) if quiet else print
    name, X = load(data, random_state)
    X_warm, X_new = train_test_split_users(X, test_size=0.2, random_state=random_state)
    say(f"data: {name}: {X.shape[0]} users, {X.shape[1]} items, {X.nnz} interactions")
    say(f"warm users (pretraining): {X_warm.shape[0]}; new users (few-shot): {X_new.shape[0]}")
    start = time.perf_counter()
    # the library's defaults: regularization and confidence scale chosen on the warm users
    factors = ALSFactors(n_components=32, random_state=random_state).fit(X_warm)
    say(f"ALS pretrained in {time.perf_counter() - start:.2f}s")
    frozen = FrozenEstimator(factors)
    models = {
        "most_popular": MostPopular(),
        "implicit_foldin": ImplicitFoldIn(factors=frozen),
        # prior strength and support shrinkage: the factors' own search chose them
        "closed_form_gaussian": ClosedFormFoldIn(factors=frozen, random_state=random_state),
    }
    frames = []
    for model_name, model in models.items():
        model.fit(X_warm)
        curve = fewshot_curve(
            model, X_new, n_shots=n_shots, k=k, min_query=5, random_state=random_state
        )
        frames.append(curve.reset_index().assign(model=model_name))
    result = pd.concat(frames, ignore_index=True)
    if not quiet:
        print_curve(result, k)
    return result


def print_curve(result, k=20):
    """Print the few-shot curve of :func:`run`: NDCG@k and Recall@k by number of shots.

    Parameters
    ----------
    result : pandas.DataFrame
        What :func:`run` returned.
    k : int, default=20
        The cut-off the curve was computed at (for the titles).

    Examples
    --------
    >>> import pandas as pd
    >>> from skfewrec.apps.demo import print_curve
    >>> curve = pd.DataFrame({"model": ["a", "a"], "n_shots": [1, 3], "ndcg": [0.1, 0.2],
    ...                       "recall": [0.3, 0.4]})
    >>> print_curve(curve, k=20)  # doctest: +NORMALIZE_WHITESPACE
    <BLANKLINE>
    NDCG@20 on new users, by number of shots:
    n_shots    1    3
    model
    a        0.1  0.2
    <BLANKLINE>
    Recall@20 on new users, by number of shots:
    n_shots    1    3
    model
    a        0.3  0.4
    """
    models = list(dict.fromkeys(result["model"]))
    for metric in ("ndcg", "recall"):
        wide = result.pivot(index="model", columns="n_shots", values=metric)
        title = "NDCG" if metric == "ndcg" else "Recall"
        print(f"\n{title}@{k} on new users, by number of shots:")
        print(wide.loc[models].round(4).to_string())


def main(argv=None):
    """Command-line entry of the demo."""
    parser = argparse.ArgumentParser(prog="skfewrec demo", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="a MovieLens folder (default: synthetic)")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress: print only the result table"
    )
    args = parser.parse_args(argv)
    if args.quiet:
        print_curve(run(args.data, quiet=True))
    else:
        run(args.data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
