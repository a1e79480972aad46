"""Connection-list layers: per-synapse delays, per-neuron time constants, masks and convolutions (forward vs reference, gradients vs finite differences)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from eventprop import Connectivity, LIFConv2d, LIFLayer, lif_connections, lif_layer
from helpers import CONNECTION_ENGINES, F64, assert_gradients_match, random_inputs, record, spike_weighted_loss, to_lists
from reference import simulate

TOL = 1e-6
KIND = "connection-list layers vs finite differences (relative)"


def _compare(out: torch.Tensor, expected) -> None:
    worst = 0.0
    for b, (got_b, exp_b) in enumerate(zip(to_lists(out), expected)):
        for n, (g, e) in enumerate(zip(got_b, exp_b)):
            assert len(g) == len(e), f"sample {b} neuron {n}: {g} vs {e}"
            worst = max([worst, *(abs(x - y) for x, y in zip(g, e))])
    record("forward spike time vs reference (absolute, ms)", worst)
    assert worst <= 1e-9, worst


def test_an_engine_serves_connection_lists() -> None:
    assert "numba" in CONNECTION_ENGINES


@pytest.mark.parametrize("engine", CONNECTION_ENGINES)
@pytest.mark.parametrize("tau_mem,tau_syn", [(20.0, 5.0), (5.0, 10.0), (10.0, 10.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_synapse_delays_match_the_reference(tau_mem: float, tau_syn: float, seed: int, engine: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    times = random_inputs(3, 6, 3, 25.0, gen)
    weight = (torch.rand(5, 6, generator=gen, dtype=F64) * 2.0 - 0.3) * 1.3
    delay = torch.rand(5, 6, generator=gen, dtype=F64) * 10.0
    threshold = torch.tensor([0.7, 1.0, 1.4, 0.9, 1.1], dtype=F64)
    out = lif_layer(times, weight, tau_mem=tau_mem, tau_syn=tau_syn, threshold=threshold, delay=delay, engine=engine)
    expected = [
        simulate(s, weight.tolist(), tau_mem=tau_mem, tau_syn=tau_syn, threshold=threshold.tolist(), delays=delay.tolist())
        for s in to_lists(times)
    ]
    assert sum(len(n) for s in expected for n in s) > 10
    _compare(out, expected)


def test_per_neuron_time_constants_and_a_mask_match_the_reference_neuron_by_neuron() -> None:
    gen = torch.Generator().manual_seed(2)
    times = random_inputs(3, 6, 3, 25.0, gen)
    weight = (torch.rand(4, 6, generator=gen, dtype=F64) * 2.0 - 0.2) * 1.3
    mask = torch.rand(4, 6, generator=gen) < 0.7
    tau_mem = torch.tensor([20.0, 5.0, 10.0, 8.0], dtype=F64)
    tau_syn = torch.tensor([5.0, 10.0, 10.0, 4.0], dtype=F64)
    out = lif_layer(times, weight, tau_mem=tau_mem, tau_syn=tau_syn, mask=mask)
    total = 0
    for j in range(4):
        w = (weight[j] * mask[j]).tolist()
        expected = [simulate(s, [w], tau_mem=tau_mem[j].item(), tau_syn=tau_syn[j].item()) for s in to_lists(times)]
        total += sum(len(e[0]) for e in expected)
        _compare(out[:, j : j + 1], expected)
    assert total > 10


@pytest.mark.parametrize("n_in", [7, 40])  # arrivals per neuron below and above connections.SMALL (insertion / mergesort)
def test_zero_delays_and_dense_connectivity_equal_the_dense_engine(n_in: int) -> None:
    from eventprop.engines.numba_cpu.connections import SMALL

    gen = torch.Generator().manual_seed(3)
    times = random_inputs(4, n_in, 3, 25.0, gen)
    assert (torch.isfinite(times).sum(dim=(1, 2)).max() > SMALL) == (n_in > SMALL)
    weight = (torch.rand(5, n_in, generator=gen, dtype=F64) * 2.0 - 0.3) * 1.5 * 7 / n_in
    dense = lif_layer(times, weight, tau_mem=20.0, tau_syn=5.0)
    listed = lif_layer(times, weight, tau_mem=20.0, tau_syn=5.0, delay=torch.zeros(5, n_in, dtype=F64))
    assert torch.isfinite(dense).sum() > 10
    torch.testing.assert_close(listed, dense, rtol=0, atol=1e-12)
    grads = []  # and the same gradients
    for delay in (None, torch.zeros(5, n_in, dtype=F64)):
        x, w = times.clone().requires_grad_(), weight.clone().requires_grad_()
        spike_weighted_loss(lif_layer(x, w, tau_mem=20.0, tau_syn=5.0, delay=delay)).backward()
        grads.append((x.grad, w.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10 * a.abs().max().item())


@pytest.mark.parametrize("engine", CONNECTION_ENGINES)
@pytest.mark.parametrize("tau", [(20.0, 5.0), (7.0, 7.0), (4.0, 9.0)])
def test_functional_gradients(tau: tuple[float, float], engine: str) -> None:
    # every tensor argument: input times, weights, per-synapse delays, per-neuron taus and thresholds
    gen = torch.Generator().manual_seed(4)
    times = random_inputs(2, 5, 3, 20.0, gen).requires_grad_()
    scale = {20.0: 1.3, 7.0: 0.55, 4.0: 0.5}[tau[0]]
    weight = ((torch.rand(4, 5, generator=gen, dtype=F64) * 2.0) * scale).requires_grad_()
    delay = (torch.rand(4, 5, generator=gen, dtype=F64) * 6).requires_grad_()
    tau_mem = (torch.tensor([1.0, 0.8, 1.3, 1.1], dtype=F64) * tau[0]).requires_grad_()
    tau_syn = (torch.tensor([1.0, 1.2, 0.9, 1.0], dtype=F64) * tau[1]).requires_grad_()
    threshold = torch.tensor([0.8, 1.0, 1.2, 0.9], dtype=F64, requires_grad=True)
    tensors = [times, weight, delay, tau_mem, tau_syn, threshold]

    def run() -> torch.Tensor:
        return lif_layer(times, weight, tau_mem=tau_mem, tau_syn=tau_syn, threshold=threshold, delay=delay, engine=engine)

    def loss() -> torch.Tensor:
        return spike_weighted_loss(run())

    out = run()
    assert torch.isfinite(out).sum(-1).max() >= 2
    assert_gradients_match(loss, tensors, ["times", "weight", "delay", "tau_mem", "tau_syn", "threshold"], KIND, TOL, richardson=True, per_name=True)


def test_deep_network_with_every_option() -> None:
    torch.manual_seed(5)
    gen = torch.Generator().manual_seed(5)
    mask = torch.rand(6, 7, generator=gen) < 0.75
    model = nn.Sequential(
        LIFLayer(5, 7, tau_mem=20.0, tau_syn=5.0, init_mean=1.5, init_std=0.7, delays="synapse", init_delay=5.0,
                 learn_tau="neuron", learn_threshold=True, dtype=F64),
        LIFLayer(7, 6, tau_mem=15.0, tau_syn=6.0, init_mean=1.4, init_std=0.6, mask=mask, learn_tau=True,
                 delays="axon", init_delay=3.0, dtype=F64),
        LIFLayer(6, 3, tau_mem=20.0, tau_syn=5.0, init_mean=1.3, init_std=0.5, delays="synapse", init_delay=2.0,
                 learn_tau="neuron", dtype=F64),
    )  # fmt: skip
    times = random_inputs(2, 5, 3, 20.0, gen)
    out = model(times)
    assert torch.isfinite(out).sum() >= 4 and torch.isfinite(model[0](times)).sum(-1).max() >= 2
    params = dict(model.named_parameters())
    assert_gradients_match(lambda: spike_weighted_loss(model(times)), list(params.values()), list(params), KIND, TOL, richardson=True, per_name=True)
    masked = params["1.weight"]
    grad = torch.autograd.grad(spike_weighted_loss(model(times)), [masked])[0]
    assert bool((grad[~mask] == 0).all()) and bool((grad[mask] != 0).any())


# --- convolution ----------------------------------------------------------------------------
@pytest.mark.parametrize("stride,padding", [(1, 0), ((1, 2), 1), (2, (0, 1))])
def test_conv_synapses_are_torch_conv2d(stride, padding) -> None:
    conn, index, (ho, wo) = Connectivity.conv2d(2, 3, (3, 2), (5, 6), stride, padding)
    kernel = torch.randn(3, 2, 3, 2, dtype=F64)
    dense = torch.zeros(conn.out_features, conn.in_features, dtype=F64)
    dense[conn.target, conn.source] = kernel.reshape(-1)[index]
    image = torch.randn(2, 5, 6, dtype=F64)
    expected = torch.nn.functional.conv2d(image[None], kernel, stride=stride, padding=padding)[0]
    assert expected.shape == (3, ho, wo)
    torch.testing.assert_close((dense @ image.reshape(-1)).reshape(3, ho, wo), expected)


def test_conv_layer_forward_and_gradients() -> None:
    torch.manual_seed(6)
    conv = LIFConv2d(2, 3, 3, input_size=(5, 6), padding=1, stride=(1, 2), tau_mem=20.0, tau_syn=5.0, init_mean=0.8,
                     init_std=0.5, learn_tau=True, learn_threshold=True, dtype=F64)  # fmt: skip
    gen = torch.Generator().manual_seed(6)
    times = random_inputs(2, 2 * 5 * 6, 2, 20.0, gen)
    out = conv(times)
    assert out.shape[:2] == (2, 3 * 5 * 3) and conv.output_size == (5, 3)
    dense = torch.zeros(conv.out_features, conv.in_features, dtype=F64)
    dense[conv.connectivity.target, conv.source] = conv.kernel.detach().reshape(-1)[conv.kernel_index]
    expected = [simulate(s, dense.tolist(), tau_mem=20.0, tau_syn=5.0) for s in to_lists(times)]
    assert sum(len(n) for s in expected for n in s) > 20
    _compare(out, expected)
    params = dict(conv.named_parameters())
    assert set(params) == {"kernel", "log_tau_mem", "log_tau_syn", "log_threshold"}
    assert_gradients_match(lambda: spike_weighted_loss(conv(times)), list(params.values()), list(params), KIND, TOL, richardson=True, per_name=True)


def test_conv_state_dict_holds_parameters_only() -> None:
    conv = LIFConv2d(1, 2, [2, 2], input_size=(3, 3), stride=[1, 1], tau_mem=20.0, tau_syn=5.0)  # lists as pairs too
    assert conv.kernel_size == (2, 2) and conv.stride == (1, 1) and conv.padding == (0, 0)
    assert set(conv.state_dict()) == {"kernel"}
    assert "output_size=(2, 2)" in repr(conv)


# --- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"kernel_size": 6}, r"kernel_size\[0\] = 6 is larger than the padded input"),
        ({"kernel_size": (2, 9), "padding": 1}, r"kernel_size\[1\] = 9 is larger than the padded input \(5 \+ 2 x 1 = 7\)"),
        ({"kernel_size": 0}, "kernel_size must be"),
        ({"stride": 0}, "stride must be"),
        ({"padding": -1}, "padding must be"),
        ({"input_size": (5,)}, "input_size must be a pair"),
        ({"in_channels": 0}, "in_channels must be"),
        ({"learn_tau": "neuron"}, "learn_tau must be True or False"),
    ],
)
def test_bad_conv_arguments(kwargs: dict, match: str) -> None:
    args = {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "input_size": (5, 5), "tau_mem": 20.0, "tau_syn": 5.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        LIFConv2d(**args)


def test_conv_input_of_the_wrong_size() -> None:
    conv = LIFConv2d(2, 3, 3, input_size=(5, 5), tau_mem=20.0, tau_syn=5.0)
    with pytest.raises(ValueError, match="50"):
        conv(torch.zeros(1, 49, 1))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mask": torch.ones(2, 4, dtype=torch.bool)}, r"mask must be a bool tensor of shape \(out_features, in_features\) = \(2, 3\)"),
        ({"mask": torch.ones(2, 3)}, "mask must be a bool tensor"),
        ({"delay": torch.tensor([[0.0, 1.0, -2.0], [0.0, 0.0, 0.0]])}, "delay must be finite and >= 0"),
        ({"delay": torch.zeros(3, 2)}, r"delay must be a floating-point tensor of shape \(in_features,\) = \(3,\) or"),
        ({"tau_mem": torch.tensor([20.0, 1e-320])}, "tau_mem must be finite and positive|outside"),
        ({"recurrent_delay": torch.zeros(2, 2)}, "recurrent_delay is given but recurrent_weight is not"),
        ({"recurrent_delay": torch.full((2, 2), -1.0), "recurrent_weight": torch.zeros(2, 2)}, "recurrent_delay must be finite and >= 0"),
        ({"recurrent_delay": torch.zeros(3, 3), "recurrent_weight": torch.zeros(2, 2)}, r"recurrent_delay must be a floating-point tensor of shape \(2, 2\)"),
        ({"delay": torch.zeros(2, 3), "engine": "torch"}, "a layer with a delay per synapse runs as a synapse list"),
    ],
)
def test_bad_connection_arguments(kwargs: dict, match: str) -> None:
    args = {"tau_mem": 20.0, "tau_syn": 5.0, **kwargs}
    rec = args.pop("recurrent_weight", None)
    with pytest.raises(ValueError, match=match):
        lif_layer(torch.zeros(1, 3, 1), torch.ones(2, 3), rec, **args)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"weight": torch.ones(4)}, r"weight must have shape \(n_synapses,\) = \(3,\)"),
        ({"delay": torch.zeros(2)}, r"delay must be a floating-point tensor of shape \(n_synapses,\) = \(3,\)"),
        ({"delay": torch.tensor([0.0, math.nan, 1.0])}, "delay must be finite and >= 0"),
        ({"connectivity": "dense"}, "connectivity must be a Connectivity"),
        ({"threshold": torch.tensor([1.0, 1.0, 1.0])}, r"threshold must be a number or a tensor of shape \(\) or \(out_features,\) = \(2,\)"),
        ({"engine": "torch"}, "engine='torch' cannot serve a connections layer"),
    ],
)
def test_bad_lif_connections_arguments(kwargs: dict, match: str) -> None:
    conn = Connectivity.from_mask(torch.tensor([[True, False], [True, True]]))
    args = {"weight": torch.ones(3), "connectivity": conn, "tau_mem": 20.0, "tau_syn": 5.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        lif_connections(torch.zeros(1, 2, 1), **args)


def test_bad_masks_for_connectivity() -> None:
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        Connectivity.from_mask(torch.ones(2, 2))
    with pytest.raises(ValueError, match="at least one row"):
        Connectivity.from_mask(torch.ones(0, 2, dtype=torch.bool))


# --- recurrent layers as synapse lists ---------------------------------------------------------
def _recurrent_case(seed: int, n: int = 5, n_in: int = 6):
    gen = torch.Generator().manual_seed(seed)
    times = random_inputs(3, n_in, 3, 25.0, gen)
    weight = (torch.rand(n, n_in, generator=gen, dtype=F64) * 2.0 - 0.2) * 1.2
    rec = (torch.rand(n, n, generator=gen, dtype=F64) - 0.5) * 1.0
    rec.fill_diagonal_(0.0)
    return gen, times, weight, rec


@pytest.mark.parametrize("engine", CONNECTION_ENGINES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recurrent_delays_and_per_neuron_constants_match_the_reference(seed: int, engine: str) -> None:
    gen, times, weight, rec = _recurrent_case(seed)
    rec_delay = torch.rand(5, 5, generator=gen, dtype=F64) * 6.0
    rec_delay[0, 1] = 0.0  # zero delays are allowed
    delay = torch.rand(5, 6, generator=gen, dtype=F64) * 4.0
    tau_mem = torch.tensor([20.0, 10.0, 8.0, 12.0, 5.0], dtype=F64)
    tau_syn = torch.tensor([5.0, 10.0, 4.0, 6.0, 8.0], dtype=F64)
    threshold = torch.tensor([0.8, 1.0, 1.3, 0.9, 1.1], dtype=F64)
    out = lif_layer(times, weight, rec, tau_mem=tau_mem, tau_syn=tau_syn, threshold=threshold, delay=delay,
                    recurrent_delay=rec_delay, engine=engine)  # fmt: skip
    expected = [
        simulate(s, weight.tolist(), w_rec=rec.tolist(), tau_mem=tau_mem.tolist(), tau_syn=tau_syn.tolist(),
                 threshold=threshold.tolist(), delays=delay.tolist(), rec_delays=rec_delay.tolist())
        for s in to_lists(times)
    ]  # fmt: skip
    assert sum(len(n) for s in expected for n in s) > 15
    _compare(out, expected)


def test_zero_recurrent_delays_equal_the_dense_recurrent_engine() -> None:
    _, times, weight, rec = _recurrent_case(3)
    dense = lif_layer(times, weight, rec, tau_mem=20.0, tau_syn=5.0)
    listed = lif_layer(times, weight, rec, tau_mem=20.0, tau_syn=5.0, recurrent_delay=torch.zeros(5, 5, dtype=F64))
    assert torch.isfinite(dense).sum() > 10
    torch.testing.assert_close(listed, dense, rtol=0, atol=1e-12)


@pytest.mark.parametrize("engine", CONNECTION_ENGINES)
@pytest.mark.parametrize("tau", [(20.0, 5.0), (7.0, 7.0)])
def test_recurrent_functional_gradients(tau: tuple[float, float], engine: str) -> None:
    gen, times, weight, rec = _recurrent_case(4, n=4, n_in=5)
    scale = 1.0 if tau[0] == 20.0 else 0.5
    weight, rec = weight * scale, rec * scale
    rec_delay = torch.rand(4, 4, generator=gen, dtype=F64) * 5.0
    delay = torch.rand(4, 5, generator=gen, dtype=F64) * 4.0
    tau_mem = torch.tensor([1.0, 0.75, 1.2, 0.9], dtype=F64) * tau[0]
    tau_syn = torch.tensor([1.0, 0.8, 1.1, 1.3], dtype=F64) * tau[1]
    threshold = torch.tensor([0.8, 1.0, 1.2, 0.9], dtype=F64)
    tensors = [x.requires_grad_() for x in (times, weight, rec, delay, rec_delay, tau_mem, tau_syn, threshold)]
    names = ["times", "weight", "recurrent_weight", "delay", "recurrent_delay", "tau_mem", "tau_syn", "threshold"]

    def run() -> torch.Tensor:
        return lif_layer(times, weight, rec, tau_mem=tau_mem, tau_syn=tau_syn, threshold=threshold, delay=delay,
                         recurrent_delay=rec_delay, engine=engine)  # fmt: skip

    out = run()
    assert torch.isfinite(out).sum() >= 8 and torch.isfinite(out).sum(-1).max() >= 2
    assert_gradients_match(lambda: spike_weighted_loss(run()), tensors, names, KIND, TOL, richardson=True, per_name=True)


def test_recurrent_layer_with_learned_delays_and_constants() -> None:
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(7)
    model = nn.Sequential(
        LIFLayer(4, 5, tau_mem=20.0, tau_syn=5.0, recurrent=True, recurrent_init_std=0.4, init_mean=1.5, init_std=0.6,
                 delays="synapse", init_delay=4.0, learn_tau="neuron", learn_threshold=True, dtype=F64),
        LIFLayer(5, 2, tau_mem=20.0, tau_syn=5.0, init_mean=1.2, init_std=0.4, dtype=F64),
    )  # fmt: skip
    assert set(dict(model[0].named_parameters())) == {
        "weight", "recurrent_weight", "delay", "recurrent_delay", "log_tau_mem", "log_tau_syn", "log_threshold"
    }
    times = random_inputs(2, 4, 3, 20.0, gen)
    assert torch.isfinite(model(times)).sum() >= 3
    params = dict(model.named_parameters())
    assert_gradients_match(lambda: spike_weighted_loss(model(times)), list(params.values()), list(params), KIND, TOL, richardson=True, per_name=True)


def test_no_engine_for_connection_lists_off_the_cpu_is_a_clear_error() -> None:
    from eventprop.engines import LayerKind, select_engine

    assert select_engine("auto", LayerKind.CONNECTIONS, torch.device("cpu"), F64).name == "numba"
    with pytest.raises(ValueError, match="no engine can serve a connections layer on meta"):
        select_engine("auto", LayerKind.CONNECTIONS, torch.device("meta"), F64)


@pytest.mark.parametrize(
    "source,pointer,n_in,match",
    [
        (torch.tensor([7]), torch.tensor([0, 1]), 3, r"source must name input neurons in \[0, 3\)"),
        (torch.tensor([0, 1]), torch.tensor([0, 5]), 3, "pointer must start at 0 and end at the number of synapses"),
        (torch.tensor([0, 1]), torch.tensor([0, 2, 1, 2]), 3, "pointer must be non-decreasing"),
        (torch.tensor([0.0]), torch.tensor([0, 1]), 3, "source must be a 1-D int64 tensor"),
        ([0], torch.tensor([0, 1]), 3, "source must be a 1-D int64 tensor, got a list"),
        (torch.tensor([0]), torch.tensor([0]), 3, "at least one neuron"),
        (torch.tensor([0]), torch.tensor([0, 1]), 0, "in_features must be"),
    ],
)
def test_a_hand_built_connectivity_is_checked(source, pointer, n_in, match) -> None:
    with pytest.raises(ValueError, match=match):
        Connectivity(source, pointer, n_in)
