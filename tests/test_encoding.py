"""Tests of the latency encoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eventprop.datasets.encoding import latency_encode


def test_values_and_shape() -> None:
    v = torch.tensor([[0.0, 0.5, 1.0], [0.25, 0.75, 0.1]], dtype=torch.float64)
    out = latency_encode(v, t_first=2.0, t_last=12.0)
    assert out.shape == (2, 3, 1)
    expected = torch.tensor([[2.0, 7.0, 12.0], [4.5, 9.5, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(out[..., 0], expected, rtol=0, atol=1e-12)


def test_bias_neurons() -> None:
    v = torch.tensor([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    out = latency_encode(v, t_first=0.0, t_last=10.0, bias_times=(3.0, 0.0))
    assert out.shape == (3, 4, 1)
    torch.testing.assert_close(out[:, 2, 0], torch.full((3,), 3.0))
    torch.testing.assert_close(out[:, 3, 0], torch.zeros(3))
    torch.testing.assert_close(out[:, :2, 0], 10.0 * v)
    assert torch.isfinite(out).all()


def test_equal_times_allowed() -> None:
    out = latency_encode(torch.rand(4, 2), t_first=5.0, t_last=5.0)
    assert torch.equal(out, torch.full((4, 2, 1), 5.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_dtype_follows_float_input(dtype: torch.dtype) -> None:
    out = latency_encode(torch.zeros(2, 3, dtype=dtype), t_first=0.0, t_last=1.0, bias_times=[0.5])
    assert out.dtype == dtype
    assert out.device == torch.device("cpu")


def test_integer_input_uses_default_dtype() -> None:
    out = latency_encode(torch.tensor([[0, 1]]), t_first=1.0, t_last=3.0)
    assert out.dtype == torch.get_default_dtype()
    assert out[..., 0].tolist() == [[1.0, 3.0]]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert latency_encode(torch.tensor([[1]]), t_first=0.0, t_last=1.0).dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)


def test_numpy_input() -> None:
    out = latency_encode(np.array([[0.2, 0.4]]), t_first=0.0, t_last=10.0)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    torch.testing.assert_close(out[0, :, 0], torch.tensor([2.0, 4.0], dtype=torch.float64))


def test_differentiable() -> None:
    v = torch.tensor([[0.3, 0.6]], requires_grad=True)
    latency_encode(v, t_first=1.0, t_last=5.0, bias_times=[2.0]).sum().backward()
    torch.testing.assert_close(v.grad, torch.full((1, 2), 4.0))


def test_empty_batch() -> None:
    out = latency_encode(torch.zeros(0, 4), t_first=0.0, t_last=1.0, bias_times=[0.1])
    assert out.shape == (0, 5, 1)


@pytest.mark.parametrize(
    ("values", "kwargs", "argname"),
    [
        (torch.zeros(3), {}, "values"),
        (torch.zeros(2, 3, 1), {}, "values"),
        (torch.tensor([[0.5, math.nan]]), {}, "values"),
        (torch.tensor([[-0.01, 0.5]]), {}, "values"),
        (torch.tensor([[0.5, 1.01]]), {}, "values"),
        (torch.tensor([[2]]), {}, "values"),
        (torch.zeros(1, 2), {"t_first": 5.0, "t_last": 4.0}, "t_last"),
        (torch.zeros(1, 2), {"t_first": -1.0, "t_last": 4.0}, "t_first"),
        (torch.zeros(1, 2), {"t_first": math.nan}, "t_first"),
        (torch.zeros(1, 2), {"t_last": math.inf}, "t_last"),
        (torch.zeros(1, 2), {"bias_times": [1.0, -0.5]}, r"bias_times\[1\]"),
        (torch.zeros(1, 2), {"bias_times": [math.nan]}, r"bias_times\[0\]"),
    ],
)
def test_bad_inputs(values: torch.Tensor, kwargs: dict, argname: str) -> None:
    args = {"t_first": 0.0, "t_last": 10.0, **kwargs}
    with pytest.raises(ValueError, match=argname):
        latency_encode(values, **args)


def test_deprecated_time_names_still_work_and_warn() -> None:
    v = torch.tensor([[0.0, 0.5, 1.0]])
    with pytest.warns(DeprecationWarning) as caught:
        old = latency_encode(v, t_min=2.0, t_max=12.0)
    assert [str(w.message) for w in caught] == [
        "latency_encode: t_min= is deprecated, use t_first=",
        "latency_encode: t_max= is deprecated, use t_last=",
    ]
    assert torch.equal(old, latency_encode(v, t_first=2.0, t_last=12.0))
    with pytest.raises(ValueError, match="pass t_first= only"):
        latency_encode(v, t_min=2.0, t_first=2.0, t_last=12.0)


def test_deprecation_warnings_are_attributed_to_the_caller() -> None:
    with pytest.warns(DeprecationWarning) as caught:
        latency_encode(torch.tensor([[0.5]]), t_min=0.0, t_max=1.0)
    assert {w.filename for w in caught} == {__file__}


def test_on_off_encoding_gives_every_pixel_a_voice() -> None:
    from eventprop.datasets import on_off_encode

    values = torch.tensor([[0.0, 0.25, 1.0], [0.5, 0.5, 0.0]], dtype=torch.float64)
    times = on_off_encode(values, t_first=2.0, t_last=22.0, bias_times=(0.0, 1.0))
    assert times.shape == (2, 8, 1)
    inf = math.inf
    assert times[0, :, 0].tolist() == [inf, 17.0, 2.0, 2.0, 7.0, inf, 0.0, 1.0]  # on, off, bias
    assert times[1, :, 0].tolist() == [12.0, 12.0, inf, 12.0, 12.0, 2.0, 0.0, 1.0]
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\]"):
        on_off_encode(values + 1, t_first=0.0, t_last=20.0)
