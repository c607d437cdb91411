"""`chainrule.nn`: layers and losses. (The layer classes arrive with the training toolkit.)"""

from . import functional

__all__ = ["functional"]
