"""Module.register_forward_pre_hook / register_forward_hook against PyTorch's: every scenario runs
in both libraries, and what the hooks saw, the order they ran in and what the call returned must
agree."""

import warnings

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule import explain

LIBRARIES = {"chainrule": cr, "torch": torch}


def _scaled(lib):
    """A module whose forward takes a keyword argument: forward(x, scale=1.0) = scale * x."""

    class Scaled(lib.nn.Module):
        def forward(self, x, scale=1.0):
            return x * scale

    return Scaled()


def _failing(lib):
    class Failing(lib.nn.Module):
        def forward(self, x):
            raise ValueError("forward failed")

    return Failing()


def _values(x):
    return np.asarray(x.detach().numpy(), dtype=np.float64).tolist()


def _both(scenario):
    """scenario(lib) in each library; returns {name: result}."""
    return {name: scenario(lib) for name, lib in LIBRARIES.items()}


def _agree(scenario):
    results = _both(scenario)
    assert results["chainrule"] == results["torch"], results
    return results["chainrule"]


def test_pre_hook_sees_the_positional_args_as_a_tuple_and_a_single_return_replaces_them():
    def scenario(lib):
        module, seen = _scaled(lib), []

        def double(mod, args):
            seen.append((mod is module, type(args).__name__, len(args)))
            return args[0] * 2  # not a tuple: becomes the only argument

        module.register_forward_pre_hook(double)
        return seen, _values(module(lib.tensor([1.0, 2.0]), scale=3.0))

    assert _agree(scenario) == ([(True, "tuple", 1)], [6.0, 12.0])


def test_forward_hook_sees_args_and_output_and_its_return_replaces_the_output():
    def scenario(lib):
        module, seen = _scaled(lib), []

        def shift(mod, args, output):
            seen.append((_values(args[0]), _values(output)))
            return output + 1

        module.register_forward_hook(shift)
        return seen, _values(module(lib.tensor([1.0, 2.0]), scale=2.0))

    assert _agree(scenario) == ([([1.0, 2.0], [2.0, 4.0])], [3.0, 5.0])


def test_hooks_returning_none_change_nothing():
    def scenario(lib):
        module = _scaled(lib)
        module.register_forward_pre_hook(lambda mod, args: None)
        module.register_forward_hook(lambda mod, args, output: None)
        return _values(module(lib.tensor([1.0, -1.0]), scale=5.0))

    assert _agree(scenario) == [5.0, -5.0]


def test_hooks_run_in_registration_order_and_prepend_puts_one_first():
    def scenario(lib):
        module, order = _scaled(lib), []
        for name in ("pre a", "pre b"):
            module.register_forward_pre_hook(lambda m, a, name=name: order.append(name))
        module.register_forward_pre_hook(lambda m, a: order.append("pre first"), prepend=True)
        for name in ("post a", "post b"):
            module.register_forward_hook(lambda m, a, o, name=name: order.append(name))
        module.register_forward_hook(lambda m, a, o: order.append("post first"), prepend=True)
        module(lib.tensor([1.0]))
        return order

    assert _agree(scenario) == ["pre first", "pre a", "pre b", "post first", "post a", "post b"]


def test_with_kwargs_hooks_see_and_replace_the_keyword_arguments():
    def scenario(lib):
        module, seen = _scaled(lib), []

        def triple(mod, args, kwargs):
            seen.append(dict(kwargs))
            return args, {**kwargs, "scale": 3.0}

        def note(mod, args, kwargs, output):
            seen.append(dict(kwargs))

        module.register_forward_pre_hook(triple, with_kwargs=True)
        module.register_forward_hook(note, with_kwargs=True)
        return seen, _values(module(lib.tensor([2.0]), scale=10.0))

    assert _agree(scenario) == ([{"scale": 10.0}, {"scale": 3.0}], [6.0])


def test_a_with_kwargs_pre_hook_returning_something_else_is_a_runtime_error_naming_it():
    def scenario(lib):
        module = _scaled(lib)
        module.register_forward_pre_hook(lambda m, a, k: "oops", with_kwargs=True)
        with pytest.raises(RuntimeError) as caught:
            module(lib.tensor([1.0]))
        message = str(caught.value)
        return "None or a tuple of (new_args, new_kwargs)" in message and "oops" in message

    assert _agree(scenario) is True


def test_handle_remove_unregisters_the_hook_and_a_second_remove_is_harmless():
    def scenario(lib):
        module, calls = _scaled(lib), []
        handle = module.register_forward_hook(lambda m, a, o: calls.append("hook"))
        module(lib.tensor([1.0]))
        handle.remove()
        handle.remove()
        module(lib.tensor([1.0]))
        with module.register_forward_pre_hook(lambda m, a: calls.append("pre")):
            module(lib.tensor([1.0]))
        module(lib.tensor([1.0]))
        return calls

    assert _agree(scenario) == ["hook", "pre"]


def test_a_function_registered_twice_runs_twice_and_each_handle_removes_one():
    def scenario(lib):
        module, calls = _scaled(lib), []

        def hook(m, a, o):
            calls.append(len(calls))

        first = module.register_forward_hook(hook)
        module.register_forward_hook(hook)
        module(lib.tensor([1.0]))
        first.remove()
        module(lib.tensor([1.0]))
        return calls

    assert _agree(scenario) == [0, 1, 2]


def test_a_hook_may_remove_itself_while_it_runs():
    def scenario(lib):
        module, calls = _scaled(lib), []
        handles = []

        def once(m, a, o):
            calls.append("once")
            handles[0].remove()

        handles.append(module.register_forward_hook(once))
        module.register_forward_hook(lambda m, a, o: calls.append("after"))
        module(lib.tensor([1.0]))
        module(lib.tensor([1.0]))
        return calls

    assert _agree(scenario) == ["once", "after", "after"]


def test_always_call_hooks_run_when_forward_raises_and_others_do_not():
    def scenario(lib):
        module, calls = _failing(lib), []
        module.register_forward_hook(lambda m, a, o: calls.append("plain"))
        module.register_forward_hook(lambda m, a, o: calls.append(("always", o)), always_call=True)
        with pytest.raises(ValueError, match="forward failed"):
            module(lib.tensor([1.0]))
        return calls

    assert _agree(scenario) == [("always", None)]


def test_an_always_call_hook_that_raises_after_forward_raised_is_a_warning_not_the_error():
    def scenario(lib):
        module = _failing(lib)

        def broken(m, a, o):
            raise KeyError("hook bug")

        module.register_forward_hook(broken, always_call=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ValueError, match="forward failed"):
                module(lib.tensor([1.0]))
        return [("hook bug" in str(w.message), w.category.__name__) for w in caught]

    assert _agree(scenario) == [(True, "UserWarning")]


def test_sequential_calls_each_child_through_its_hooks():
    def scenario(lib):
        lib.manual_seed(0)
        model = lib.nn.Sequential(lib.nn.Linear(2, 3), lib.nn.ReLU(), lib.nn.Linear(3, 1))
        names = []
        for name, module in model.named_modules():
            module.register_forward_hook(lambda m, a, o, name=name: names.append(name or "model"))
        model(lib.ones(4, 2))
        return names

    assert _agree(scenario) == ["0", "1", "2", "model"]


def test_a_hook_that_is_not_callable_is_refused_by_name():
    module = _scaled(cr)
    with pytest.raises(TypeError, match="forward hook must be callable, got int"):
        module.register_forward_hook(3)
    with pytest.raises(TypeError, match="forward hook must be callable, got str"):
        module.register_forward_pre_hook("f")


def test_track_modules_leaves_forward_alone_and_removes_its_hooks_on_exit():
    model = cr.nn.Sequential(cr.nn.Linear(2, 3), cr.nn.Tanh(), cr.nn.Linear(3, 1))
    user_calls = []
    model[0].register_forward_hook(lambda m, a, o: user_calls.append("user"))
    modules = list(model.modules())
    with explain.track_modules(model) as record:
        assert all("forward" not in vars(m) for m in modules)
        model(cr.ones(1, 2, requires_grad=True))
    assert all("forward" not in vars(m) for m in modules)
    assert [len(m._forward_pre_hooks) for m in modules] == [0, 0, 0, 0]
    assert [len(m._forward_hooks) for m in modules] == [0, 1, 0, 0]
    assert user_calls == ["user"]
    assert [span[0] for span in record.spans] == ["0", "1", "2", "model"]


def test_track_modules_removes_its_hooks_when_the_forward_raises():
    model = cr.nn.Sequential(cr.nn.Linear(2, 3), _failing(cr))
    with pytest.raises(ValueError, match="forward failed"):
        with explain.track_modules(model) as record:
            model(cr.ones(1, 2))
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    # The modules that were entered are still noted, the failing one and its parent included.
    assert [span[:2] for span in record.spans] == [
        ("0", "Linear"),
        ("1", "Failing"),
        ("model", "Sequential"),
    ]
