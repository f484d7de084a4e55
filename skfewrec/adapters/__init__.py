"""Adapters: recommend to a new user from a few interactions, item factors fixed."""

from ._closed_form import ClosedFormFoldIn
from ._gradient import GradientFoldIn
from ._item_prior import NewItemRecommender

__all__ = ["ClosedFormFoldIn", "GradientFoldIn", "NewItemRecommender"]
