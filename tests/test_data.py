"""cr.data: TensorDataset and DataLoader batching, drop_last, and shuffling that is a permutation
drawn from `seed` or from the generator cr.manual_seed sets."""

import numpy as np
import pytest

import chainrule as cr
from chainrule.data import DataLoader, Dataset, TensorDataset


def _dataset(n=10):
    x = cr.tensor(np.arange(n * 2, dtype=np.float64).reshape(n, 2))
    y = cr.tensor(np.arange(n))
    return TensorDataset(x, y)


def test_tensor_dataset_rows_and_length():
    ds = _dataset()
    assert len(ds) == 10
    x, y = ds[3]
    np.testing.assert_array_equal(x.numpy(), [6.0, 7.0])
    assert y.item() == 3


def test_tensor_dataset_refuses_different_lengths():
    with pytest.raises(ValueError, match=r"same first dimension.*\(3, 2\), \(4,\)"):
        TensorDataset(cr.zeros(3, 2), cr.zeros(4))


def test_batches_in_order_with_a_short_last_batch():
    loader = DataLoader(_dataset(), batch_size=4)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert [len(y) for _, y in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in batches]), np.arange(10))
    np.testing.assert_array_equal(batches[1][0].numpy(), np.arange(8, 16).reshape(4, 2))


def test_drop_last_drops_the_short_batch():
    loader = DataLoader(_dataset(), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [len(y) for _, y in loader] == [4, 4]


def _orders(loader, epochs=2):
    return [np.concatenate([y.numpy() for _, y in loader]) for _ in range(epochs)]


def test_shuffle_with_seed_is_a_reproducible_permutation_that_changes_per_epoch():
    first = _orders(DataLoader(_dataset(50), batch_size=8, shuffle=True, seed=3))
    second = _orders(DataLoader(_dataset(50), batch_size=8, shuffle=True, seed=3))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.sort(a), np.arange(50))
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], np.arange(50))
    other = _orders(DataLoader(_dataset(50), batch_size=8, shuffle=True, seed=4))
    assert not np.array_equal(first[0], other[0])


def test_shuffle_without_seed_follows_manual_seed():
    cr.manual_seed(11)
    a = _orders(DataLoader(_dataset(50), batch_size=8, shuffle=True))
    cr.manual_seed(11)
    b = _orders(DataLoader(_dataset(50), batch_size=8, shuffle=True))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    cr.manual_seed(12)
    c = _orders(DataLoader(_dataset(50), batch_size=8, shuffle=True))
    assert not np.array_equal(a[0], c[0])


def test_custom_dataset_samples_are_stacked():
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return cr.tensor([float(i), float(i * i)]), i % 2

    (x, y), *_ = DataLoader(Squares(), batch_size=3)
    np.testing.assert_array_equal(x.numpy(), [[0, 0], [1, 1], [2, 4]])
    np.testing.assert_array_equal(y.numpy(), [0, 1, 0])


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        DataLoader(_dataset(), batch_size=0)
