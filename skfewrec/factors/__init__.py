"""Factor sources: item factors pretrained on the warm users, and the fold-in of
new users (``transform``) and new items (``fold_in_items``, ``extend_items``)
against them. Adapters reach a source through the small protocol described in
:mod:`skfewrec.factors._base`."""

from ._als import ALSFactors
from ._explicit import ExplicitALSFactors

__all__ = ["ALSFactors", "ExplicitALSFactors"]
