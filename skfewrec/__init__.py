"""skfewrec: few-shot recommendation for new users and long-tail items.

Item factors are pretrained with ALS on the warm population; new users (and new
items) are folded in from a few interactions without retraining. Every model is
a scikit-learn estimator.
"""

import importlib

__version__ = "0.1.0"

# public name -> module; imported on first use, so `import skfewrec` stays
# fast and optional dependencies load only when their feature is used
_LAZY = {
    "ALSFactors": ".factors",
    "ClosedFormFoldIn": ".adapters",
    "EASE": ".baselines",
    "ExplicitALSFactors": ".factors",
    "GradientFoldIn": ".adapters",
    "ImplicitFoldIn": ".baselines",
    "ItemKNN": ".baselines",
    "LightGBMReranker": ".rerank",
    "MostPopular": ".baselines",
    "NewItemRecommender": ".adapters",
    "PopularityPenalty": ".tail",
    "RecommenderPipeline": ".pipeline",
    "dumps": ".persistence",
    "load": ".persistence",
    "loads": ".persistence",
    "make_pipeline": ".pipeline",
    "save": ".persistence",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skfewrec' has no attribute {name!r}")


def __dir__():
    return __all__
