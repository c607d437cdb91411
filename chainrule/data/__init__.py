"""`chainrule.data`: datasets and batching, as torch.utils.data.

Shuffling draws from `seed` when one is given (a generator of the loader's own, so each epoch gets
a new but reproducible order), else from the generator `cr.manual_seed` sets.
"""

import math

import numpy as np

from ..engine.tensor import Tensor
from ..ops.creation import default_generator
from ..ops.shape import stack

__all__ = [
    "BatchSampler",
    "ConcatDataset",
    "DataLoader",
    "Dataset",
    "DistributedSampler",
    "IterableDataset",
    "RandomSampler",
    "Sampler",
    "SequentialSampler",
    "Subset",
    "SubsetRandomSampler",
    "TensorDataset",
    "WeightedRandomSampler",
    "default_collate",
    "random_split",
]


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


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, indices

    def __getitem__(self, index):
        if isinstance(index, list):
            return [self.dataset[self.indices[i]] for i in index]
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


class ConcatDataset(Dataset):
    """The datasets one after another."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        if index < 0:
            if -index > len(self):
                raise ValueError("absolute value of index should not exceed dataset length")
            index += len(self)
        which = int(np.searchsorted(self.cumulative_sizes, index, side="right"))
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][index - start]


class IterableDataset(Dataset):
    """A stream of samples: subclass and define __iter__. A DataLoader batches it in order."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


def random_split(dataset, lengths, generator=None):
    """Non-overlapping random Subsets of the given lengths, or fractions of len(dataset) that sum
    to 1 (the remainder spread one by one from the first, as in PyTorch)."""
    n = len(dataset)
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        counts = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(
            f"random_split: the lengths {lengths} sum to {sum(lengths)}, but the dataset has "
            f"{n} samples"
        )
    order = (generator if generator is not None else default_generator()).permutation(n)
    splits, start = [], 0
    for length in lengths:
        splits.append(Subset(dataset, order[start : start + length].tolist()))
        start += length
    return splits


class DataLoader:
    """Batches of a dataset, as torch.utils.data.DataLoader: `shuffle`, or a `sampler` of indices,
    or a `batch_sampler` of index lists; `collate_fn` turns a list of samples into a batch
    (default: stack tensors, numbers and arrays into tensors, recursively through tuples, lists
    and dicts); `batch_size=None` gives the samples one by one.

    `num_workers` is accepted and the loading runs in this process (`worker_init_fn(0)` is
    called once per pass when num_workers > 0); `pin_memory` and the other process options change
    nothing on the CPU. Shuffling draws from `generator`, or from a generator of the loader's own
    when `seed` is given (a new but reproducible order each epoch), else from the generator
    `cr.manual_seed` sets.
    """

    def __init__(
        self,
        dataset,
        batch_size=1,
        shuffle=None,
        sampler=None,
        batch_sampler=None,
        num_workers=0,
        collate_fn=None,
        pin_memory=False,
        drop_last=False,
        timeout=0,
        worker_init_fn=None,
        multiprocessing_context=None,
        generator=None,
        *,
        prefetch_factor=None,
        persistent_workers=False,
        pin_memory_device="",
        in_order=True,
        seed=None,
    ):
        if batch_size is not None and (
            not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1
        ):
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(
                "num_workers option should be non-negative; use num_workers=0 to disable "
                "multiprocessing."
            )
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None and (
            batch_size != 1 or shuffle or sampler is not None or drop_last
        ):
            raise ValueError(
                "batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                "and drop_last"
            )
        self.dataset, self.batch_size, self.drop_last, self.seed = (
            dataset,
            batch_size,
            drop_last,
            seed,
        )
        self.shuffle = bool(shuffle)
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.worker_init_fn, self.collate_fn = worker_init_fn, collate_fn
        self.generator = generator
        if generator is None and seed is not None:
            generator = np.random.default_rng(seed)
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle or sampler is not None or batch_sampler is not None:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified shuffle, sampler and "
                    "batch_sampler options"
                )
        elif sampler is None:
            sampler = (
                RandomSampler(dataset, generator=generator)
                if self.shuffle
                else SequentialSampler(dataset)
            )
        if batch_sampler is None and batch_size is not None and not self._iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.sampler, self.batch_sampler = sampler, batch_sampler

    def __len__(self):
        if self._iterable:
            n = len(self.dataset)
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return len(self.batch_sampler if self.batch_sampler is not None else self.sampler)

    def __iter__(self):
        if self.num_workers > 0 and self.worker_init_fn is not None:
            self.worker_init_fn(0)
        if self._iterable:
            yield from self._iterate_stream()
            return
        if self.batch_sampler is None:
            for index in self.sampler:
                sample = self.dataset[index]
                yield self.collate_fn(sample) if self.collate_fn is not None else sample
            return
        tensors = getattr(self.dataset, "tensors", None) if self.collate_fn is None else None
        for index in self.batch_sampler:
            if tensors is not None:
                # One gather per tensor instead of a Python loop over samples.
                rows = np.asarray(index)
                yield tuple(Tensor._wrap(t._data[rows]) for t in tensors)
            else:
                yield (self.collate_fn or default_collate)([self.dataset[i] for i in index])

    def _iterate_stream(self):
        collate = self.collate_fn or default_collate
        if self.batch_size is None:
            for sample in self.dataset:
                yield self.collate_fn(sample) if self.collate_fn is not None else sample
            return
        batch = []
        for sample in self.dataset:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield collate(batch)
                batch = []
        if batch and not self.drop_last:
            yield collate(batch)


def default_collate(samples):
    """A batch from a list of samples: tensors, arrays and numbers are stacked into tensors,
    tuples, lists and dicts collated field by field, strings kept as a list."""
    first = samples[0]
    if isinstance(first, dict):
        return {key: default_collate([s[key] for s in samples]) for key in first}
    if isinstance(first, str | bytes):
        return list(samples)
    if isinstance(first, tuple | list):
        return tuple(default_collate([s[i] for s in samples]) for i in range(len(first)))
    if isinstance(first, Tensor):
        return stack([s.detach() for s in samples])
    return Tensor(np.asarray(samples))


from .samplers import (  # noqa: E402 - they build on nothing here, the loader builds on them
    BatchSampler,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)
