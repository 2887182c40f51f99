"""Gradients keyed by name instead of by position.

:func:`torch.autograd.grad` returns its gradients as a tuple in the order of its
inputs; :func:`named_grad` returns a ``{name: gradient}`` dictionary, for a
mapping of named tensors or for a module's parameters.

The appendix of the book teaches it (it used to import it from
:mod:`gradbook.related`, which still re-exports it).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from gradbook._checks import check_tensor

__all__ = ["named_grad"]


def named_grad(
    output: Tensor,
    inputs: Mapping[str, Tensor] | nn.Module,
    **kwargs,
) -> dict[str, Tensor]:
    """Gradients of a scalar ``output`` keyed by name: ``{name: d output / d input}``.

    A thin layer over :func:`torch.autograd.grad`, which returns its gradients
    as a tuple *in the order of its inputs*; here the names travel with them.
    ``inputs`` is a mapping ``name -> tensor`` or a module (its
    ``named_parameters()`` that require grad). Other keyword arguments
    (``retain_graph``, ``create_graph``, ``allow_unused``) go to ``torch.autograd.grad``.

    Raises:
        TypeError: ``output`` is not a tensor, ``inputs`` is neither a mapping nor a
            module, or an input is not a tensor.
        ValueError: ``output`` is not a scalar, or an input does not require grad.
    """
    check_tensor("output", output, floating=False)
    if output.numel() != 1:
        raise ValueError(
            f"output: expected a scalar (one element), got shape {tuple(output.shape)}; "
            "pass grad_outputs to torch.autograd.grad for a vector-Jacobian product"
        )
    if isinstance(inputs, nn.Module):
        items = [(n, p) for n, p in inputs.named_parameters() if p.requires_grad]
    elif isinstance(inputs, Mapping):
        items = list(inputs.items())
    else:
        raise TypeError(
            "inputs: expected a mapping name -> tensor or an nn.Module, "
            f"got {type(inputs).__name__}"
        )
    for name, tensor in items:
        if not isinstance(tensor, Tensor):
            raise TypeError(
                f"inputs[{name!r}]: expected a torch.Tensor, got {type(tensor).__name__}"
            )
        if not tensor.requires_grad:
            raise ValueError(
                f"inputs[{name!r}]: expected a tensor that requires grad, got one that does not "
                "(a constant, like a data placeholder, has no gradient to ask for)"
            )
    grads = torch.autograd.grad(output, [t for _, t in items], **kwargs)
    return {name: g for (name, _), g in zip(items, grads, strict=True)}
