"""The optimizer base: parameter groups, per-parameter state, zero_grad and state_dict, as in
PyTorch. Updates work on the parameters' arrays directly (an optimizer step is not recorded), and
each changed parameter's version is bumped, so a graph that saved the old value refuses it."""

import copy

import numpy as np

from ..engine.autograd import enable_grad
from ..engine.tensor import Tensor


class Optimizer:
    def __init__(self, params, defaults):
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise TypeError(
                f"{name}: params must be an iterable of tensors or of dicts (parameter "
                "groups), not a single tensor; pass [tensor] or model.parameters()"
            )
        self.defaults = defaults
        self.state = {}
        self.param_groups = []
        groups = list(params)
        if not groups:
            raise ValueError(
                f"{name} got an empty parameter list: there is nothing to optimize "
                "(did the model define its layers in __init__ after "
                "super().__init__()?)"
            )
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        name = type(self).__name__
        if not isinstance(group, dict):
            raise TypeError(f"{name}: a parameter group must be a dict, got {type(group).__name__}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise ValueError(f"{name}: a parameter group has an empty 'params' list")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: can only optimize tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(
                    f"{name}: cannot optimize a non-leaf tensor (one computed from "
                    "others); optimize the leaves it came from"
                )
            if not p.requires_grad:
                raise ValueError(
                    f"{name}: a parameter of shape {tuple(p.shape)} does not require "
                    "grad, so it would never change"
                )
            if id(p) in seen:
                raise ValueError(f"{name}: a parameter appears in more than one group")
            seen.add(id(p))
        full = dict(self.defaults)
        full.update({k: v for k, v in group.items() if k != "params"})
        self._check_hyperparameters(full)
        full["params"] = params
        self.param_groups.append(full)

    def _check_hyperparameters(self, group):
        name = type(self).__name__
        lr = group["lr"]
        if not isinstance(lr, int | float) or isinstance(lr, bool) or not lr >= 0:
            raise ValueError(f"{name}: learning rate must be a number >= 0, got lr={lr!r}")
        for key in ("weight_decay", "momentum", "eps", "alpha"):
            if key in group and not group[key] >= 0:
                raise ValueError(f"{name}: {key} must be >= 0, got {key}={group[key]!r}")
        if "betas" in group:
            for i, beta in enumerate(group["betas"]):
                if not 0.0 <= beta < 1.0:
                    raise ValueError(f"{name}: betas[{i}] must be in [0, 1), got {beta!r}")

    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad._data[...] = 0

    def step(self, closure=None):
        """One update of every parameter that has a gradient; `closure` (re-evaluating and
        returning the loss) is called first if given, as in PyTorch."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.requires_grad:
                    raise RuntimeError(
                        f"{type(self).__name__}: a gradient that is itself part of "
                        "a graph (create_graph=True) cannot be used for a step"
                    )
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {}
                self._update(p._data, p.grad._data, state, group)
                p._bump_version()
        return loss

    def _update(self, param, grad, state, group):
        raise NotImplementedError

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self):
        """{'state': {index: {name: Tensor or number}}, 'param_groups': [{hyperparameters...,
        'params': [indices]}]}: parameters are numbered in group order, as in PyTorch; tensors are
        copies."""
        index, groups = {}, []
        for group in self.param_groups:
            entry = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            entry["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                entry["params"].append(index[id(p)])
            groups.append(entry)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {
                        k: Tensor._wrap(v.copy()) if isinstance(v, np.ndarray) else v
                        for k, v in self.state[p].items()
                    }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        name = type(self).__name__
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the saved state has {len(groups)} "
                f"parameter groups, this optimizer has {len(self.param_groups)}"
            )
        params = {}
        for i, (saved, own) in enumerate(zip(groups, self.param_groups, strict=True)):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: parameter group {i} has "
                    f"{len(saved['params'])} parameters in the saved state and "
                    f"{len(own['params'])} here"
                )
            for index, p in zip(saved["params"], own["params"], strict=True):
                params[int(index)] = p
        new_state = {}
        for index, values in state_dict["state"].items():
            p = params.get(int(index))
            if p is None:
                raise ValueError(
                    f"{name}.load_state_dict: state for parameter {index}, which no group lists"
                )
            entry = {}
            for key, value in values.items():
                if isinstance(value, Tensor) or isinstance(value, np.ndarray):
                    array = np.array(
                        value._data if isinstance(value, Tensor) else value, dtype=p._data.dtype
                    )
                    if array.shape != p._data.shape:
                        raise ValueError(
                            f"{name}.load_state_dict: state {key!r} of parameter "
                            f"{index} has shape {array.shape}, the parameter has "
                            f"{tuple(p._data.shape)}"
                        )
                    entry[key] = array
                else:
                    entry[key] = value
            new_state[p] = entry
        self.state = new_state
        for saved, own in zip(groups, self.param_groups, strict=True):
            for key, value in saved.items():
                if key != "params":
                    own[key] = copy.deepcopy(value)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)
