"""PyTorch's surface outside the ops, each name against PyTorch 2.13: devices as on a CPU-only
machine, dtype aliases and conversions, `cr.utils.data` with its samplers and DataLoader options,
the extra layers and losses (forward and gradient in float64), gradient clipping, mixed-precision
helpers, inference_mode, and one-line answers for what is not here."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn

RNG = np.random.default_rng(12)

# ---- devices ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [("cpu",), ("cpu", 0), ("cpu:0",), ("cuda",), ("cuda", 1), ("mps",)]
)
def test_device_prints_compares_and_hashes_as_torch(args):
    ours, theirs = cr.device(*args), torch.device(*args)
    assert (str(ours), repr(ours), ours.type, ours.index) == (
        str(theirs),
        repr(theirs),
        theirs.type,
        theirs.index,
    )
    assert ours == cr.device(*args) and hash(ours) == hash(cr.device(*args))
    assert cr.device(ours) == ours


def test_device_equality_distinguishes_index_as_torch():
    assert (cr.device("cpu") == cr.device("cpu:0")) == (
        torch.device("cpu") == torch.device("cpu:0")
    )
    assert (cr.device("cpu") == "cpu") == (torch.device("cpu") == "cpu")


@pytest.mark.parametrize(
    ("text", "message"),
    [("gpu", "Expected one of"), ("cpu:x", "Invalid device string"), ("cpu:-1", "Invalid")],
)
def test_bad_device_strings_are_refused_naming_the_problem(text, message):
    with pytest.raises(RuntimeError, match=message):
        cr.device(text)


FACTORIES = {
    "tensor": lambda d: cr.tensor([1.0, 2.0], device=d),
    "as_tensor": lambda d: cr.as_tensor([1.0], device=d),
    "zeros": lambda d: cr.zeros(2, 3, device=d),
    "ones": lambda d: cr.ones((2,), device=d),
    "empty": lambda d: cr.empty(2, device=d),
    "full": lambda d: cr.full((2,), 3.0, device=d),
    "arange": lambda d: cr.arange(5, device=d),
    "linspace": lambda d: cr.linspace(0, 1, 5, device=d),
    "eye": lambda d: cr.eye(3, device=d),
    "rand": lambda d: cr.rand(2, device=d),
    "randn": lambda d: cr.randn(2, device=d),
    "randint": lambda d: cr.randint(0, 5, (3,), device=d),
    "randperm": lambda d: cr.randperm(4, device=d),
    "zeros_like": lambda d: cr.zeros_like(cr.ones(2), device=d),
    "ones_like": lambda d: cr.ones_like(cr.ones(2), device=d),
    "full_like": lambda d: cr.full_like(cr.ones(2), 7.0, device=d),
    "empty_like": lambda d: cr.empty_like(cr.ones(2), device=d),
    "rand_like": lambda d: cr.rand_like(cr.ones(2), device=d),
    "randn_like": lambda d: cr.randn_like(cr.ones(2), device=d),
    "randint_like": lambda d: cr.randint_like(cr.ones(2), 4, device=d),
    "Generator": lambda d: cr.Generator(device=d),
}


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("where", ["cpu", "cpu:0", cr.device("cpu"), cr.device("cpu", 0), None])
def test_every_factory_accepts_the_cpu(factory, where):
    made = FACTORIES[factory](where)
    if isinstance(made, cr.Tensor):
        assert made.device == cr.device("cpu")


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("where", ["cuda", "cuda:0", "mps", cr.device("cuda", 1)])
def test_every_factory_refuses_a_gpu_naming_the_cpu(factory, where):
    with pytest.raises(RuntimeError, match="no GPU backend is present.*device='cpu'"):
        FACTORIES[factory](where)


def test_like_factories_keep_shape_and_dtype_as_torch():
    x64 = np.zeros((2, 3))
    for name in ("empty_like", "rand_like", "randn_like"):
        ours = getattr(cr, name)(cr.tensor(x64))
        theirs = getattr(torch, name)(torch.tensor(x64))
        assert tuple(ours.shape) == tuple(theirs.shape) and str(ours.dtype) == str(
            theirs.dtype
        ).removeprefix("torch.")
    ours = cr.randint_like(cr.zeros(2, 2, dtype=cr.long), 3, 9)
    assert ours.dtype == cr.long and ours.numpy().min() >= 3 and ours.numpy().max() < 9
    with pytest.raises(TypeError, match="float32 or float64"):
        cr.randn_like(cr.zeros(2, dtype=cr.long))


def test_tensor_device_cpu_and_to_behave_as_torch():
    data = RNG.standard_normal((2, 2)).astype(np.float32)
    ours, theirs = cr.tensor(data), torch.tensor(data)
    assert str(ours.device) == str(theirs.device) and repr(ours.device) == repr(theirs.device)
    assert (ours.is_cpu, ours.is_cuda, ours.get_device()) == (
        theirs.is_cpu,
        theirs.is_cuda,
        theirs.get_device(),
    )
    assert ours.cpu() is ours and theirs.cpu() is theirs
    same = [
        lambda t, m: t.to("cpu"),
        lambda t, m: t.to(m.device("cpu")),
        lambda t, m: t.to(device="cpu"),
        lambda t, m: t.to(m.float32),
        lambda t, m: t.to("cpu", m.float32),
    ]
    for conversion in same:
        assert (conversion(ours, cr) is ours) == (conversion(theirs, torch) is theirs) is True
    conversions = [
        lambda t, m: t.to(m.float64),
        lambda t, m: t.to("cpu", m.float64),
        lambda t, m: t.to(m.device("cpu"), dtype=m.int64),
        lambda t, m: t.to(device="cpu", dtype=m.double),
        lambda t, m: t.to(m.zeros(1, dtype=m.float64)),
        lambda t, m: t.to(m.float32, copy=True),
    ]
    for conversion in conversions:
        a, b = conversion(ours, cr), conversion(theirs, torch)
        assert a is not ours
        assert str(a.dtype) == str(b.dtype).removeprefix("torch.")
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(RuntimeError, match="no GPU backend"):
        ours.to("cuda")
    with pytest.raises(RuntimeError, match="no GPU backend"):
        ours.cuda()


def test_to_keeps_the_gradient_path_between_floats():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    (x.to("cpu", cr.float64) * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


def test_module_to_device_and_dtype_as_torch():
    ours = nn.Linear(2, 3)
    assert ours.to("cpu") is ours and ours.to(cr.device("cpu")) is ours and ours.cpu() is ours
    assert ours.to("cpu", cr.float64).weight.dtype == cr.float64
    assert ours.to(cr.zeros(1, dtype=cr.float32)).weight.dtype == cr.float32
    assert ours.to(device="cpu", dtype=cr.double).bias.dtype == cr.float64
    with pytest.raises(RuntimeError, match="no GPU backend"):
        ours.to("cuda")
    with pytest.raises(RuntimeError, match="no GPU backend"):
        ours.cuda()


def test_accelerator_queries_answer_as_torch_on_a_cpu_machine():
    pairs = [
        (cr.cuda.is_available(), torch.cuda.is_available()),
        (cr.cuda.device_count(), torch.cuda.device_count()),
        (cr.cuda.is_initialized(), torch.cuda.is_initialized()),
        (cr.cuda.manual_seed(0), torch.cuda.manual_seed(0)),
        (cr.cuda.manual_seed_all(0), torch.cuda.manual_seed_all(0)),
        (cr.cuda.empty_cache(), torch.cuda.empty_cache()),
        (cr.backends.mps.is_available(), torch.backends.mps.is_available()),
        (cr.backends.mps.is_built(), torch.backends.mps.is_built()),
        (cr.backends.cudnn.is_available(), torch.backends.cudnn.is_available()),
        (cr.accelerator.is_available(), torch.accelerator.is_available()),
        (cr.accelerator.device_count(), torch.accelerator.device_count()),
        (cr.accelerator.current_accelerator(), torch.accelerator.current_accelerator()),
        (str(cr.get_default_device()), str(torch.get_default_device())),
    ]
    for ours, theirs in pairs:
        assert ours == theirs
    with pytest.raises(RuntimeError, match="no GPU backend"):
        cr.cuda.current_device()


def test_set_default_device_takes_the_cpu_and_refuses_a_gpu():
    cr.set_default_device("cpu")
    cr.set_default_device(None)
    assert cr.zeros(1).device == cr.device("cpu")
    with pytest.raises(RuntimeError, match="no GPU backend"):
        cr.set_default_device("cuda")


def test_the_usual_device_line_takes_the_cpu_path():
    device = cr.device("cuda" if cr.cuda.is_available() else "cpu")
    model = nn.Linear(3, 1).to(device)
    x = cr.randn(4, 3, device=device)
    assert model(x.to(device)).device == device


# ---- dtypes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["float", "double", "long", "int", "bool", "float32", "float64"])
def test_dtype_aliases_name_torch_dtypes(name):
    assert str(getattr(cr, name)) == str(getattr(torch, name)).removeprefix("torch.")
    assert cr.zeros(2, dtype=getattr(cr, name)).dtype == getattr(cr, name)


@pytest.mark.parametrize("name", ["half", "float16", "bfloat16", "uint8", "int8", "int16"])
def test_dtypes_without_compute_here_are_refused_naming_the_alternative(name):
    with pytest.raises(TypeError, match=f"dtype {name.replace('half', 'float16')} is not"):
        cr.zeros(2, dtype=getattr(cr, name))
    with pytest.raises(TypeError, match="use"):
        cr.tensor([1.0]).to(getattr(cr, name))


def test_half_and_bfloat16_methods_name_float32():
    for method in ("half", "bfloat16"):
        with pytest.raises(TypeError, match="float32"):
            getattr(cr.ones(2), method)()


def test_type_and_conversion_methods_match_torch():
    data = np.array([[1.5, -2.0], [0.0, 3.25]])
    ours, theirs = cr.tensor(data, dtype=cr.float32), torch.tensor(data, dtype=torch.float32)
    assert ours.type() == theirs.type()
    for spec in ("torch.DoubleTensor", "torch.LongTensor", "torch.IntTensor", "torch.BoolTensor"):
        a, b = ours.type(spec), theirs.type(spec)
        assert a.type() == b.type()
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for method in ("float", "double", "long", "int", "bool"):
        a, b = getattr(ours, method)(), getattr(theirs, method)()
        assert a.type() == b.type()
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    a, b = ours.type(cr.float64), theirs.type(torch.float64)
    assert a.type() == b.type()
    with pytest.raises(TypeError, match="unknown type"):
        ours.type("torch.HalfTensor")


@pytest.mark.parametrize(
    ("value", "spec"), [(1.234567, ".4f"), (2.5, ""), (3.0, "8.2e"), (7, "d"), (0.5, ">10")]
)
def test_format_of_a_0d_tensor_is_its_number_as_torch(value, spec):
    assert format(cr.tensor(value), spec) == format(torch.tensor(value), spec)


def test_format_of_a_tensor_with_elements_needs_no_spec_as_torch():
    assert f"{cr.tensor([1.0, 2.0])}" == str(cr.tensor([1.0, 2.0]))
    for module in (cr, torch):
        with pytest.raises(TypeError, match="unsupported format string"):
            format(module.tensor([1.0, 2.0]), ".3f")


# ---- data ---------------------------------------------------------------------------------------


def test_utils_data_is_an_attribute_and_a_module_path():
    from chainrule.utils.data import DataLoader, Dataset
    from chainrule.utils.data.dataloader import DataLoader as FromDataloader
    from chainrule.utils.data.dataset import Subset
    from chainrule.utils.data.sampler import RandomSampler

    assert DataLoader is cr.utils.data.DataLoader is cr.data.DataLoader is FromDataloader
    assert Dataset is cr.data.Dataset and Subset is cr.data.Subset
    assert RandomSampler is cr.data.RandomSampler


def test_sequential_and_batch_samplers_match_torch():
    from torch.utils import data as td

    for n, size, drop in ((10, 3, False), (10, 3, True), (9, 3, False), (2, 5, False)):
        ours = cr.data.BatchSampler(cr.data.SequentialSampler(range(n)), size, drop)
        theirs = td.BatchSampler(td.SequentialSampler(range(n)), size, drop)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_random_samplers_draw_permutations_or_with_replacement():
    g = cr.Generator().manual_seed(3)
    order = list(cr.data.RandomSampler(range(10), generator=g))
    assert sorted(order) == list(range(10)) and order != list(range(10))
    assert len(cr.data.RandomSampler(range(10), replacement=True, num_samples=25)) == 25
    drawn = list(cr.data.RandomSampler(range(4), replacement=True, num_samples=400, generator=g))
    assert set(drawn) == {0, 1, 2, 3}
    # Without replacement and more samples than items, whole permutations follow each other.
    long = list(cr.data.RandomSampler(range(4), num_samples=10, generator=g))
    assert sorted(long[:4]) == sorted(long[4:8]) == [0, 1, 2, 3] and len(long) == 10
    subset = list(cr.data.SubsetRandomSampler([5, 7, 9], generator=g))
    assert sorted(subset) == [5, 7, 9]
    # The same seed, the same order.
    a = list(cr.data.RandomSampler(range(20), generator=cr.Generator().manual_seed(1)))
    b = list(cr.data.RandomSampler(range(20), generator=cr.Generator().manual_seed(1)))
    assert a == b


def test_weighted_random_sampler_follows_the_weights():
    weights = [0.0, 1.0, 3.0]
    drawn = np.array(
        list(cr.data.WeightedRandomSampler(weights, 4000, generator=cr.Generator().manual_seed(0)))
    )
    assert (drawn != 0).all()
    assert abs((drawn == 2).mean() - 0.75) < 0.03
    no_repeat = list(cr.data.WeightedRandomSampler([1, 1, 1, 0], 3, replacement=False))
    assert sorted(no_repeat) == [0, 1, 2]
    with pytest.raises(ValueError, match="without replacement"):
        cr.data.WeightedRandomSampler([1, 0], 2, replacement=False)
    with pytest.raises(ValueError, match="num_samples"):
        cr.data.WeightedRandomSampler([1, 1], 0)


@pytest.mark.parametrize(
    ("n", "lengths"), [(10, [0.33, 0.33, 0.34]), (11, [0.5, 0.5]), (10, [3, 7]), (7, [0.1, 0.9])]
)
def test_random_split_lengths_match_torch_and_cover_the_dataset(n, lengths):
    ours = cr.data.random_split(range(n), lengths, generator=cr.Generator().manual_seed(0))
    theirs = torch.utils.data.random_split(range(n), lengths)
    assert [len(s) for s in ours] == [len(s) for s in theirs]
    assert sorted(i for s in ours for i in s) == list(range(n))


def test_random_split_refuses_lengths_that_do_not_add_up():
    with pytest.raises(ValueError, match=r"sum to 6, but the dataset has 10"):
        cr.data.random_split(range(10), [3, 3])


def test_subset_and_concat_dataset_index_as_torch():
    base = list(range(10, 20))
    ours, theirs = cr.data.Subset(base, [4, 1, 7]), torch.utils.data.Subset(base, [4, 1, 7])
    assert [ours[i] for i in range(3)] == [theirs[i] for i in range(3)] and len(ours) == 3
    ours = cr.data.ConcatDataset([range(3), range(5, 9)])
    theirs = torch.utils.data.ConcatDataset([range(3), range(5, 9)])
    assert [ours[i] for i in range(-7, 7)] == [theirs[i] for i in range(-7, 7)]


class _Pairs(cr.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": np.full(2, float(i)), "y": i, "name": f"s{i}"}


def test_dataloader_collates_dicts_numbers_and_strings_as_torch():
    ours = list(cr.data.DataLoader(_Pairs(5), batch_size=2))
    theirs = list(torch.utils.data.DataLoader(_Pairs(5), batch_size=2))
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a["x"].numpy(), b["x"].numpy())
        assert str(a["x"].dtype) == str(b["x"].dtype).removeprefix("torch.")
        np.testing.assert_array_equal(a["y"].numpy(), b["y"].numpy())
        assert str(a["y"].dtype) == str(b["y"].dtype).removeprefix("torch.")
        assert a["name"] == b["name"]


def test_dataloader_sampler_batch_sampler_and_collate_fn_options():
    ds = cr.data.TensorDataset(cr.arange(10))
    by_sampler = [b[0].tolist() for b in cr.data.DataLoader(ds, 4, sampler=[9, 8, 7, 6, 5])]
    assert by_sampler == [[9, 8, 7, 6], [5]]
    batches = cr.data.BatchSampler(cr.data.SequentialSampler(ds), 3, drop_last=True)
    loader = cr.data.DataLoader(ds, batch_sampler=batches)
    assert [b[0].tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert len(loader) == 3
    summed = cr.data.DataLoader(ds, 5, collate_fn=lambda rows: sum(r[0].item() for r in rows))
    assert list(summed) == [10, 35]
    assert [s[0].item() for s in cr.data.DataLoader(ds, batch_size=None)][:3] == [0, 1, 2]


def test_dataloader_process_options_load_in_this_process():
    ds = cr.data.TensorDataset(cr.arange(6))
    seen = []
    loader = cr.data.DataLoader(
        ds, 2, num_workers=4, pin_memory=True, worker_init_fn=seen.append, persistent_workers=True
    )
    assert [b[0].tolist() for b in loader] == [[0, 1], [2, 3], [4, 5]] and seen == [0]


def test_dataloader_shuffle_with_a_generator_is_reproducible():
    ds = cr.data.TensorDataset(cr.arange(12))

    def epoch(seed):
        loader = cr.data.DataLoader(ds, 4, shuffle=True, generator=cr.Generator().manual_seed(seed))
        return [b[0].tolist() for b in loader]

    assert epoch(5) == epoch(5) and epoch(5) != epoch(6)
    assert sorted(sum(epoch(5), [])) == list(range(12))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sampler": [0, 1], "shuffle": True},
        {"batch_sampler": [[0]], "batch_size": 2},
        {"batch_sampler": [[0]], "drop_last": True},
        {"num_workers": -1},
    ],
)
def test_dataloader_refuses_what_torch_refuses(kwargs):
    with pytest.raises(ValueError) as ours:
        cr.data.DataLoader(list(range(4)), **kwargs)
    with pytest.raises(ValueError) as theirs:
        torch.utils.data.DataLoader(list(range(4)), **kwargs)
    assert str(ours.value).split(";")[0] == str(theirs.value).split(";")[0]


def test_iterable_dataset_is_batched_in_order():
    class Stream(cr.data.IterableDataset):
        def __iter__(self):
            return iter(range(7))

    assert [b.tolist() for b in cr.data.DataLoader(Stream(), batch_size=3)] == [
        [0, 1, 2],
        [3, 4, 5],
        [6],
    ]


# ---- layers and losses against torch, forward and gradient in float64 ----------------------------


def _compare(make_ours, make_theirs, *arrays, grad=True):
    ours_in = [cr.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    theirs_in = [torch.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    a, b = make_ours(*ours_in), make_theirs(*theirs_in)
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-14)
    if grad:
        seed = RNG.standard_normal(b.shape)
        a.backward(cr.tensor(seed))
        b.backward(torch.tensor(seed))
        for x, y in zip(ours_in, theirs_in, strict=True):
            if y.requires_grad:
                np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy(), rtol=1e-11, atol=1e-13)


X = RNG.standard_normal((4, 5)) * 3
X[0, :3] = [0.0, 25.0, -800.0]  # the kinks and far tails


@pytest.mark.parametrize(
    "pair",
    [
        (lambda: nn.Softmax(dim=1), lambda: torch.nn.Softmax(dim=1)),
        (lambda: nn.Softmax(dim=0), lambda: torch.nn.Softmax(dim=0)),
        (lambda: nn.LogSoftmax(dim=-1), lambda: torch.nn.LogSoftmax(dim=-1)),
        (lambda: nn.SiLU(), lambda: torch.nn.SiLU()),
        (lambda: nn.LeakyReLU(), lambda: torch.nn.LeakyReLU()),
        (lambda: nn.LeakyReLU(0.3, inplace=True), lambda: torch.nn.LeakyReLU(0.3)),
        (lambda: nn.ELU(), lambda: torch.nn.ELU()),
        (lambda: nn.ELU(alpha=0.5), lambda: torch.nn.ELU(alpha=0.5)),
        (lambda: nn.ReLU(inplace=True), lambda: torch.nn.ReLU()),
        (lambda: nn.Identity(54, unused=1), lambda: torch.nn.Identity(54, unused=1)),
    ],
)
def test_activation_modules_match_torch(pair):
    ours, theirs = pair[0](), pair[1]()
    assert repr(ours) == repr(theirs).replace(", inplace=True", "")
    _compare(ours, theirs, X)


def test_softmax_without_dim_chooses_as_torch_with_its_warning():
    for shape in ((5,), (2, 3), (2, 3, 4), (2, 3, 4, 5)):
        x = RNG.standard_normal(shape)
        with pytest.warns(UserWarning, match="Implicit dimension"):
            ours = nn.Softmax()(cr.tensor(x))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = torch.nn.Softmax()(torch.tensor(x))
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12)


P = 1 / (1 + np.exp(-RNG.standard_normal((3, 4))))
P[0, :2] = [0.0, 1.0]  # log clamped at -100, as torch
T = RNG.random((3, 4))
W = RNG.random((3, 4))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_matches_torch(reduction):
    inner = P.copy()
    inner[0, :2] = [0.3, 0.6]  # gradient only where torch's clamp is not at work
    _compare(
        lambda p, t: F.binary_cross_entropy(p, t, reduction=reduction),
        lambda p, t: TF.binary_cross_entropy(p, t, reduction=reduction),
        inner,
        T,
    )
    _compare(
        lambda p, t: nn.BCELoss(weight=cr.tensor(W), reduction=reduction)(p, t),
        lambda p, t: torch.nn.BCELoss(weight=torch.tensor(W), reduction=reduction)(p, t),
        inner,
        T,
    )
    _compare(
        lambda p, t: F.binary_cross_entropy(p, t, reduction=reduction),
        lambda p, t: TF.binary_cross_entropy(p, t, reduction=reduction),
        P,
        T,
        grad=False,
    )


def test_binary_cross_entropy_gradients_at_the_edges_are_torch():
    # At 0 and 1 the loss is clamped, and PyTorch's gradient floors x (1 - x) at 1e-12.
    x = np.array([0.0, 1.0, 0.0, 1.0, 1e-10, 1 - 1e-12, 0.3])
    t = np.array([0.0, 1.0, 0.5, 0.5, 0.2, 0.1, 0.7])
    ours = [cr.tensor(x, requires_grad=True), cr.tensor(t)]
    theirs = [torch.tensor(x, requires_grad=True), torch.tensor(t)]
    a = F.binary_cross_entropy(*ours, reduction="none")
    b = TF.binary_cross_entropy(*theirs, reduction="none")
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12)
    a.sum().backward()
    b.sum().backward()
    np.testing.assert_allclose(ours[0].grad.numpy(), theirs[0].grad.numpy(), rtol=1e-12)


def test_binary_cross_entropy_target_gradient_and_second_order_are_torch():
    x, t = P.copy(), T.copy()
    x[0, :2] = [0.2, 0.9]
    ours = [cr.tensor(x, requires_grad=True), cr.tensor(t, requires_grad=True)]
    theirs = [torch.tensor(x, requires_grad=True), torch.tensor(t, requires_grad=True)]
    (ga,) = cr.grad(F.binary_cross_entropy(*ours), ours[0], create_graph=True)
    (gb,) = torch.autograd.grad(TF.binary_cross_entropy(*theirs), theirs[0], create_graph=True)
    np.testing.assert_allclose(ga.detach().numpy(), gb.detach().numpy(), rtol=1e-12)
    (ga * ga).sum().backward()
    (gb * gb).sum().backward()
    # PyTorch's double backward arranges the same derivative differently: equal to 1e-10.
    for o, th in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(o.grad.numpy(), th.grad.numpy(), rtol=1e-10)


def test_binary_cross_entropy_refuses_values_outside_zero_one():
    with pytest.raises(ValueError, match="between 0 and 1.*with_logits"):
        F.binary_cross_entropy(cr.tensor([1.5, 0.2]), cr.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"shape \(2,\) but target has shape \(3,\)"):
        F.binary_cross_entropy(cr.tensor([0.5, 0.2]), cr.tensor([1.0, 0.0, 1.0]))


D = RNG.standard_normal((5, 6)) * 2
D[0, :4] = [0.0, 1.0, -1.0, 0.5]  # |d| at beta and delta exactly


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("width", [1.0, 0.5, 2.0, 0.0])
def test_smooth_l1_and_huber_losses_match_torch(reduction, width):
    target = np.zeros_like(D)
    _compare(
        lambda x, y: F.smooth_l1_loss(x, y, reduction=reduction, beta=width),
        lambda x, y: TF.smooth_l1_loss(x, y, reduction=reduction, beta=width),
        D,
        target,
    )
    _compare(
        lambda x, y: nn.SmoothL1Loss(reduction=reduction, beta=width)(x, y),
        lambda x, y: torch.nn.SmoothL1Loss(reduction=reduction, beta=width)(x, y),
        D,
        target,
    )
    if width > 0:
        _compare(
            lambda x, y: nn.HuberLoss(reduction=reduction, delta=width)(x, y),
            lambda x, y: torch.nn.HuberLoss(reduction=reduction, delta=width)(x, y),
            D,
            target,
        )


def test_nll_loss_module_matches_torch():
    logp = np.log(P / P.sum(1, keepdims=True) + 0.1)
    target = np.array([0, 3, 1])
    _compare(lambda x, t: nn.NLLLoss()(x, t), lambda x, t: torch.nn.NLLLoss()(x, t), logp, target)


# ---- containers -----------------------------------------------------------------------------------


def _containers(m):
    class Net(m.nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = m.nn.ModuleDict({"a": m.nn.Linear(2, 3), "b": m.nn.Linear(3, 1)})
            self.scales = m.nn.ParameterList([m.zeros(2), m.ones(1)])
            self.extra = m.nn.ParameterDict({"x": m.zeros(2)})

    return Net()


def test_module_dict_and_parameter_containers_register_as_torch():
    ours, theirs = _containers(cr), _containers(torch)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    heads = ours.heads
    assert list(heads) == ["a", "b"] and "a" in heads and len(heads) == 2
    assert list(heads.keys()) == ["a", "b"] and isinstance(heads["b"], nn.Linear)
    heads["c"] = nn.ReLU()
    del heads["a"]
    assert list(heads) == ["b", "c"]
    assert isinstance(ours.scales[1], nn.Parameter) and ours.scales[1].requires_grad
    ours.scales.append(cr.ones(3))
    assert len(ours.scales) == 3 and isinstance(ours.extra["x"], nn.Parameter)
    assert len(list(ours.parameters())) == 6


# ---- gradient clipping ------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    grads = [RNG.standard_normal((3, 4)), RNG.standard_normal(5)]
    ours = [cr.zeros(*g.shape, dtype=cr.float64, requires_grad=True) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for o, t, g in zip(ours, theirs, grads, strict=True):
        o.grad, t.grad = cr.tensor(g), torch.tensor(g)
    a = nn.utils.clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    b = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-13)
    for o, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(o.grad.numpy(), t.grad.numpy(), rtol=1e-13)


def test_clip_grad_value_and_nonfinite_check_match_torch():
    g = RNG.standard_normal((4, 4)) * 3
    ours = cr.zeros(4, 4, dtype=cr.float64, requires_grad=True)
    theirs = torch.zeros(4, 4, dtype=torch.float64, requires_grad=True)
    ours.grad, theirs.grad = cr.tensor(g), torch.tensor(g)
    nn.utils.clip_grad_value_([ours], 1.5)
    torch.nn.utils.clip_grad_value_([theirs], 1.5)
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())
    ours.grad = cr.tensor([np.inf, 1.0, 0, 0])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)


def test_parameters_to_vector_and_back():
    model = nn.Linear(3, 2)
    vec = nn.utils.parameters_to_vector(model.parameters())
    assert tuple(vec.shape) == (8,)
    nn.utils.vector_to_parameters(vec * 2, model.parameters())
    np.testing.assert_allclose(nn.utils.parameters_to_vector(model.parameters()).numpy(), vec * 2)


# ---- mixed precision ------------------------------------------------------------------------------


def _scaled_run(m, scaler_args, steps=6, poison_step=None):
    w = m.tensor([0.5, -1.0, 2.0], dtype=m.float64, requires_grad=True)
    opt = m.optim.SGD([w], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scaler = m.amp.GradScaler(*scaler_args)
    history = []
    for step in range(steps):
        opt.zero_grad()
        loss = (w * w * 0.5 + w * 0.25).sum()
        scaler.scale(loss).backward()
        if step == poison_step:
            w.grad[0] = float("inf")
        scaler.step(opt)
        scaler.update()
        history.append((w.detach().numpy().copy(), scaler.get_scale()))
    return history, scaler


@pytest.mark.parametrize(
    ("args", "poison"),
    [
        (("cuda",), None),
        (("cpu",), None),
        (("cpu", 1024.0, 2.0, 0.5, 2), None),
        (("cpu", 1024.0, 2.0, 0.5, 2), 3),
    ],
)
def test_grad_scaler_follows_torch_enabled_on_cpu_and_disabled_for_cuda(args, poison):
    ours, our_scaler = _scaled_run(cr, args, poison_step=poison)
    theirs, their_scaler = _scaled_run(torch, args, poison_step=poison)
    for (wa, sa), (wb, sb) in zip(ours, theirs, strict=True):
        # To rounding: the two autograds sum the two terms of the gradient in different orders.
        np.testing.assert_allclose(wa, wb, rtol=1e-14)
        assert sa == sb
    assert our_scaler.is_enabled() == their_scaler.is_enabled()
    assert our_scaler.state_dict() == their_scaler.state_dict()


def test_disabled_grad_scaler_warns_and_passes_everything_through():
    from chainrule.cuda.amp import GradScaler

    with pytest.warns(UserWarning, match="not available. Disabling"):
        scaler = GradScaler()
    assert GradScaler is cr.cuda.amp.GradScaler
    loss = cr.tensor(2.0, requires_grad=True)
    assert scaler.scale(loss) is loss and scaler.get_scale() == 1.0
    assert scaler.unscale_(None) is None and scaler.update() is None
    quiet = cr.amp.GradScaler(enabled=False)
    assert not quiet.is_enabled() and quiet.state_dict() == {}


def test_grad_scaler_refuses_a_second_unscale_as_torch():
    w = cr.tensor([1.0], requires_grad=True)
    opt = cr.optim.SGD([w], lr=0.1)
    scaler = cr.amp.GradScaler("cpu")
    scaler.scale((w * 2).sum()).backward()
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(opt)


def test_autocast_changes_nothing_and_says_so():
    x = cr.randn(3, 3)
    with pytest.warns(UserWarning, match="autocast is disabled"):
        with cr.autocast(device_type="cuda", dtype=cr.float16):
            y = x @ x
    assert y.dtype == cr.float32
    with pytest.warns(UserWarning, match="not available"):
        with cr.cuda.amp.autocast():
            pass
    with cr.amp.autocast("cpu", enabled=False):
        np.testing.assert_array_equal((x @ x).numpy(), y.numpy())

    @cr.autocast("cpu", enabled=False)
    def double(t):
        return t * 2

    np.testing.assert_array_equal(double(x).numpy(), (x * 2).numpy())


# ---- grad modes and the rest ------------------------------------------------------------------------


def test_inference_mode_records_nothing_as_context_and_decorator():
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    with cr.inference_mode():
        assert not (w * 2).requires_grad and not cr.is_grad_enabled()
    assert cr.is_grad_enabled()
    with cr.inference_mode(False):
        assert (w * 2).requires_grad

    @cr.inference_mode
    def bare(t):
        return t * 2

    @cr.inference_mode()
    def called(t):
        return t * 2

    assert not bare(w).requires_grad and not called(w).requires_grad and cr.is_grad_enabled()


def test_generator_manual_seed_returns_itself_and_reproduces():
    g = cr.Generator()
    assert g.manual_seed(7) is g and g.initial_seed() == 7
    first = cr.rand(4, generator=g).numpy()
    np.testing.assert_array_equal(
        cr.rand(4, generator=cr.Generator().manual_seed(7)).numpy(), first
    )


@pytest.mark.parametrize("name", ["compile", "jit", "complex64", "linalg"])
def test_unsupported_torch_names_get_one_line_naming_the_alternative(name):
    with pytest.raises(AttributeError) as info:
        getattr(cr, name)
    message = str(info.value)
    assert f"torch.{name}" in message and "\n" not in message and len(message) > 40


def test_parameter_dict_orders_keys_as_torch():
    # A plain dict is sorted by key; pairs and OrderedDicts keep their order.
    from collections import OrderedDict

    for kind in (dict, list, OrderedDict):
        ours, theirs = nn.ParameterDict(), torch.nn.ParameterDict()
        ours.update(kind([("b", cr.zeros(1)), ("a", cr.zeros(2))]))
        theirs.update(kind([("b", torch.zeros(1)), ("a", torch.zeros(2))]))
        assert list(ours) == list(theirs), kind


def test_log10_log2_nelement_and_dropout_inplace_as_torch():
    x = np.array([0.5, 1.0, 10.0, 1234.5])
    ours, theirs = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    for name in ("log10", "log2"):
        a, b = getattr(ours, name)(), getattr(theirs, name)()
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-15)
        a.sum().backward()
        b.sum().backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-15)
    assert ours.nelement() == theirs.nelement() == 4
    layer = nn.Dropout(0.5, inplace=True).eval()
    assert layer(ours) is ours
    assert F.dropout(ours, 0.5, training=False, inplace=True) is ours


def test_non_persistent_buffers_stay_out_of_state_dict_as_torch():
    def build(m):
        layer = m.nn.Linear(2, 2)
        layer.register_buffer("kept", m.zeros(2))
        layer.register_buffer("scratch", m.ones(3), persistent=False)
        return layer

    ours, theirs = build(cr), build(torch)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    ours.load_state_dict(build(cr).state_dict())
    assert ours.to(cr.float64).scratch.dtype == cr.float64


@pytest.mark.parametrize("name", ["repeat", "index_select", "nonzero", "unique", "scatter_"])
def test_tensor_methods_not_here_yet_get_one_line_naming_the_alternative(name):
    with pytest.raises(AttributeError) as info:
        getattr(cr.zeros(2), name)
    message = str(info.value)
    assert f"Tensor.{name}" in message and "not in chainrule yet" in message
    assert "\n" not in message
    assert not hasattr(cr.zeros(1), "no_such_method")


# ---- grad_fn.next_functions, load's PyTorch arguments -------------------------------------------


def _walk_next_functions(node, seen):
    """The graph as PyTorch programs walk it: (kind, [children]) with leaves by identity."""
    if node is None:
        return None
    if hasattr(node, "variable"):
        return ("leaf", seen[id(node.variable)])
    return ("node", [(_walk_next_functions(n, seen), i) for n, i in node.next_functions])


def test_next_functions_walk_the_graph_as_torch():
    def build(m):
        a = m.tensor([1.0, 2.0], requires_grad=True)
        b = m.tensor([3.0, 4.0], requires_grad=True)
        c = m.tensor([5.0, 6.0])  # takes no gradient: (None, 0)
        y = ((a * b + c) * a).sum()
        return y, {id(a): "a", id(b): "b"}

    (ours, ours_ids), (theirs, theirs_ids) = build(cr), build(torch)
    assert _walk_next_functions(ours.grad_fn, ours_ids) == _walk_next_functions(
        theirs.grad_fn, theirs_ids
    )
    leaf_pair = ours.grad_fn.next_functions[0][0].next_functions[1]
    assert leaf_pair[1] == 0 and leaf_pair[0].next_functions == ()
    assert isinstance(ours.grad_fn.next_functions, tuple)


def test_load_accepts_torch_load_arguments(tmp_path):
    path = tmp_path / "model.pt"
    cr.save({"w": cr.ones(2)}, path)
    for kwargs in [
        {"weights_only": True},
        {"weights_only": False, "map_location": "cpu"},
        {"map_location": cr.device("cpu")},
        {"map_location": torch.device("cpu").type},
        {"map_location": {"cuda:0": "cpu"}},
        {"map_location": lambda storage, location: storage},
    ]:
        assert cr.load(path, **kwargs)["w"].tolist() == [1.0, 1.0]
    assert cr.load(path, "cpu")["w"].tolist() == [1.0, 1.0]  # positional, as torch.load


@pytest.mark.parametrize("where", ["cuda", "cuda:1", cr.device("mps"), {"cpu": "cuda:0"}])
def test_load_onto_a_gpu_says_there_is_no_gpu_backend(tmp_path, where):
    path = tmp_path / "model.pt"
    cr.save({"w": cr.ones(2)}, path)
    with pytest.raises(RuntimeError, match=r"load\(map_location=.*no GPU backend"):
        cr.load(path, map_location=where)
    with pytest.raises(TypeError, match="weights_only must be True, False or None"):
        cr.load(path, weights_only="yes")


def _sgd_by_data(lib):
    """The pre-`no_grad` idiom of older tutorials: update weights through `.data`."""
    lib.manual_seed(0)
    w = lib.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=lib.float64, requires_grad=True)
    b = lib.tensor([0.1, -0.2], dtype=lib.float64, requires_grad=True)
    x = lib.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]], dtype=lib.float64)
    losses = []
    for _ in range(5):
        loss = ((x @ w + b) ** 2).sum()
        losses.append(loss.item())
        loss.backward()
        w.data -= 0.01 * w.grad.data
        b.data.add_(b.grad.data, alpha=-0.01)
        w.grad.data.zero_()
        b.grad.zero_()
    return losses, w.detach().numpy(), b.detach().numpy()


def test_tensor_data_is_a_tensor_sharing_storage_as_torch():
    ours, theirs = _sgd_by_data(cr), _sgd_by_data(torch)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12)
    np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-12)

    p = nn.Parameter(cr.ones(3))
    view = p.data
    assert isinstance(view, cr.Tensor) and not view.requires_grad and view.grad_fn is None
    view.mul_(2.0)
    np.testing.assert_array_equal(p.detach().numpy(), [2.0, 2.0, 2.0])


def test_tensor_data_changes_are_invisible_to_the_inplace_check_as_torch():
    for lib in (cr, torch):
        w = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        y = (w * w).sum()  # saves w
        w.data.add_(1.0)  # through .data: not a version bump in either library
        y.backward()
        np.testing.assert_array_equal(w.grad.numpy(), [4.0, 6.0])  # 2 * (the new w)


def test_assigning_tensor_data_swaps_the_storage_as_torch():
    for lib in (cr, torch):
        p = lib.nn.Parameter(lib.zeros(2, 3))
        p.data = lib.ones(4)
        assert tuple(p.shape) == (4,) and p.requires_grad
    with pytest.raises(TypeError, match="must be set to a Tensor"):
        nn.Parameter(cr.zeros(2)).data = np.ones(2)
