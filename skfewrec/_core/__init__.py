"""The fold-in core: conventions, the shared linear system, batched solvers,
top-k selection, thread control and input checks.

Nothing here is an estimator; everything here is used by the estimators of
:mod:`skfewrec.factors`, :mod:`skfewrec.adapters`, :mod:`skfewrec.rerank` and
:mod:`skfewrec.baselines`. Modules here import nothing from the rest of skfewrec.
"""
