"""Model bundles without pickle: arrays in ``.npz``, everything else in JSON.

A bundle is a directory, or a single zip file, holding

- ``arrays.npz``: every numpy array of the model (``np.savez``; read back with
  ``allow_pickle=False``, only the arrays the model refers to);
- ``meta.json``: the library and format versions, and the estimator as a tree of
  nodes ``{"class", "params", "fitted"}`` (constructor parameters and public
  fitted attributes, with nested estimators as nodes of their own), plus the
  optional id maps (an :class:`~skfewrec.preprocessing.InteractionEncoder`);
- ``lightgbm/<n>.txt``: each LightGBM model as LightGBM's own model text;
- ``manifest.json``: the format, the library version and the SHA-256 and size of
  every other member.

Format versions (``FORMAT_VERSION`` is written; every older one is read):

1. skfewrec 0.1.0: classes named by their private module paths
   (``skfewrec._factors.ALSFactors``), resolved through an alias table.
2. Classes named by their public paths only (``skfewrec.ALSFactors``,
   ``skfewrec.preprocessing.InteractionEncoder``); the id maps are returned by
   ``load(..., return_encoder=True)``, never attached to the estimator.

Loading is a parser, not a trust decision: checksums are not a signature, so
every member is read within the size limits of ``skfewrec.persistence.limits``
(bytes per member and per bundle, counted while streaming; JSON size and depth;
compression ratio), directory members must be
regular files, only allow-listed classes are instantiated (skfewrec's
estimators, scikit-learn's ``Pipeline`` and ``FrozenEstimator``), parameters
pass the estimators' own constraints plus numeric sanity, arrays and sparse
structures are checked, LightGBM text passes a strict reader before LightGBM
sees it, caches are rebuilt by ``_rebuild()``, and the model must answer a probe
with in-range ids and finite scores. Every failure is a :class:`BundleError`.
Nothing is unpickled and nothing is evaluated.
"""

from ._errors import BundleError
from ._format import ARRAYS, FORMAT_VERSION, MANIFEST, META
from ._loader import load, loads, read_metadata
from ._reader import limits
from ._writer import dumps, save

__all__ = [
    "ARRAYS",
    "FORMAT_VERSION",
    "MANIFEST",
    "META",
    "BundleError",
    "dumps",
    "load",
    "loads",
    "read_metadata",
    "limits",
    "save",
]
