"""Numbers at the door (issue 12): thread counts, interaction values, yes/no options.

Each test here failed on the code before the fix: a segfault, NaN scores, -1 ids,
a message naming the wrong problem, or an error from deep inside a solver.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.frozen import FrozenEstimator

from skfewrec import (
    EASE,
    ALSFactors,
    ClosedFormFoldIn,
    GradientFoldIn,
    ImplicitFoldIn,
    ItemKNN,
    MostPopular,
)
from skfewrec._core.threads import effective_n_jobs, implicit_threads, max_threads
from skfewrec._core.validation import (
    MAX_INTERACTION_VALUE,
    check_flag,
    check_interactions,
    check_values,
)
from skfewrec.apps._answer import recommend_rows

LIMIT = r"above 1e\+06, the largest interaction value"


@pytest.fixture(scope="module")
def X(small_interactions):
    return small_interactions


@pytest.fixture(scope="module")
def factors(X):
    return FrozenEstimator(ALSFactors(n_components=6, max_iter=4, random_state=0).fit(X))


def _with_value(X, value, row=0, col=3):
    X = X.tolil(copy=True)
    X[row, col] = value
    return X.tocsr()


# ------------------------------------------------------------------ threads
def test_n_jobs_is_capped_at_the_cores():
    assert effective_n_jobs(100_000) == max_threads() == (os.cpu_count() or 1)
    assert implicit_threads(100_000) == max_threads()
    assert effective_n_jobs(-1) == max_threads() and effective_n_jobs(None) == 1
    assert implicit_threads(None) == 0


def test_huge_n_jobs_fits_instead_of_crashing(tmp_path, small_interactions):
    # implicit segfaulted when asked for 100000 threads: run where a crash cannot take
    # pytest down, and check the exit status (a signal is a negative return code)
    script = textwrap.dedent(
        """
        import numpy as np
        from skfewrec import ALSFactors, ItemKNN
        from skfewrec.datasets import make_interactions
        X = make_interactions(n_users=200, n_items=60, random_state=0).X
        f = ALSFactors(n_components=4, max_iter=2, n_jobs=100000, random_state=0).fit(X)
        assert np.isfinite(f.item_factors_).all()
        ItemKNN(n_jobs=100000).fit(X).recommend(X[:3], k=2)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


# ------------------------------------------------------------------ values
@pytest.mark.parametrize("value", [1e7, 1e20, 1e300])
@pytest.mark.parametrize("as_sparse", [True, False])
def test_values_above_the_limit_are_refused_by_name(value, as_sparse):
    X = np.array([[1.0, value], [0.0, 2.0]])
    with pytest.raises(ValueError, match=LIMIT) as info:
        check_interactions(sp.csr_matrix(X) if as_sparse else X, name="X_new")
    message = str(info.value)
    assert message.startswith("X_new has 1 value(s)") and f"{value:g}" in message
    assert "NaN" not in message  # 1e300 used to be reported as infinite (float32 cast)


def test_the_limit_itself_and_summed_duplicates():
    ok = check_interactions(np.array([[MAX_INTERACTION_VALUE, 1.0]]))
    assert ok.data.max() == MAX_INTERACTION_VALUE
    rows, cols = np.array([0, 0]), np.array([1, 1])
    dup = sp.coo_matrix((np.array([6e5, 6e5]), (rows, cols)), shape=(1, 3))
    with pytest.raises(ValueError, match=LIMIT):
        check_interactions(dup)
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_interactions(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="NaN or infinite.*the first is inf"):
        check_values(np.array([1.0, np.inf]), "X")
    assert check_values(np.array([True, False]), "X").dtype == bool


@pytest.mark.parametrize("value", [1e8, 1e15, 1e30])
def test_fold_ins_refuse_huge_values_with_the_one_message(X, factors, value):
    # were: NaN scores (gradient), LinAlgError / posv failed (closed form, implicit)
    user = _with_value(sp.csr_matrix((1, X.shape[1])), value)
    for est in (
        ClosedFormFoldIn(factors),
        GradientFoldIn(factors, loss="wmse", meta_iter=5, random_state=0),
        ImplicitFoldIn(factors),
    ):
        est.fit(X)
        for call in (est.transform, est.decision_function, est.recommend):
            with pytest.raises(ValueError, match=LIMIT):
                call(user)


@pytest.mark.parametrize("cls", [EASE, ItemKNN, MostPopular, ALSFactors])
def test_fits_refuse_huge_values(X, cls):
    # were: EASE NaN coefficients and [[-1, -1, -1]]; implicit's ModelFitError
    with pytest.raises(ValueError, match=LIMIT):
        cls().fit(_with_value(X, 1e20))


@pytest.mark.parametrize("cls", [EASE, ItemKNN, MostPopular])
def test_baselines_stay_finite_at_the_limit(X, cls):
    est = cls().fit(_with_value(X, MAX_INTERACTION_VALUE))
    user = _with_value(sp.csr_matrix((2, X.shape[1])), MAX_INTERACTION_VALUE)
    ids, scores = est.recommend(user, k=5)
    assert (ids >= 0).all() and (ids < X.shape[1]).all()
    assert np.isfinite(scores).all()


def test_closed_form_and_implicit_are_sane_at_the_limit(X, factors):
    user = _with_value(sp.csr_matrix((1, X.shape[1])), MAX_INTERACTION_VALUE)
    for est in (ClosedFormFoldIn(factors).fit(X), ImplicitFoldIn(factors).fit(X)):
        scores = est.decision_function(user)
        assert np.isfinite(scores).all() and np.abs(scores).max() < 100


def test_ease_refuses_a_singular_system():
    X = np.array([[1.0, 1, 0], [1, 1, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="EASE cannot invert X\\^T X \\+ l2 I with l2=1e-300"):
        EASE(l2=1e-300).fit(X)


# ------------------------------------------------------------------ yes/no options
@pytest.mark.parametrize("value", ["no", "false", 0, 1, None, [True]])
def test_flags_must_be_bool(value):
    with pytest.raises(TypeError, match="filter_seen must be True or False"):
        check_flag(value, "filter_seen")
    assert check_flag(np.False_, "filter_seen") is False


def test_recommend_rows_refuses_a_truthy_string_and_a_lying_model(X):
    est = MostPopular().fit(X)
    with pytest.raises(TypeError, match="filter_seen must be True or False, got 'no'"):
        recommend_rows(est, X[:2], k=3, filter_seen="no")
    ids, _ = recommend_rows(est, X[:2], k=3, filter_seen=False)
    assert (ids >= 0).all()
    # -1 slots are fine when fewer than k items remain...
    few = recommend_rows(est, X[:1], k=3, items=[0, 1, 2], exclude=[1], filter_seen=False)[0]
    assert few.tolist()[0][2] == -1 and sorted(few[0][:2]) == [0, 2]
    # ...not when the model lost them (a NaN popularity used to give all -1, silently)
    est.item_popularity_ = np.full_like(est.item_popularity_, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="empty slots for 2 user"):
            recommend_rows(est, X[:2], k=3)


def test_gradient_wmse_stays_sane_up_to_the_limit(X, factors):
    est = GradientFoldIn(factors, loss="wmse", meta_iter=5, random_state=0).fit(X)
    user = _with_value(sp.csr_matrix((1, X.shape[1])), MAX_INTERACTION_VALUE)
    scores = est.decision_function(user)
    assert np.isfinite(scores).all() and np.abs(scores).max() < 100


def test_tiny_values_are_refused_not_dropped():
    # 5e-324 became 0 in float32: the interaction vanished and its item could be recommended
    with pytest.raises(ValueError, match="1 positive value\\(s\\) below 1.18e-38"):
        check_interactions(np.array([[5e-324, 1.0]]))
    assert check_interactions(np.array([[1.2e-38, 1.0]])).nnz == 2


@pytest.mark.parametrize("fmt", ["dok", "lil", "coo", "csc", "bsr", "dia"])
def test_every_sparse_format_is_checked_before_the_cast(fmt):
    X = sp.random(4, 5, density=0.5, format=fmt, random_state=0, dtype=np.float64)
    assert check_interactions(X).format == "csr"
    huge = sp.lil_matrix(X)
    huge[0, 0] = 1e300
    with pytest.raises(ValueError, match=LIMIT):
        check_interactions(huge.asformat(fmt))


@pytest.mark.parametrize("value", ["no", "yes", 1, 0, None])
def test_recommend_refuses_a_filter_seen_that_is_not_a_bool(X, factors, value):
    for est in (
        MostPopular().fit(X),
        ClosedFormFoldIn(factors).fit(X),
    ):
        with pytest.raises(TypeError, match="filter_seen must be True or False"):
            est.recommend(X[:2], k=3, filter_seen=value)
