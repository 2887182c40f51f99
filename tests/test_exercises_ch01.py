"""Chapter 1 checks fail on the known mistakes (the forum's among them), pass on the reference."""

from __future__ import annotations

import pytest
import torch

from gradbook.exercises import ExerciseFailed
from gradbook.exercises.ch01 import (
    check_dot,
    check_is_orthogonal,
    check_orthogonal_part,
    check_project_batch,
)

# Exercise 1.1 -----------------------------------------------------------------


def test_dot_reference_passes(capsys):
    assert check_dot(lambda a, b: torch.dot(a.flatten(), b.flatten()))
    assert "PASSED Exercise 1.1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda a, b: a @ b, "batched matrix product"),  # the forum's `orth_vector @ img_grad`
        (lambda a, b: a.flatten() @ b, "batched matrix product"),
        (lambda a, b: torch.dot(a, b), "torch.dot only accepts 1-D"),
        (lambda a, b: a * b, "multiply, then sum"),
        (lambda a, b: (a * b).sum(dim=0), "one number"),
        (lambda a, b: [1.0], "torch.Tensor"),
    ],
)
def test_dot_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_dot(wrong)


# Exercise 1.2 -----------------------------------------------------------------


def reference_orthogonal(g, x):
    nn = (x * x).sum()
    if nn == 0:
        return g.clone()
    return g - (g * x).sum() / nn * x


def test_orthogonal_reference_passes():
    assert check_orthogonal_part(reference_orthogonal)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # the textbook formula without a guard: 0/0 for a zero image
        (lambda g, x: g - (g * x).sum() / (x * x).sum() * x, "NaN"),
        # the forum's mix-up: working against the gradient instead of the image
        (lambda g, x: g - (g * g).sum() / (g * g).sum() * g, "orthogonal to the gradient"),
        # norm instead of squared norm
        (lambda g, x: g - (g * x).sum() / x.norm() * x, r"\|\|x\|\|\^2"),
        # projection (parallel part) instead of the orthogonal part
        (lambda g, x: (g * x).sum() / (x * x).sum() * x, "not the orthogonal component"),
        # zero image handled but returning zeros
        (
            lambda g, x: torch.zeros_like(g) if x.abs().sum() == 0 else reference_orthogonal(g, x),
            "unchanged",
        ),
        (lambda g, x: reference_orthogonal(g, x).flatten(), "shape"),
    ],
)
def test_orthogonal_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_orthogonal_part(wrong)


# Exercise 1.3 -----------------------------------------------------------------


def reference_is_orth(u, v):
    c = (u * v).sum() / (u.norm() * v.norm())
    return bool(c.abs() < 1e-5)


def test_is_orthogonal_reference_passes():
    assert check_is_orthogonal(reference_is_orth)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda u, v: bool((u * v).sum() == 0), "exact `== 0`"),  # the forum's assertion
        (lambda u, v: bool((u * v).sum().abs() < 1e-3), "scale-free"),
        (lambda u, v: bool((u * v).sum().abs() < 1e3), "Normalise first"),
        (lambda u, v: True, "Normalise first"),
    ],
)
def test_is_orthogonal_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_is_orthogonal(wrong)


# Exercise 1.4 -----------------------------------------------------------------


def reference_batch(g, x):
    dot = (g * x).sum(dim=(1, 2, 3), keepdim=True)
    nn = (x * x).sum(dim=(1, 2, 3), keepdim=True)
    return g - dot / torch.where(nn > 0, nn, 1.0) * x


def test_batch_reference_passes():
    assert check_project_batch(reference_batch)


def per_channel(g, x):
    dot = (g * x).sum(dim=(2, 3), keepdim=True)
    nn = (x * x).sum(dim=(2, 3), keepdim=True)
    return g - dot / torch.where(nn > 0, nn, 1.0) * x


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda g, x: reference_orthogonal(g, x), "whole batch as one vector"),
        (per_channel, "each channel separately"),
        (
            lambda g, x: (
                g - (g * x).sum((1, 2, 3), keepdim=True) / (x * x).sum((1, 2, 3), keepdim=True) * x
            ),
            "NaN",
        ),
        (lambda g, x: reference_batch(g, x)[0], "shape"),
    ],
)
def test_batch_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_project_batch(wrong)
