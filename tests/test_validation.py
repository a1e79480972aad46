"""Bad input raises ValueError naming the argument and the problem."""

from __future__ import annotations

import math

import pytest
import torch

from eventprop import LIFLayer, NeuronParams, lif_layer, validate_spike_times

F64 = torch.float64


def _good() -> torch.Tensor:
    return torch.tensor([[[1.0, math.inf], [2.0, 3.0]]], dtype=F64)


def _w() -> torch.Tensor:
    return torch.ones(3, 2, dtype=F64)


@pytest.mark.parametrize(
    "times,match",
    [
        (torch.tensor([[[1.0, math.nan], [2.0, 3.0]]], dtype=F64), "times contains NaN"),
        (torch.tensor([[[-1.0, 2.0], [2.0, 3.0]]], dtype=F64), "times contains negative"),
        (torch.tensor([[[3.0, 1.0], [2.0, 3.0]]], dtype=F64), "times must ascend"),
        (torch.tensor([[[math.inf, 1.0], [2.0, 3.0]]], dtype=F64), "times must ascend"),
        (torch.tensor([[1.0, 2.0]], dtype=F64), "times must have shape .* rank 2"),
        (torch.ones(1, 3, 1, dtype=F64), "times has 3 neurons along dim 1, expected 2"),
        (torch.ones(1, 2, 1, dtype=torch.long), "times must be a floating tensor"),
        ([[[1.0]]], "times must be a torch.Tensor"),
    ],
)
def test_bad_times(times: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lif_layer(times, _w(), tau_mem=20.0, tau_syn=5.0)  # type: ignore[arg-type]
    layer = LIFLayer(2, 3, tau_mem=20.0, tau_syn=5.0, dtype=F64)
    with pytest.raises(ValueError, match=match):
        layer(times)
    if isinstance(times, torch.Tensor) and times.dim() == 3 and times.shape[1] == 2:  # the public check says the same
        with pytest.raises(ValueError, match=match):
            validate_spike_times(times, n_neurons=2)


@pytest.mark.parametrize("name", ["tau_mem", "tau_syn", "threshold"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_bad_neuron_parameters(name: str, value: float) -> None:
    kw = {"tau_mem": 20.0, "tau_syn": 5.0, "threshold": 1.0, name: value}
    with pytest.raises(ValueError, match=f"{name} must be finite and positive"):
        lif_layer(_good(), _w(), **kw)
    with pytest.raises(ValueError, match=name):
        LIFLayer(2, 3, **kw)
    with pytest.raises(ValueError, match=name):
        NeuronParams(**kw)


def test_bad_weights_and_options() -> None:
    with pytest.raises(ValueError, match="weight has dtype torch.float32 but times has dtype torch.float64"):
        lif_layer(_good(), _w().float(), tau_mem=20.0, tau_syn=5.0)
    with pytest.raises(ValueError, match="weight contains NaN"):
        lif_layer(_good(), torch.full((3, 2), math.nan, dtype=F64), tau_mem=20.0, tau_syn=5.0)
    with pytest.raises(ValueError, match=r"recurrent_weight must have shape \(3, 3\)"):
        lif_layer(_good(), _w(), torch.zeros(2, 2, dtype=F64), tau_mem=20.0, tau_syn=5.0)
    with pytest.raises(ValueError, match=r"horizon must be positive \(or inf\), got -1.0"):
        lif_layer(_good(), _w(), tau_mem=20.0, tau_syn=5.0, horizon=-1.0)
    with pytest.raises(ValueError, match="max_spikes must be a positive int"):
        lif_layer(_good(), _w(), tau_mem=20.0, tau_syn=5.0, max_spikes=0)
    with pytest.raises(ValueError, match="in_features must be a positive int"):
        LIFLayer(0, 3, tau_mem=20.0, tau_syn=5.0)
    with pytest.raises(ValueError, match="out_features must be a positive int"):
        LIFLayer(2, 2.5, tau_mem=20.0, tau_syn=5.0)  # type: ignore[arg-type]


def test_numpy_scalars_are_real_numbers() -> None:
    import numpy as np

    p = NeuronParams(np.float32(20), np.int64(5), np.float64(1.0))
    assert (p.tau_mem, p.tau_syn, p.threshold) == (20.0, 5.0, 1.0) and type(p.tau_mem) is float
    layer = LIFLayer(np.int64(3), 2, tau_mem=np.float32(20), tau_syn=5.0, max_spikes=np.int64(4))
    assert layer.in_features == 3 and layer.max_spikes == 4
    for bad, message in [("a", "tau_mem must be a real number, got 'a'"), (True, "tau_mem must be a real number, got True")]:
        with pytest.raises(ValueError, match=message):
            NeuronParams(bad, 5.0)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"init_std": -1.0}, "init_std must be finite and lie in"),
        ({"init_mean": math.nan}, "init_mean must be finite"),
        ({"recurrent": True, "recurrent_init_std": -1.0}, "recurrent_init_std must be finite and lie in"),
        ({"dtype": torch.int64}, "dtype must be a floating dtype"),
        ({"max_spikes": 0}, "max_spikes must be a positive int"),
        ({"horizon": 0.0}, "horizon must be positive"),
    ],
)
def test_bad_layer_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LIFLayer(3, 2, tau_mem=20.0, tau_syn=5.0, **kwargs)


@pytest.mark.parametrize("recurrent", [False, True])
def test_a_layer_without_neurons_is_refused(recurrent: bool) -> None:
    rec = torch.zeros(0, 0, dtype=F64) if recurrent else None
    with pytest.raises(ValueError, match="weight must have at least one output neuron"):
        lif_layer(_good(), torch.ones(0, 2, dtype=F64), rec, tau_mem=20.0, tau_syn=5.0)
