"""ALSFactors: item factors pretrained with implicit's CPU ALS on the warm population."""

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state

from .._core.compat import Interval, StrOptions, _fit_context, check_is_fitted
from .._core.conventions import CONVENTIONS
from .._core.solvers import fold_in, implicit_system
from .._core.threads import blas_limits, effective_n_jobs, implicit_threads
from ..base import DerivedCachesMixin, SparseFloat32TransformerMixin, validate_interactions
from ._base import FactorSourceMixin


def _new_implicit_model(
    n_components, regularization, confidence_scale, max_iter, use_cg, random_state, num_threads
):
    from implicit.cpu.als import AlternatingLeastSquares

    # implicit warns when BLAS is multi-threaded, as its own threads do the work
    with blas_limits(1), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*BLAS.*", category=RuntimeWarning)
        return AlternatingLeastSquares(
            factors=n_components,
            regularization=regularization,
            alpha=confidence_scale,
            iterations=max_iter,
            use_cg=use_cg,
            random_state=random_state,
            num_threads=num_threads,
        )


class ALSFactors(
    FactorSourceMixin,
    DerivedCachesMixin,
    SparseFloat32TransformerMixin,
    TransformerMixin,
    BaseEstimator,
):
    """Item and warm-user factors learned with implicit's CPU alternating least squares.

    The pretrainer of every skfewrec adapter: it factorises the warm users'
    interactions with :class:`implicit.cpu.als.AlternatingLeastSquares`, then
    recomputes every warm user's vector exactly against the final item factors,
    so that ``user_factors_`` is what the closed-form fold-in gives for the same
    rows. ``transform`` folds in new users (rows) with the item factors fixed;
    :meth:`fold_in_items` folds in new items with the warm users' vectors fixed,
    and :meth:`extend_items` returns a copy with them appended.

    Confidences follow implicit: ``c = confidence_scale * x`` for each
    interaction ``x``, weight 1 for every other item.

    Parameters
    ----------
    n_components : int, default=64
        Number of latent factors.
    regularization : float or "auto", default="auto"
        L2 regularisation of user and item factors (implicit's ``regularization``).
        "auto" chooses it on the warm data for few-shot users (simulated episodes
        of held-out warm users, :func:`skfewrec._auto.choose_als_settings`; see
        the "Defaults" page): the right value moves by orders of magnitude from one
        data set to the next.
    confidence_scale : float or "auto", default="auto"
        Multiplies every interaction value to give its confidence
        (implicit's ``alpha``). "auto": chosen with ``regularization``.
    max_iter : int, default=15
        Number of ALS sweeps.
    use_cg : bool, default=True
        Use implicit's conjugate-gradient solver during training (faster, inexact
        per sweep); False uses its exact Cholesky solver.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial factors.
    n_jobs : int, default=None
        Threads for implicit and BLAS. None: one thread for BLAS and every core
        for implicit's own parallel loops (its default); -1: every core.
    show_progress : bool, default=False
        Show implicit's progress bar while training.

    Attributes
    ----------
    regularization_ : float
        The regularization in use (the chosen one for "auto").
    confidence_scale_ : float
        The confidence scale in use (the chosen one for "auto").
    auto_report_ : dict or None
        What "auto" measured: every (regularization, confidence_scale) scored with
        its best prior strength and support shrinkage, the chosen ``settings``, the
        held-out users and the seconds; None when nothing was "auto".
    item_factors_ : ndarray of shape (n_items, n_components), float32
    user_factors_ : ndarray of shape (n_users, n_components), float32
        Exact fold-ins of the training rows against ``item_factors_``.
    n_iter_ : int
        Number of ALS sweeps run.
    item_counts_ : ndarray of shape (n_items,), int64
        Number of training users per item (0: an item the factors know nothing
        about). Absent for factors wrapped with :meth:`from_arrays`.
    convention_ : str
        The confidence convention of the factors: "implicit" when trained here,
        "spark" for factors imported from Spark MLlib.
    n_features_in_ : int
        The catalogue size (number of columns of ``X``).

    See Also
    --------
    ClosedFormFoldIn : the adapter that folds in new users, with priors.

    Examples
    --------
    >>> from skfewrec import ALSFactors
    >>> from skfewrec.datasets import make_interactions
    >>> X = make_interactions(n_users=200, n_items=100, random_state=0).X
    >>> als = ALSFactors(n_components=8, random_state=0).fit(X)
    >>> als.item_factors_.shape
    (100, 8)
    >>> als.transform(X[:3]).shape
    (3, 8)
    """

    _derived_caches = ("_system",)

    _parameter_constraints = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "regularization": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "confidence_scale": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "use_cg": ["boolean"],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "show_progress": ["boolean"],
    }

    def __init__(
        self,
        n_components=64,
        *,
        regularization="auto",
        confidence_scale="auto",
        max_iter=15,
        use_cg=True,
        random_state=None,
        n_jobs=None,
        show_progress=False,
    ):
        self.n_components = n_components
        self.regularization = regularization
        self.confidence_scale = confidence_scale
        self.max_iter = max_iter
        self.use_cg = use_cg
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.show_progress = show_progress

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train ALS on the warm users' interactions.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Non-negative confidences of the warm users.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = validate_interactions(self, X, reset=True)
        self._choose_settings(X)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        num_threads = implicit_threads(self.n_jobs)
        model = _new_implicit_model(
            self.n_components,
            self.regularization_,
            self.confidence_scale_,
            self.max_iter,
            self.use_cg,
            seed,
            num_threads,
        )
        with blas_limits(1):
            model.fit(sp.csr_matrix(X), show_progress=self.show_progress)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self.convention_ = "implicit"
        self.n_iter_ = self.max_iter
        self.item_counts_ = np.bincount(X.indices, minlength=X.shape[1]).astype(np.int64)
        self._rebuild()
        self.user_factors_ = self.transform(X)
        return self

    def _choose_settings(self, X):
        """``regularization_`` and ``confidence_scale_``: as given, or chosen on ``X``."""
        from .._auto import choose_als_settings

        given = {"regularization": self.regularization, "confidence_scale": self.confidence_scale}
        self.auto_report_ = None
        if any(isinstance(v, str) for v in given.values()):
            fixed = {k: None if isinstance(v, str) else v for k, v in given.items()}
            settings, self.auto_report_ = choose_als_settings(
                X,
                n_components=self.n_components,
                max_iter=self.max_iter,
                n_jobs=self.n_jobs,
                random_state=self.random_state,
                **fixed,
            )
            self.auto_report_["settings"] = settings
            given = {k: settings[k] for k in given}
        self.regularization_ = float(given["regularization"])
        self.confidence_scale_ = float(given["confidence_scale"])

    def _setting(self, name):
        """A fitted setting; models saved before "auto" existed hold only the parameter."""
        value = getattr(self, f"{name}_", None)
        return float(getattr(self, name)) if value is None else value

    def _rebuild(self):
        """Recompute the private caches derived from the public fitted state."""
        self._system = implicit_system(
            self.item_factors_, self._setting("regularization"), self.convention_
        )

    def fold_in_params(self, regularization=None, confidence_scale=None, convention=None):
        """The fold-in settings of an adapter: its overrides, or these factors' own.

        Parameters
        ----------
        regularization : float, default=None
            The ridge; None: ``self.regularization_``.
        confidence_scale : float, default=None
            None: ``self.confidence_scale_``.
        convention : {"implicit", "spark"}, default=None
            None: ``self.convention_``.

        Returns
        -------
        params : dict
            ``regularization``, ``confidence_scale`` and ``convention``, resolved.

        Examples
        --------
        >>> import numpy as np
        >>> from skfewrec import ALSFactors
        >>> ALSFactors.from_arrays(np.eye(3, 2), regularization=0.5).fold_in_params(
        ...     confidence_scale=2.0)
        {'regularization': 0.5, 'confidence_scale': 2.0, 'convention': 'implicit'}
        """
        check_is_fitted(self)
        own = {
            "regularization": self._setting("regularization"),
            "confidence_scale": self._setting("confidence_scale"),
            "convention": self.convention_,
        }
        given = {
            "regularization": regularization,
            "confidence_scale": confidence_scale,
            "convention": convention,
        }
        params = {k: own[k] if v is None else v for k, v in given.items()}
        params["regularization"] = float(params["regularization"])
        params["confidence_scale"] = float(params["confidence_scale"])
        return params

    def fold_in_system(
        self, *, regularization, convention="implicit", prior_precision=None, prior_mean=None
    ):
        """The immutable system new users are solved against, with an optional prior.

        Parameters
        ----------
        regularization : float
            The ridge ``lambda``.
        convention : {"implicit", "spark"}, default="implicit"
            The confidence convention.
        prior_precision : ndarray of shape (n_components, n_components), default=None
            ``s P``; None for no prior.
        prior_mean : ndarray of shape (n_components,), default=None
            The prior mean.

        Returns
        -------
        system : FoldInSystem

        Examples
        --------
        >>> import numpy as np
        >>> from skfewrec import ALSFactors
        >>> ALSFactors.from_arrays(np.eye(3, 2)).fold_in_system(regularization=1.0).M
        array([[2., 0.],
               [0., 2.]])
        """
        return implicit_system(
            self.item_factors_, regularization, convention, prior_precision, prior_mean
        )

    def fold_in(
        self,
        X,
        system,
        *,
        regularization,
        confidence_scale,
        convention="implicit",
        solver="auto",
        n_jobs=None,
    ):
        """Users' exact vectors against ``system`` (validated CSR in, float64 out).

        Parameters
        ----------
        X : csr_matrix of shape (n_users, n_items)
            The users' values (already validated).
        system : FoldInSystem
            From :meth:`fold_in_system` with the same settings.
        regularization, confidence_scale : float
            The ridge and the confidence scale.
        convention : {"implicit", "spark"}, default="implicit"
            The confidence convention.
        solver : {"auto", "woodbury", "direct"}, default="auto"
            How each user's system is solved.
        n_jobs : int, default=None
            Threads solving batches of users (None: 1).

        Returns
        -------
        U : ndarray of shape (n_users, n_components), float64

        Examples
        --------
        >>> import numpy as np
        >>> import scipy.sparse as sp
        >>> from skfewrec import ALSFactors
        >>> als = ALSFactors.from_arrays(np.eye(3, 2), regularization=1.0)
        >>> params = als.fold_in_params()
        >>> system = als.fold_in_system(regularization=1.0)
        >>> als.fold_in(sp.csr_matrix(np.array([[0.0, 0.0, 1.0]])), system, **params)
        array([[0., 0.]])
        """
        return fold_in(
            X,
            system,
            confidence_scale=confidence_scale,
            regularization=regularization,
            convention=convention,
            solver=solver,
            n_jobs=n_jobs,
        )

    def _item_step(self, Xt):
        """The new items' vectors: the user fold-in, transposed (warm users fixed)."""
        U = self.user_factors_
        system = implicit_system(U, self._setting("regularization"), self.convention_)
        V = fold_in(
            Xt,
            system,
            confidence_scale=self._setting("confidence_scale"),
            regularization=self._setting("regularization"),
            convention=self.convention_,
        )
        return {"item_factors_": V.astype(np.float32)}

    def transform(self, X):
        """Fold in users: their exact least-squares vectors, item factors fixed.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Non-negative confidences of the users to fold in.

        Returns
        -------
        U : ndarray of shape (n_users, n_components), float32
            User vectors; zero for users without interactions.
        """

        check_is_fitted(self)
        X = validate_interactions(self, X, reset=False)
        with blas_limits(1):
            U = self.fold_in(
                X, self._system, **self.fold_in_params(), n_jobs=effective_n_jobs(self.n_jobs)
            )
        return U.astype(np.float32)

    def to_implicit(self):
        """An implicit ``AlternatingLeastSquares`` model holding these factors.

        Useful to compare with implicit's own fold-in and top-k on the same factors.

        Returns
        -------
        model : implicit.cpu.als.AlternatingLeastSquares
        """
        check_is_fitted(self)
        model = _new_implicit_model(
            self.n_components,
            self._setting("regularization"),
            self._setting("confidence_scale"),
            self.max_iter,
            self.use_cg,
            None,
            implicit_threads(self.n_jobs),
        )
        model.item_factors = self.item_factors_.copy()
        model.user_factors = self.user_factors_.copy()
        return model

    @classmethod
    def from_arrays(
        cls,
        item_factors,
        user_factors=None,
        *,
        regularization=0.01,
        confidence_scale=1.0,
        convention="implicit",
    ):
        """Wrap factors pretrained elsewhere, without training.

        Wrap the result in :class:`sklearn.frozen.FrozenEstimator` before passing it
        to an adapter, so that ``clone`` and grid searches keep the factors
        instead of retraining them.

        Parameters
        ----------
        item_factors : array-like of shape (n_items, n_components)
        user_factors : array-like of shape (n_users, n_components), default=None
            The warm users' vectors; None leaves ``user_factors_`` empty.
        regularization : float, default=0.01
            The ridge the factors were trained with (used by ``transform``).
        confidence_scale : float, default=1.0
            The confidence scale they were trained with.
        convention : {"implicit", "spark"}, default="implicit"
            The confidence and ridge convention they were trained with
            (see :func:`confidence_coefficients`).

        Returns
        -------
        factors : ALSFactors
            A fitted instance.

        Examples
        --------
        >>> import numpy as np
        >>> from skfewrec import ALSFactors
        >>> als = ALSFactors.from_arrays(np.eye(4, 2), regularization=0.1)
        >>> als.n_components, als.n_features_in_
        (2, 4)
        """
        Y = np.asarray(item_factors)
        if Y.ndim != 2 or Y.shape[0] == 0 or Y.shape[1] == 0:
            raise ValueError(
                f"item_factors must be a non-empty 2-d array (n_items, n_components), got "
                f"shape {Y.shape}."
            )
        if not np.issubdtype(Y.dtype, np.number) or not np.all(np.isfinite(Y)):
            raise ValueError("item_factors must hold finite real numbers.")
        est = cls(
            n_components=Y.shape[1],
            regularization=regularization,
            confidence_scale=confidence_scale,
        )
        est._validate_params()
        if isinstance(regularization, str) or isinstance(confidence_scale, str):
            raise ValueError(
                "from_arrays needs the regularization and confidence_scale the factors were "
                "trained with (numbers), not 'auto': nothing is trained here."
            )
        est.regularization_ = float(regularization)
        est.confidence_scale_ = float(confidence_scale)
        est.auto_report_ = None
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}.")
        est.item_factors_ = np.ascontiguousarray(Y, dtype=np.float32)
        est.n_features_in_ = Y.shape[0]
        est.convention_ = convention
        est._rebuild()
        if user_factors is None:
            est.user_factors_ = np.zeros((0, Y.shape[1]), dtype=np.float32)
        else:
            U = np.asarray(user_factors, dtype=np.float32)
            if U.ndim != 2 or U.shape[1] != Y.shape[1]:
                raise ValueError(
                    f"user_factors must have shape (n_users, {Y.shape[1]}) to match "
                    f"item_factors, got {U.shape}."
                )
            est.user_factors_ = U
        return est

    @classmethod
    def from_implicit(cls, model):
        """Wrap a fitted implicit ALS model's factors and settings, without training.

        Parameters
        ----------
        model : implicit.cpu.als.AlternatingLeastSquares
            A fitted model (a GPU model is moved to the CPU first).

        Returns
        -------
        factors : ALSFactors
            A fitted instance with the model's ``regularization`` and ``alpha``.
        """
        if hasattr(model, "to_cpu") and not hasattr(model.item_factors, "ndim"):
            model = model.to_cpu()
        if getattr(model, "item_factors", None) is None:
            raise ValueError("model is not fitted: its item_factors are None; fit it first.")
        return cls.from_arrays(
            model.item_factors,
            model.user_factors,
            regularization=float(model.regularization),
            confidence_scale=float(model.alpha),
        )
