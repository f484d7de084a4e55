"""skfewrec: few-shot recommendation for new users and long-tail items.

Item factors are pretrained with ALS on the warm population; new users (and new
items) are folded in from a few interactions without retraining. Every model is
a scikit-learn estimator.
"""

import importlib

__version__ = "0.1.0"

# public name -> private module; imported on first use, so `import skfewrec` stays
# fast and optional dependencies load only when their feature is used
_LAZY = {
    "ALSFactors": "._factors",
    "ClosedFormFoldIn": "._closed_form",
    "EASE": "._baselines",
    "ExplicitALSFactors": "._explicit",
    "GradientFoldIn": "._gradient",
    "ImplicitFoldIn": "._baselines",
    "ItemKNN": "._baselines",
    "LightGBMReranker": "._rerank",
    "MostPopular": "._baselines",
    "dumps": "._persistence",
    "load": "._persistence",
    "loads": "._persistence",
    "save": "._persistence",
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
