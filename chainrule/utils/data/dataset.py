"""`chainrule.utils.data.dataset`, as `torch.utils.data.dataset`."""

from ...data import ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split

__all__ = ["ConcatDataset", "Dataset", "IterableDataset", "Subset", "TensorDataset", "random_split"]
