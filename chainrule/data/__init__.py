"""`chainrule.data`: datasets and batching, as torch.utils.data.

Shuffling draws from `seed` when one is given (a generator of the loader's own, so each epoch gets
a new but reproducible order), else from the generator `cr.manual_seed` sets.
"""

import math

import numpy as np

from ..engine.tensor import Tensor
from ..ops.creation import default_generator
from ..ops.shape import stack

__all__ = ["DataLoader", "Dataset", "TensorDataset"]


class Dataset:
    """A sized, indexable collection of samples: subclass and define __len__ and __getitem__."""

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")


class TensorDataset(Dataset):
    """Samples are the rows of tensors that share their first dimension."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        tensors = tuple(t if isinstance(t, Tensor) else Tensor(t) for t in tensors)
        sizes = [t.shape[0] if t.ndim else None for t in tensors]
        if None in sizes or len(set(sizes)) != 1:
            shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
            raise ValueError(
                f"TensorDataset: all tensors need the same first dimension (the "
                f"number of samples), got shapes {shapes}"
            )
        self.tensors = tensors

    def __len__(self):
        return self.tensors[0].shape[0]

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)


class DataLoader:
    """Batches of a dataset: a tuple of tensors per batch (one per tensor of a TensorDataset),
    the last one short unless drop_last."""

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self._rng = None if seed is None else np.random.default_rng(seed)

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self):
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        rng = self._rng if self._rng is not None else default_generator()
        return rng.permutation(n)

    def __iter__(self):
        order = self._order()
        n, size = len(order), self.batch_size
        stop = n - n % size if self.drop_last else n
        tensors = getattr(self.dataset, "tensors", None)
        for start in range(0, stop, size):
            index = order[start : start + size]
            if tensors is not None:
                # One gather per tensor instead of a Python loop over samples.
                yield tuple(Tensor._wrap(t.data[index]) for t in tensors)
            else:
                yield _collate([self.dataset[int(i)] for i in index])


def _collate(samples):
    first = samples[0]
    if isinstance(first, tuple | list):
        return tuple(_collate([s[i] for s in samples]) for i in range(len(first)))
    if isinstance(first, Tensor):
        return stack([s.detach() for s in samples])
    return Tensor(np.asarray(samples))
