"""What a bundle is: member names, format versions, and the public names of its classes."""

import importlib
import re

FORMAT_NAME = "skfewrec-bundle"
#: the bundle format written; every older one is read too. 1 (skfewrec 0.1.0): class
#: paths were private module paths (resolved through ``_ALIASES``); 2: public class
#: paths only, and the encoder is a documented part of what ``load`` returns.
FORMAT_VERSION = 2

MANIFEST = "manifest.json"
META = "meta.json"
ARRAYS = "arrays.npz"


#: classes from outside skfewrec that may be saved and loaded: public path -> (module, name)
_EXTERNAL_CLASSES = {
    "sklearn.pipeline.Pipeline": ("sklearn.pipeline", "Pipeline"),
    "sklearn.frozen.FrozenEstimator": ("sklearn.frozen", "FrozenEstimator"),
}
#: the modules whose public names a bundle may use for skfewrec classes
_PUBLIC_MODULES = ("skfewrec", "skfewrec.preprocessing", "skfewrec.pipeline")
#: class paths written by earlier versions (private module paths) -> public path
_ALIASES = {
    **{
        f"skfewrec.{module}.{name}": f"skfewrec.{name}"
        for module, names in {
            "_factors": ["ALSFactors"],
            "_explicit": ["ExplicitALSFactors"],
            "_closed_form": ["ClosedFormFoldIn"],
            "_gradient": ["GradientFoldIn"],
            "_rerank": ["LightGBMReranker"],
            "_baselines": ["EASE", "ImplicitFoldIn", "ItemKNN", "MostPopular"],
        }.items()
        for name in names
    },
    "skfewrec.preprocessing._encoder.InteractionEncoder": (
        "skfewrec.preprocessing.InteractionEncoder"
    ),
    **{
        f"skfewrec.preprocessing._weighting.{name}": f"skfewrec.preprocessing.{name}"
        for name in ("BM25Weighting", "LogConfidence", "TFIDFWeighting")
    },
}
#: member names a manifest may list
MEMBER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")
#: strings longer than this are stored as members of their own
LONG_TEXT = 4096
LIGHTGBM_HEADER = "tree\nversion="


def library_version():
    from .. import __version__

    return __version__


def public_class_path(cls):
    """The public path a bundle names ``cls`` by, or None when it may not be saved."""
    for path, (module, name) in _EXTERNAL_CLASSES.items():
        if getattr(importlib.import_module(module), name) is cls:
            return path
    for module in _PUBLIC_MODULES:
        if getattr(importlib.import_module(module), cls.__name__, None) is cls:
            return f"{module}.{cls.__name__}"
    return None
