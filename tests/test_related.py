"""gradbook.related, the earlier home of the appendix's tools, still exports every name it had."""

from __future__ import annotations

import torch

import gradbook.counting
import gradbook.named_gradients
import gradbook.related
import gradbook.safe_division

EARLIER_NAMES = {
    "KERNELS": gradbook.counting,
    "count_distribution": gradbook.counting,
    "count_distribution_naive": gradbook.counting,
    "expected_counts": gradbook.counting,
    "hard_count": gradbook.counting,
    "soft_count": gradbook.counting,
    "safe_divide": gradbook.safe_division,
    "named_grad": gradbook.named_gradients,
}


def test_every_earlier_name_is_the_new_homes_object():
    assert set(gradbook.related.__all__) == set(EARLIER_NAMES)
    for name, home in EARLIER_NAMES.items():
        assert getattr(gradbook.related, name) is getattr(home, name), name


def test_the_old_import_path_still_computes():
    from gradbook.related import count_distribution, named_grad, safe_divide, soft_count

    x = torch.tensor([4.0, 5.0, 6.0], dtype=torch.float64, requires_grad=True)
    assert soft_count(x, 5.0, 1e-3).item() == 1.0
    assert count_distribution(torch.tensor([0.5, 0.5])).tolist() == [0.25, 0.5, 0.25]
    assert safe_divide(x, x - 5.0, fill=-1.0).tolist() == [-4.0, -1.0, 6.0]
    assert named_grad((2 * x).sum(), {"x": x})["x"].tolist() == [2.0, 2.0, 2.0]
