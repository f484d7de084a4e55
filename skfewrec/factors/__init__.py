"""Factor sources: item factors pretrained on the warm users, and the fold-in of
new users and new items against them."""

from ._als import ALSFactors
from ._explicit import ExplicitALSFactors

__all__ = ["ALSFactors", "ExplicitALSFactors"]
