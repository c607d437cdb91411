"""`chainrule.utils.data.dataloader`, as `torch.utils.data.dataloader`."""

from ...data import DataLoader, default_collate

__all__ = ["DataLoader", "default_collate"]
