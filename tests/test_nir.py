"""NIR interchange (eventprop.interchange.nir): round trips, other producers' conventions, refusals."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from eventprop import LIFConv2d, LIFLayer, LIReadout, from_nir, to_nir
from helpers import F64, random_inputs, record

nir = pytest.importorskip("nir")


def _compare_spikes(got: Tensor, expected: Tensor, tol: float, kind: str) -> float:
    """Same spike counts everywhere and spike times within ``tol`` (ms); the worst difference is recorded."""
    assert got.shape == expected.shape
    finite = torch.isfinite(expected)
    assert torch.equal(torch.isfinite(got), finite)
    worst = (got[finite] - expected[finite]).abs().max().item() if bool(finite.any()) else 0.0
    record(kind, worst)
    assert worst <= tol, worst
    return worst


def _differs(a: Tensor, b: Tensor) -> bool:
    """Whether two spike tensors differ in a spike count or by more than 1e-3 ms in a spike time."""
    if a.shape != b.shape or not torch.equal(torch.isfinite(a), torch.isfinite(b)):
        return True
    finite = torch.isfinite(b)
    return bool((a[finite] - b[finite]).abs().max() > 1e-3)


def _run(model: nn.Sequential, x: Tensor) -> tuple[list[Tensor], object]:
    """The spikes of every LIF layer and the last module's output."""
    spikes = []
    for layer in model[:-1]:
        x = layer(x)
        spikes.append(x)
    out = model[-1](x)
    if isinstance(model[-1], LIFLayer):
        spikes.append(out)
    return spikes, out


def _feedforward() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        LIFLayer(5, 7, tau_mem=20.0, tau_syn=5.0, init_mean=1.2, init_std=0.6, dtype=F64),
        LIFLayer(7, 4, tau_mem=10.0, tau_syn=10.0, threshold=0.8, init_mean=0.9, init_std=0.4, horizon=35.0,
                 max_spikes=None, engine="torch", dtype=F64),  # fmt: skip
        LIReadout(4, 3, tau_mem=8.0, tau_syn=4.0, window=45.0, dtype=F64),
    )


def _recurrent() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(
        LIFLayer(5, 6, tau_mem=20.0, tau_syn=5.0, recurrent=True, init_mean=1.2, init_std=0.6, recurrent_init_mean=0.1,
                 recurrent_init_std=0.4, max_spikes=50, tangent_safeguard=True, dtype=F64),  # fmt: skip
        LIFLayer(6, 3, tau_mem=5.0, tau_syn=10.0, recurrent=True, init_mean=0.8, init_std=0.4, dtype=F64),
    )


def _settings(model: nn.Sequential) -> list[tuple]:
    """Everything but the weights that defines each layer."""
    out = []
    for layer in model:
        p = layer.params
        if isinstance(layer, LIFLayer):
            extra = (layer.recurrent, layer.horizon, layer.max_spikes, layer.engine, layer.tangent_safeguard)
        else:
            extra = (layer.window, layer.engine)
        out.append((type(layer), layer.in_features, layer.out_features, p.tau_mem, p.tau_syn, p.threshold, *extra))
    return out


# --- (a) round trips through a .nir file ------------------------------------------------


@pytest.mark.parametrize("build", [_feedforward, _recurrent], ids=["feedforward", "recurrent"])
@pytest.mark.parametrize("time_unit,spike_area", [("ms", 1.0), ("s", 1.0), ("ms", "tau_syn"), ("s", 1e-4)])
def test_round_trip(
    build: Callable[[], nn.Sequential], time_unit: str, spike_area: float | str, tmp_path: Path
) -> None:
    model = build()
    path = tmp_path / "net.nir"
    nir.write(path, to_nir(model, time_unit=time_unit, spike_area=spike_area))
    restored = from_nir(nir.read(path), time_unit=time_unit, spike_area=spike_area)
    assert _settings(restored) == _settings(model)
    exact = time_unit == "ms" and spike_area != 1e-4  # then the stored numbers are ours, unconverted
    for a, b in zip(model.parameters(), restored.parameters()):
        assert b.dtype == F64 and (torch.equal(a, b) if exact else torch.allclose(a, b, rtol=1e-15, atol=0))
    x = random_inputs(3, 5, 6, 40.0, torch.Generator().manual_seed(2))
    with torch.no_grad():
        spikes, out = _run(model, x)
        spikes2, out2 = _run(restored, x)
    tol = 0.0 if exact else 1e-12
    for s, s2 in zip(spikes, spikes2):
        assert torch.isfinite(s).sum(-1).double().mean() >= 2  # neurons spike several times
        _compare_spikes(s2, s, tol, "NIR round trip, spike time (absolute, ms)")
    if isinstance(out, Tensor):
        return
    grid = torch.linspace(0.0, model[-1].window, 97, dtype=F64)
    for v, v2 in [(out.max()[0], out2.max()[0]), (out.max()[1], out2.max()[1]), (out.at(grid), out2.at(grid))]:
        worst = (v - v2).abs().max().item()
        record("NIR round trip, readout voltage / peak time (absolute)", worst)
        assert worst <= tol


def test_graph_follows_nir_equations() -> None:
    """Nodes, edges and CubaLIF fields of an export: r = 1, w_in = tau_syn (in time_unit), the recurrent cycle."""
    model = _recurrent()
    with torch.no_grad():
        model[0].recurrent_weight.fill_diagonal_(3.0)  # ignored by the layer, so not exported
    graph = to_nir(model, time_unit="s")
    layers = {f"{k}.{part}" for k in (0, 1) for part in ("linear", "lif", "recurrent")}
    assert set(graph.nodes) == {"input", "output"} | layers
    assert ("0.lif", "0.recurrent") in graph.edges and ("0.recurrent", "0.lif") in graph.edges
    lif = graph.nodes["0.lif"]
    assert isinstance(lif, nir.CubaLIF) and isinstance(graph.nodes["0.linear"], nir.Linear)
    np.testing.assert_array_equal(lif.tau_mem, np.full(6, 0.02))
    np.testing.assert_array_equal(lif.tau_syn, np.full(6, 0.005))
    np.testing.assert_array_equal(lif.w_in, lif.tau_syn)
    np.testing.assert_array_equal(lif.r, np.ones(6))
    assert not lif.v_leak.any() and not lif.v_reset.any() and (lif.v_threshold == 1.0).all()
    np.testing.assert_array_equal(graph.nodes["0.linear"].weight, model[0].weight.detach().numpy())
    recurrent = graph.nodes["0.recurrent"].weight
    assert not np.diagonal(recurrent).any()
    masked = model[0].recurrent_weight * (1 - torch.eye(6, dtype=F64))
    np.testing.assert_array_equal(recurrent, masked.detach().numpy())
    # the graph owns its arrays: training the model afterwards does not change it
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert not np.array_equal(graph.nodes["0.linear"].weight, model[0].weight.detach().numpy())


def test_w_in_convention_matters() -> None:
    """A graph whose w_in is the current jump per unit weight (w_in = 1, Norse's way) read as Dirac spikes is
    another network: the spike area is what makes the numbers mean our model."""
    model = nn.Sequential(_feedforward()[0])
    graph = to_nir(model)
    graph.nodes["0.lif"].w_in = np.ones(7)  # what a w_in = 1 producer writes for the same network
    graph.metadata = {}  # (not ours any more: no recorded conventions)
    x = random_inputs(3, 5, 6, 40.0, torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x)
        as_dirac = from_nir(graph)(x)
        as_jumps = from_nir(graph, spike_area="tau_syn")(x)
    _compare_spikes(as_jumps, expected, 0.0, "NIR round trip, spike time (absolute, ms)")
    assert torch.isfinite(as_dirac).sum() < torch.isfinite(expected).sum()  # weight / tau_syn: fewer spikes


def test_float32_and_no_random_draws() -> None:
    """A float32 graph gives float32 layers (dtype= overrides), and importing draws no random numbers."""
    torch.manual_seed(3)
    model = nn.Sequential(LIFLayer(4, 3, tau_mem=20.0, tau_syn=5.0, dtype=torch.float32))
    graph = to_nir(model)
    state = torch.get_rng_state()
    restored = from_nir(graph)
    assert torch.equal(torch.get_rng_state(), state)
    assert restored[0].weight.dtype == torch.float32 and torch.equal(restored[0].weight, model[0].weight)
    assert from_nir(graph, dtype=F64)[0].weight.dtype == F64


# --- (b) graphs written by other producers ----------------------------------------------


def _input_times() -> Tensor:
    return random_inputs(2, 3, 5, 30.0, torch.Generator().manual_seed(4), p_missing=0.1)


def _equivalent(weight: np.ndarray, tau_mem: float, tau_syn: float, threshold: float,
                recurrent: np.ndarray | None = None) -> LIFLayer:  # fmt: skip
    """Our layer with the given (ms) parameters and weights."""
    layer = LIFLayer(weight.shape[1], weight.shape[0], tau_mem=tau_mem, tau_syn=tau_syn, threshold=threshold,
                     recurrent=recurrent is not None, dtype=F64)  # fmt: skip
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight))
        if recurrent is not None:
            layer.recurrent_weight.copy_(torch.as_tensor(recurrent))
    return layer


def test_snntorch_convention() -> None:
    """snnTorch's export of ``Synaptic(alpha, beta, threshold)`` behind ``Linear(W)`` (snntorch/export_nir.py):
    ``dt = 1e-4``; ``tau_syn = dt / (1 - alpha)``, ``tau_mem = dt / (1 - beta)``, ``r = tau_mem / dt``,
    ``w_in = tau_syn / dt``, ``v_leak = 0``, scalar (0-d) parameters for scalar alpha and beta. These are the
    Euler step ``dt`` of NIR's equations fed unit spike samples (``syn <- alpha syn + W x``,
    ``mem <- beta mem + syn``), whose continuous-time limit is our layer with ``tau`` in ms = 1e3 x the above
    and ``weight = W tau_mem / dt = W / (1 - beta)``: read with ``time_unit="s", spike_area=dt``."""
    dt, alpha, beta, threshold = 1e-4, 0.98, 0.995, 1.0
    w = np.array([[0.012, 0.009, 0.004], [0.018, -0.003, 0.01]], dtype=np.float32)  # torch's float32 Linear
    tau_syn, tau_mem = np.asarray(dt / (1 - alpha)), np.asarray(dt / (1 - beta))
    cuba = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=np.asarray(0.0),
                       v_threshold=np.asarray(threshold), w_in=tau_syn / dt)  # fmt: skip
    nodes = {"input": nir.Input(np.array([3])), "0": nir.Linear(w), "1": cuba, "output": nir.Output(np.array([2]))}
    # 0-d neuron parameters do not type-check against the Linear's (2,) output in nir, hence type_check=False
    graph = nir.NIRGraph(nodes, [("input", "0"), ("0", "1"), ("1", "output")], type_check=False)
    imported = from_nir(graph, time_unit="s", spike_area=dt, dtype=F64)
    ours = _equivalent(w.astype(np.float64) / (1 - beta), 1e3 * dt / (1 - beta), 1e3 * dt / (1 - alpha), threshold)
    x = _input_times()
    with torch.no_grad():
        expected = ours(x)
        assert torch.isfinite(expected).sum() >= 4
        _compare_spikes(imported(x), expected, 1e-9, "NIR import vs the equivalent LIFLayer, spike time (absolute, ms)")
        other_dt = from_nir(graph, time_unit="s", spike_area=1e-3, dtype=F64)(x)  # another step: 10 x the weights
    assert _differs(other_dt, expected)
    dirac = from_nir(graph, time_unit="s", dtype=F64)  # spikes read as Dirac deltas: 1 / dt = 1e4 x the weights
    torch.testing.assert_close(dirac[0].weight, ours.weight / dt, rtol=1e-12, atol=0)


def test_norse_convention() -> None:
    """Norse's export of ``LIFCell(LIFParameters(tau_syn_inv, tau_mem_inv, v_th, v_leak=0, v_reset=0))``
    (norse/torch/utils/export_nir.py, time_scaling_factor 1): ``CubaLIF(tau_mem = 1 / tau_mem_inv,
    tau_syn = 1 / tau_syn_inv, r = 1, w_in = 1)`` in seconds (the defaults are 1/100 and 1/200). The cell's
    current jumps by the input, ``i <- i + W z``, and ``dv = dt tau_mem_inv (v_leak - v + i)``: our layer with
    ``weight = W``, ``tau`` in ms = 1e3 / tau_inv. Read with ``time_unit="s", spike_area="tau_syn"``."""
    tau_mem_inv, tau_syn_inv, v_th = 100.0, 200.0, 0.7
    w = np.array([[1.4, 0.9, 0.5], [2.1, -0.4, 1.2], [0.8, 0.8, 0.8]])
    ones = np.ones(3)
    cuba = nir.CubaLIF(tau_syn=ones / tau_syn_inv, tau_mem=ones / tau_mem_inv, r=ones, v_leak=0 * ones,
                       v_threshold=v_th * ones, v_reset=0 * ones, w_in=ones)  # fmt: skip
    graph = nir.NIRGraph.from_list(nir.Linear(w), cuba)
    imported = from_nir(graph, time_unit="s", spike_area="tau_syn")
    ours = _equivalent(w, 1e3 / tau_mem_inv, 1e3 / tau_syn_inv, v_th)
    x = _input_times()
    with torch.no_grad():
        expected = ours(x)
        assert torch.isfinite(expected).sum() >= 4
        _compare_spikes(imported(x), expected, 1e-9, "NIR import vs the equivalent LIFLayer, spike time (absolute, ms)")
        # Norse's own importer reads CubaLIF with an Euler step dt = 1e-3 s (spike area dt): 0.2 x the weights
        norse_import = from_nir(graph, time_unit="s", spike_area=1e-3)(x)
    assert _differs(norse_import, expected)
    dirac = from_nir(graph, time_unit="s")  # spikes read as Dirac deltas: 1 / tau_syn = 200 x the weights
    torch.testing.assert_close(dirac[0].weight, ours.weight * tau_syn_inv, rtol=1e-12, atol=0)


def test_literal_producer_per_neuron_r_and_w_in() -> None:
    """NIR's equations with Dirac spikes, in ms, per-neuron ``r`` and ``w_in``, an ``Affine`` with zero bias and a
    recurrent loop: ``weight[n] = r[n] w_in[n] W[n] / tau_syn`` and the same rows of the recurrent weight."""
    tau_mem, tau_syn, theta = 12.0, 4.0, 1.5
    w = np.array([[3.0, 1.0, 2.0], [1.5, 2.5, 0.5], [2.0, -1.0, 3.0], [1.0, 1.0, 1.0]])
    rec = np.array([[0.0, 0.5, -0.3, 0.2], [0.4, 0.0, 0.1, -0.2], [-0.5, 0.3, 0.0, 0.6], [0.2, 0.2, 0.2, 0.0]])
    r, w_in = np.array([0.5, 2.0, 1.0, 4.0]), np.array([8.0, 1.0, 4.0, 0.5])
    full = np.full(4, 1.0)
    nodes = {
        "in": nir.Input(np.array([3])),
        "fc": nir.Affine(w, np.zeros(4)),
        "lif": nir.CubaLIF(tau_syn=tau_syn * full, tau_mem=tau_mem * full, r=r, v_leak=0 * full,
                           v_threshold=theta * full, w_in=w_in),  # fmt: skip
        "rec": nir.Linear(rec),
        "out": nir.Output(np.array([4])),
    }
    graph = nir.NIRGraph(nodes, [("in", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "out")])
    imported = from_nir(graph)
    assert imported[0].recurrent and imported[0].max_spikes == 1000 and imported[0].engine == "auto"
    scale = (r * w_in / tau_syn)[:, None]
    ours = _equivalent(scale * w, tau_mem, tau_syn, theta, scale * rec)
    x = _input_times()
    with torch.no_grad():
        expected = ours(x)
        assert torch.isfinite(expected).sum() >= 8
        _compare_spikes(imported(x), expected, 1e-9, "NIR import vs the equivalent LIFLayer, spike time (absolute, ms)")


def test_identity_input_and_foreign_readout() -> None:
    """A CubaLIF straight after the Input (identity weight) and a CubaLI readout without eventprop metadata,
    whose window must then be given."""
    ones = np.ones(3)
    cuba = nir.CubaLIF(tau_syn=5 * ones, tau_mem=10 * ones, r=ones, v_leak=0 * ones, v_threshold=ones, w_in=15 * ones)
    w = np.array([[1.0, -0.5, 0.25], [0.5, 0.5, 0.5]])
    li = nir.CubaLI(tau_syn=2 * np.ones(2), tau_mem=6 * np.ones(2), r=np.ones(2), v_leak=np.zeros(2), w_in=np.ones(2))
    graph = nir.NIRGraph.from_list(cuba, nir.Linear(w), li)
    with pytest.raises(ValueError, match=r"CubaLI node 'cubali' has no eventprop window"):
        from_nir(graph)
    imported = from_nir(graph, window=40.0)
    lif = _equivalent(3 * np.eye(3), 10.0, 5.0, 1.0)  # r w_in / tau_syn = 15 / 5
    readout = LIReadout(3, 2, tau_mem=6.0, tau_syn=2.0, window=40.0, dtype=F64)
    with torch.no_grad():
        readout.weight.copy_(torch.as_tensor(w / 2))  # r w_in / tau_syn = 1 / 2
        x = _input_times()
        hidden = lif(x)
        assert torch.isfinite(hidden).sum() >= 4
        _compare_spikes(imported[0](x), hidden, 0.0, "NIR import vs the equivalent LIFLayer, spike time (absolute, ms)")
        assert torch.equal(imported[1](hidden).max()[0], readout(hidden).max()[0])


# --- (c) what cannot be imported or exported --------------------------------------------


def _cuba(**fields: object) -> object:
    base = {"tau_syn": np.full(4, 5.0), "tau_mem": np.full(4, 10.0), "r": np.ones(4), "v_leak": np.zeros(4),
            "v_threshold": np.ones(4), "w_in": np.full(4, 5.0)}  # fmt: skip
    return nir.CubaLIF(**{**base, **fields})


def _li(**metadata: object) -> object:
    fields = {"tau_syn": np.full(4, 5.0), "tau_mem": np.full(4, 10.0), "r": np.ones(4), "v_leak": np.zeros(4)}
    return nir.CubaLI(**fields, metadata={"eventprop": metadata})


def _chain(*middle: tuple[str, object], loop: tuple[str, np.ndarray] | None = None) -> object:
    """``Input(3) -> middle... -> Output(4)``; ``loop = (neuron key, weight)``: a recurrent Linear ``"rec"``."""
    nodes = {"input": nir.Input(np.array([3])), **dict(middle), "output": nir.Output(np.array([4]))}
    keys = list(nodes)
    edges = list(zip(keys, keys[1:]))
    if loop is not None:
        nodes["rec"] = nir.Linear(loop[1])
        edges += [(loop[0], "rec"), ("rec", loop[0])]
    return nir.NIRGraph(nodes, edges, type_check=False)


W34, W44 = np.ones((4, 3)), np.ones((4, 4))
FC, LIF_OK = ("fc", nir.Linear(W34)), ("lif", _cuba())
NO_DIAGONAL = 0.1 * (W44 - np.eye(4))
NO_SYNAPSE = "no synaptic current"
REFUSALS = [  # (id, nodes between Input and Output, recurrent loop, type and key of the node named, phrase)
    ("affine bias", [("fc", nir.Affine(W34, np.full(4, 0.1))), LIF_OK], None, "Affine", "fc", "nonzero bias"),
    ("v_leak", [FC, ("lif", _cuba(v_leak=np.full(4, 0.1)))], None, "CubaLIF", "lif", "v_leak must be 0"),
    ("v_reset", [FC, ("lif", _cuba(v_reset=np.full(4, -0.5)))], None, "CubaLIF", "lif", "v_reset must be 0"),
    ("tau_mem per neuron", [FC, ("lif", _cuba(tau_mem=np.array([10.0, 20, 10, 10])))], None, "CubaLIF", "lif",
     "tau_mem has 2 different values; per-neuron values are not supported yet"),
    ("threshold per neuron", [FC, ("lif", _cuba(v_threshold=np.array([1.0, 1, 1, 2])))], None, "CubaLIF", "lif",
     "v_threshold has 2 different values"),
    ("negative threshold", [FC, ("lif", _cuba(v_threshold=np.full(4, -1.0)))], None, "CubaLIF", "lif",
     "threshold must be finite and positive"),
    ("self-connections", [FC, LIF_OK], ("lif", 0.1 * W44), "Linear", "rec", "nonzero diagonal"),
    ("recurrent readout", [FC, ("li", _li(window=10.0))], ("li", NO_DIAGONAL), "CubaLI", "li", "recurrent loop"),
    ("readout not last", [FC, ("li", _li(window=10.0)), ("fc2", nir.Linear(W44)), LIF_OK], None, "Linear", "fc2",
     "follows the CubaLI readout"),
    ("readout without window", [FC, ("li", _li())], None, "CubaLI", "li", "no eventprop window"),
    ("LI", [FC, ("li", nir.LI(tau=np.full(4, 5.0), r=np.ones(4), v_leak=np.zeros(4)))], None, "LI", "li", NO_SYNAPSE),
    ("LIF", [FC, ("lif", nir.LIF(tau=np.full(4, 5.0), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4)))],
     None, "LIF", "lif", NO_SYNAPSE),
    ("IF", [FC, ("if", nir.IF(r=np.ones(4), v_threshold=np.ones(4)))], None, "IF", "if", "not supported"),
    ("Delay", [FC, ("delay", nir.Delay(np.ones(4))), LIF_OK], None, "Delay", "delay", "not supported"),
    ("Threshold", [FC, LIF_OK, ("thr", nir.Threshold(np.ones(4)))], None, "Threshold", "thr", "not supported"),
    ("Conv2d", [("conv", nir.Conv2d(None, np.ones((4, 1, 3, 3)), 1, 0, 1, 1, np.zeros(4))), LIF_OK], None,
     "Conv2d", "conv", "not supported"),
    # snnTorch writes a recurrent layer as a subgraph
    ("subgraph", [FC, ("rsyn", nir.NIRGraph.from_list(_cuba()))], None, "NIRGraph", "rsyn", "not supported"),
    ("two linears", [FC, ("fc2", nir.Linear(W44)), LIF_OK], None, "Linear", "fc2", "follows Linear node 'fc'"),
    ("linear last", [("fc0", nir.Linear(W34)), LIF_OK, ("fc", nir.Linear(W44))], None, "Linear", "fc",
     "feeds the Output"),
]


@pytest.mark.parametrize("middle,loop,kind,key,phrase", [pytest.param(*case[1:], id=case[0]) for case in REFUSALS])
def test_refusals_name_the_node(
    middle: list[tuple[str, object]], loop: tuple[str, np.ndarray] | None, kind: str, key: str, phrase: str
) -> None:
    with pytest.raises(ValueError) as info:
        from_nir(_chain(*middle, loop=loop))
    message = str(info.value)
    assert f"{kind} node '{key}'" in message and phrase in message, message


def test_refusals_of_the_graph_and_the_arguments(tmp_path: Path) -> None:
    graph = _chain(FC, LIF_OK, loop=("lif", NO_DIAGONAL))
    assert from_nir(graph)[0].recurrent  # the base graph of the refusals is fine
    graph.nodes["extra"] = nir.Linear(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"\['extra'\] are not on the chain"):
        from_nir(graph)
    graph = _chain(FC, LIF_OK)
    graph.nodes["fc_b"] = nir.Linear(W34)
    graph.edges += [("input", "fc_b"), ("fc_b", "lif")]
    with pytest.raises(ValueError, match=r"Input node 'input' feeds 2 nodes \['fc', 'fc_b'\]"):
        from_nir(graph)
    path = tmp_path / "s.nir"
    nir.write(path, to_nir(LIFLayer(3, 2, tau_mem=20.0, tau_syn=5.0), time_unit="s"))
    with pytest.raises(ValueError, match=r"written by eventprop with time_unit='s'.*pass time_unit='s'"):
        from_nir(path)
    with pytest.raises(ValueError, match=r"written by eventprop with spike_area=1.0"):
        from_nir(path, time_unit="s", spike_area="tau_syn")
    assert from_nir(str(path), time_unit="s")[0].params.tau_mem == 20.0
    with pytest.raises(ValueError, match="time_unit must be one of"):
        from_nir(path, time_unit="min")
    for bad in ("dirac", 0.0, -1e-4, math.inf):
        with pytest.raises(ValueError, match="spike_area"):
            from_nir(path, time_unit="s", spike_area=bad)
    with pytest.raises(ValueError, match="window"):
        from_nir(path, time_unit="s", window=-1.0)
    with pytest.raises(ValueError, match="nir.NIRGraph or the path"):
        from_nir(42)


def _lif(n_in: int, n_out: int) -> LIFLayer:
    return LIFLayer(n_in, n_out, tau_mem=10.0, tau_syn=5.0)


@pytest.mark.parametrize(
    "model,phrase",
    [
        (nn.Linear(3, 2), "module 0 is a Linear"),
        (nn.Sequential(), "empty"),
        (nn.Sequential(LIReadout(3, 2, tau_mem=10.0, tau_syn=5.0, window=10.0), _lif(2, 2)), "0 is an LIReadout but not"),
        (nn.Sequential(_lif(3, 4), _lif(5, 2)), "module 1 has 5 inputs, module 0 has 4 outputs"),
    ],
)
def test_to_nir_refusals(model: nn.Module, phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase):
        to_nir(model)


def test_to_nir_argument_checks() -> None:
    layer = LIFLayer(3, 2, tau_mem=20.0, tau_syn=5.0)
    with pytest.raises(ValueError, match="time_unit"):
        to_nir(layer, time_unit="us")
    with pytest.raises(ValueError, match="spike_area"):
        to_nir(layer, spike_area="dt")


# --- (d) without the nir package ----------------------------------------------------------


def test_missing_nir_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nir", None)  # makes `import nir` fail
    for call in (lambda: to_nir(LIFLayer(3, 2, tau_mem=20.0, tau_syn=5.0)), lambda: from_nir("net.nir")):
        with pytest.raises(ModuleNotFoundError, match=r"pip install eventprop\[nir\]"):
            call()


def test_import_eventprop_without_nir() -> None:
    code = (
        "import sys; sys.modules['nir'] = None\n"
        "import eventprop\n"
        "from eventprop import *\n"
        "assert callable(to_nir) and callable(from_nir) and 'to_nir' in eventprop.__all__\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)


def test_export_of_masks_axonal_delays_and_learned_constants() -> None:
    mask = torch.tensor([[True, False, True], [False, True, True]])
    layer = LIFLayer(3, 2, tau_mem=20.0, tau_syn=5.0, mask=mask, delays="axon", init_delay=4.0, learn_tau="neuron",
                     learn_threshold=True)  # fmt: skip
    with torch.no_grad():
        layer.log_threshold.copy_(torch.log(torch.tensor([0.5, 2.0])))
        layer.log_tau_mem.copy_(torch.log(torch.tensor([10.0, 30.0])))
    graph = to_nir(layer)
    assert ("input", "0.delay") in graph.edges and ("0.delay", "0.linear") in graph.edges
    np.testing.assert_allclose(graph.nodes["0.delay"].delay, layer.delay.detach().numpy())
    np.testing.assert_array_equal(graph.nodes["0.linear"].weight, (layer.weight * mask).detach().numpy())
    np.testing.assert_allclose(graph.nodes["0.lif"].v_threshold, [0.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(graph.nodes["0.lif"].tau_mem, [10.0, 30.0], rtol=1e-6)
    with pytest.raises(ValueError, match="tau_mem has 2 different values"):
        from_nir(graph)  # per-neuron time constants are not read back yet: a one-line refusal


def test_axonal_delays_round_trip() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        LIFLayer(4, 5, tau_mem=20.0, tau_syn=5.0, delays="axon", init_delay=6.0, init_mean=1.5, init_std=0.5, dtype=F64),
        LIFLayer(5, 2, tau_mem=20.0, tau_syn=5.0, init_mean=1.0, init_std=0.4, dtype=F64),
    )
    back = from_nir(to_nir(model, time_unit="s"), time_unit="s")
    assert back[0].delays == "axon" and back[1].delays is None
    torch.testing.assert_close(back[0].delay, model[0].delay.detach())
    times = random_inputs(3, 4, 2, 20.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(back(times), model(times).detach(), rtol=0, atol=1e-12)


def test_export_refuses_what_nir_cannot_express() -> None:
    with pytest.raises(ValueError, match="delay per synapse, which NIR cannot express"):
        to_nir(LIFLayer(3, 2, tau_mem=20.0, tau_syn=5.0, delays="synapse"))
    with pytest.raises(ValueError, match="module 0 is a LIFConv2d"):
        to_nir(torch.nn.Sequential(LIFConv2d(1, 1, 2, input_size=(3, 3), tau_mem=20.0, tau_syn=5.0)))
