"""The configuration of a training run: every field declared once, with its CLI help.

:class:`TrainConfig` holds every hyperparameter (times in ms). Each field's metadata
(:func:`option`) carries its help text and how the command line parses it; the CLI
builds its flags from these declarations (:func:`cli_fields`), so a field added here is
a flag there. :func:`preset_config` merges the dataclass defaults, a task's preset, the
preset's entry for the chosen readout and explicit overrides, in that order.

Per-layer fields broadcast: one value applies to every hidden layer, or one value per
hidden layer (``hidden_init`` and ``recurrent_init`` count in ``MEAN STD`` pairs).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import DEFAULT_MAX_SPIKES
from ..validation import fraction, integer, non_negative, non_negative_int, positive, positive_int, real
from .readouts import READOUTS
from .tasks import TASKS

if TYPE_CHECKING:
    import torch

__all__ = ["TrainConfig", "HiddenLayerPlan", "preset_config", "config_from_dict", "cli_fields", "RENAMED_FIELDS", "option"]

#: Deprecated field names -> current names (accepted with a ``DeprecationWarning``).
RENAMED_FIELDS: dict[str, str] = {
    "t_min": "t_first",
    "t_max": "t_last",
    "silent_hidden": "max_silent_hidden",
    "silent_output": "max_silent_output",
}


def parse_bool(text: str) -> bool:
    """``on/off``, ``yes/no``, ``true/false``, ``1/0`` (case-insensitive)."""
    value = text.strip().lower()
    if value in ("on", "yes", "true", "1"):
        return True
    if value in ("off", "no", "false", "0"):
        return False
    raise ValueError(f"expected on/off, yes/no, true/false or 1/0, got {text!r}")


def option(
    default: Any,
    help: str,
    *,
    type: Callable[[str], Any] | None = None,
    nargs: str | int | None = None,
    metavar: str | tuple[str, ...] | None = None,
    choices: Sequence[str] | None = None,
    group: str = "hyperparameters",
    flag: bool = True,
) -> Any:
    """A dataclass field with its command-line declaration (see :func:`cli_fields`).

    Args:
        default: the field's default.
        help: help text (the CLI appends the task's preset values).
        type, nargs, metavar, choices: as in ``argparse.ArgumentParser.add_argument``.
        group: the ``--help`` section the flag appears in.
        flag: ``False`` for fields that are not a flag (set otherwise).
    """
    meta = {"help": help, "type": type, "nargs": nargs, "metavar": metavar, "choices": choices, "group": group, "flag": flag}
    return field(default=default, metadata=meta)


DTYPES = ("float32", "float64")

RUN = "run"
NET = "network"
ENC = "encoding"
LOSS = "loss and readout"
OPT = "optimisation"


#: The data-noise generator's seed is ``seed + NOISE_SEED_OFFSET``.
NOISE_SEED_OFFSET = 1_000_003
#: The largest seed: both generators' seeds stay below 2**63.
MAX_SEED = 2**63 - 1 - NOISE_SEED_OFFSET


@dataclass
class TrainConfig:
    """Every hyperparameter of a run (times in ms).

    Defaults are Yin-Yang's ``best`` preset with the authors' 200 hidden neurons and
    without clipping or the silent-label push (the preset sets 400, clips at 1.0 and
    pushes with 3.0): :func:`preset_config` is the way to get a preset.
    """

    task: str = option("yinyang", "data set", flag=False)
    preset: str = option("best", "hyperparameter preset", flag=False)
    readout: str = option(
        "first-spike",
        "output layer: first-spike (LIF neurons, first-spike cross-entropy) or voltage (leaky integrators, "
        "max-over-time voltage cross-entropy)",
        choices=tuple(READOUTS), group=NET,
    )  # fmt: skip
    epochs: int = option(100, "training epochs", type=int, group=OPT)
    batch_size: int = option(32, "minibatch size", type=int, group=OPT)
    lr: float = option(5e-3, "Adam learning rate", type=float, group=OPT)
    lr_decay: float = option(0.95, "learning-rate factor per epoch, in (0, 1]", type=float, group=OPT)
    hidden: tuple[int, ...] = option((200,), "hidden layer sizes, one per layer (e.g. 256 256)", type=int, nargs="+", metavar="N", group=NET)
    recurrent: tuple[bool, ...] = option(
        (False,),
        "recurrent hidden layers: on/off, one for all or one per layer (the flag alone: all on)",
        type=parse_bool, nargs="*", metavar="ON", group=NET,
    )  # fmt: skip
    tau_mem: float = option(20.0, "membrane time constant (ms)", type=float, group=NET)
    tau_syn: float = option(5.0, "synaptic time constant (ms)", type=float, group=NET)
    threshold: float = option(1.0, "firing threshold", type=float, group=NET)
    learn_tau: str = option(
        "off", "learn tau_mem and tau_syn of every hidden layer (exact gradients): off, layer (one pair per layer) or "
        "neuron (one pair per neuron)", choices=("off", "layer", "neuron"), group=NET,
    )  # fmt: skip
    learn_threshold: bool = option(
        False, "learn one threshold per hidden neuron (exact gradients)", type=parse_bool, metavar="ON", group=NET
    )
    delays: str = option(
        "none", "learnable delays of the hidden layers' inputs, kept >= 0: none, axon (one per input neuron) or "
        "synapse (one per synapse, recurrent ones too)", choices=("none", "axon", "synapse"), group=NET,
    )  # fmt: skip
    init_delay: float = option(
        0.0, "initial delays ~ U(0, INIT_DELAY) ms (with --delays axon or synapse)", type=float, group=NET
    )
    tangent_safeguard: bool = option(
        False, "clip the gradient at tangential spikes (|I - theta| at rounding level; counted in metrics.csv either way)",
        type=parse_bool, metavar="ON", group=OPT,
    )  # fmt: skip
    max_spikes: int = option(
        DEFAULT_MAX_SPIKES, "spike budget per neuron and sample of every LIF layer: more stops the run with an error "
        "(0 = no limit)", type=int, group=NET,
    )  # fmt: skip
    engine: str = option(
        "auto", "engine of every layer and voltage trajectory (auto: the best registered for the device and layer "
        "kind)", group=NET,
    )  # fmt: skip
    hidden_init: tuple[float, ...] = option(
        (1.5, 0.78), "hidden weights ~ N(MEAN, STD^2): one pair for all hidden layers or one per layer",
        type=float, nargs="+", metavar="MEAN STD", group=NET,
    )  # fmt: skip
    recurrent_init: tuple[float, ...] = option(
        (), "recurrent weights ~ N(MEAN, STD^2), pairs as for --hidden-init (default N(0, (threshold/sqrt(N))^2))",
        type=float, nargs="+", metavar="MEAN STD", group=NET,
    )  # fmt: skip
    output_init: tuple[float, float] = option((0.93, 0.1), "output weights ~ N(MEAN, STD^2)", type=float, nargs=2, metavar=("MEAN", "STD"), group=NET)
    t_first: float = option(0.0, "encoding: earliest input spike time (ms)", type=float, group=ENC)
    t_last: float = option(30.0, "encoding: latest input spike time (ms)", type=float, group=ENC)
    bias_times: tuple[float, ...] = option((0.0,), "bias spike times (ms)", type=float, nargs="*", metavar="T", group=ENC)
    tau0: float = option(0.5, "first-spike loss: softmax time constant (ms) = xi * tau_syn", type=float, group=LOSS)
    tau1: float = option(6.4, "first-spike loss: regulariser time constant (ms) = beta * tau_syn", type=float, group=LOSS)
    alpha: float = option(3e-3, "first-spike loss: regulariser weight", type=float, group=LOSS)
    t_silent: float = option(60.0, "first-spike loss: time given to silent output neurons (ms)", type=float, group=LOSS)
    silent_push: float = option(
        0.0,
        "first-spike readout: weight of (threshold - max V) of a silent label neuron, which the spike-time loss "
        "leaves without gradient (0 = off)",
        type=float, group=LOSS,
    )  # fmt: skip
    window: float = option(60.0, "voltage readout: window [0, T] of the max over time (ms)", type=float, group=LOSS)
    voltage_scale: float = option(1.0, "voltage readout: softmax scale on max V (1/threshold)", type=float, group=LOSS)
    bump: float = option(0.0, "weight bump when a layer is too silent on a minibatch (0 = off)", type=float, group=OPT)
    max_silent_hidden: tuple[float, ...] = option(
        (1.0,), "bumping: largest allowed silent fraction of each hidden layer (one for all or one per layer)",
        type=float, nargs="+", metavar="F", group=OPT,
    )  # fmt: skip
    max_silent_output: float = option(1.0, "bumping: largest allowed silent fraction of a spiking output layer", type=float, group=OPT)
    jitter: float = option(0.0, "training augmentation: Gaussian jitter of input spike times (ms; 0 = off)", type=float, group=OPT)
    input_dropout: float = option(
        0.0, "training augmentation: delete each input spike with this probability (0 = off)", type=float, group=OPT
    )
    ema: float = option(0.0, "evaluate an exponential moving average of the weights (decay per step; 0 = off)", type=float, group=OPT)
    grad_clip: float = option(0.0, "clip the gradient norm (0 = off)", type=float, group=OPT)
    data: str | None = option(None, "folder of the task's files (shd, ssc: tonic's layout DIR/SHD/shd_train.h5 ...; mnist: its IDX files)", group=RUN)
    train_size: int | None = option(None, "use only the first N training points (quick runs)", type=int, group=RUN)
    val_size: int | None = option(None, "use only the first N validation points (quick runs)", type=int, group=RUN)
    seed: int = option(0, "random seed", type=int, group=RUN)
    device: str = option("cpu", "cpu or cuda[:N]", group=RUN)
    dtype: str = option("float64", "float32 or float64", choices=DTYPES, group=RUN)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # lists (JSON, argparse) and scalars of tuple fields become tuples
            value = getattr(self, f.name)
            if isinstance(f.default, tuple) and not isinstance(value, tuple):
                setattr(self, f.name, tuple(value) if isinstance(value, (list, range)) else (value,))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        for name in ("epochs", "batch_size"):
            positive_int(name, getattr(self, name))
        non_negative_int("max_spikes", self.max_spikes)
        for name in ("lr", "tau_mem", "tau_syn", "threshold", "tau0", "tau1", "t_silent", "window", "voltage_scale"):
            positive(name, getattr(self, name))
        real("lr_decay", self.lr_decay, low=0.0, low_open=True, high=1.0)
        real("ema", self.ema, low=0.0, high=1.0, high_open=True)
        real("input_dropout", self.input_dropout, low=0.0, high=1.0, high_open=True)
        for name in ("alpha", "bump", "grad_clip", "silent_push", "jitter", "t_first"):
            non_negative(name, getattr(self, name))
        real("t_last", self.t_last, low=self.t_first)
        for k, t in enumerate(self.bias_times):
            non_negative(f"bias_times[{k}]", t)
        if not self.hidden:
            raise ValueError("hidden must name at least one hidden layer size")
        for k, n in enumerate(self.hidden):
            positive_int(f"hidden[{k}]", n)
        n_layers = len(self.hidden)
        _per_layer("recurrent", self.recurrent, n_layers, 1)
        for k, r in enumerate(self.recurrent):
            if not isinstance(r, bool):
                raise ValueError(f"recurrent[{k}] must be True or False, got {r!r}")
        _per_layer("hidden_init", self.hidden_init, n_layers, 2)
        if self.recurrent_init:
            _per_layer("recurrent_init", self.recurrent_init, n_layers, 2)
            if not any(self.recurrent):
                raise ValueError("recurrent_init is set but no hidden layer is recurrent (see recurrent)")
        for name in ("hidden_init", "recurrent_init", "output_init"):
            values = getattr(self, name)
            if name == "output_init" and len(values) != 2:
                raise ValueError(f"output_init must be (MEAN, STD), got {values!r}")
            for k in range(0, len(values), 2):
                real(f"{name}[{k}] (a mean)", values[k])
                non_negative(f"{name}[{k + 1}] (a std)", values[k + 1])
        _per_layer("max_silent_hidden", self.max_silent_hidden, n_layers, 1)
        for k, f in enumerate(self.max_silent_hidden):
            fraction(f"max_silent_hidden[{k}]", f)
        fraction("max_silent_output", self.max_silent_output)
        _check_choice("dtype", self.dtype, DTYPES)
        _check_choice("task", self.task, TASKS)
        if TASKS[self.task].needs_data and self.data is None:
            raise ValueError(f"data must name the folder of the {self.task} task's files")
        _check_choice("readout", self.readout, READOUTS)
        self._check_engine()
        for name in ("train_size", "val_size"):
            if getattr(self, name) is not None:
                positive_int(name, getattr(self, name))
        if not 0 <= integer("seed", self.seed) <= MAX_SEED:
            raise ValueError(f"seed must lie in 0..{MAX_SEED} (torch generators take 64-bit seeds), got {self.seed}")
        self._check_device()
        if not isinstance(self.learn_threshold, bool):
            raise ValueError(f"learn_threshold must be True or False, got {self.learn_threshold!r}")
        if self.learn_tau not in ("off", "layer", "neuron"):
            raise ValueError(f"learn_tau must be 'off', 'layer' or 'neuron', got {self.learn_tau!r}")
        if self.delays not in ("none", "axon", "synapse"):
            raise ValueError(f"delays must be 'none', 'axon' or 'synapse', got {self.delays!r}")
        non_negative("init_delay", self.init_delay)
        if self.init_delay > 0 and self.delays == "none":
            raise ValueError("init_delay is set but delays is 'none' (see delays)")
        if not isinstance(self.tangent_safeguard, bool):
            raise ValueError(f"tangent_safeguard must be True or False, got {self.tangent_safeguard!r}")

    def _check_device(self) -> None:
        import torch  # here, not at the top: the CLI's help needs the configuration before torch

        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}") from None
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} requested but CUDA is not available")

    def _check_engine(self) -> None:
        """An explicit engine must serve every kind of layer the network has (raises before any training)."""
        import torch

        from ..engines import LayerKind, check_engine_name, select_engine

        check_engine_name(self.engine)
        if self.engine == "auto":
            return
        kinds = {LayerKind.RECURRENT if r else LayerKind.FEEDFORWARD for r in self.recurrent}
        if self.readout == "first-spike":
            kinds.add(LayerKind.FEEDFORWARD)
        if self.readout == "voltage" or self.silent_push > 0:
            kinds.add(LayerKind.TRAJECTORY)
        for kind in sorted(kinds, key=lambda k: k.value):
            try:
                select_engine(self.engine, kind, torch.device(self.device), self.torch_dtype)
            except ValueError as exc:
                raise ValueError(f"engine: {exc}") from None

    @property
    def torch_dtype(self) -> torch.dtype:
        """``torch.float64`` or ``torch.float32``."""
        import torch

        return torch.float64 if self.dtype == "float64" else torch.float32

    def hidden_layers(self) -> list[HiddenLayerPlan]:
        """The hidden layers with their per-layer settings broadcast (see the module docstring)."""
        n = len(self.hidden)

        def pick(values: tuple[Any, ...], k: int, width: int = 1) -> Any:
            start = 0 if len(values) == width else k * width
            chunk = values[start : start + width]
            return chunk[0] if width == 1 else tuple(chunk)

        return [
            HiddenLayerPlan(
                size=self.hidden[k],
                recurrent=pick(self.recurrent, k),
                init=pick(self.hidden_init, k, 2),
                recurrent_init=pick(self.recurrent_init, k, 2) if self.recurrent_init else None,
                max_silent=pick(self.max_silent_hidden, k),
            )
            for k in range(n)
        ]


def _deprecated_alias(old: str, new: str) -> property:
    def get(self: TrainConfig) -> Any:
        warnings.warn(f"TrainConfig.{old} is deprecated, use TrainConfig.{new}", DeprecationWarning, stacklevel=2)
        return getattr(self, new)

    return property(get, doc=f"Deprecated name of :attr:`{new}`.")


def _accept_renamed(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def __init__(self: TrainConfig, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **_renamed_fields(kwargs, "TrainConfig", stacklevel=3))

    return __init__


# The deprecated names (RENAMED_FIELDS): accepted by the constructor and readable, with a warning.
TrainConfig.__init__ = _accept_renamed(TrainConfig.__init__)  # type: ignore[method-assign]
for _old, _new in RENAMED_FIELDS.items():
    setattr(TrainConfig, _old, _deprecated_alias(_old, _new))


@dataclass(frozen=True)
class HiddenLayerPlan:
    """One hidden layer of a run: size, recurrence, initialisation ``(mean, std)`` and bumping limit."""

    size: int
    recurrent: bool
    init: tuple[float, float]
    recurrent_init: tuple[float, float] | None
    max_silent: float


def _check_choice(name: str, value: Any, options: Sequence[str] | dict[str, Any]) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")


def _per_layer(name: str, values: tuple[Any, ...], n_layers: int, width: int) -> None:
    if len(values) not in (width, width * n_layers):
        unit = "value" if width == 1 else "MEAN STD pair"
        raise ValueError(
            f"{name} needs one {unit} for all {n_layers} hidden layers or one per layer "
            f"({width} or {width * n_layers} values), got {len(values)} values {values!r}"
        )


def _renamed_fields(values: dict[str, Any], where: str, warn: bool = True, stacklevel: int = 3) -> dict[str, Any]:
    """``values`` with deprecated field names replaced by the current ones (with a warning if ``warn``)."""
    out = dict(values)
    for old, new in RENAMED_FIELDS.items():
        if old in out:
            if new in out:
                raise ValueError(f"{where}: pass {new} only ({old} is its deprecated spelling)")
            if warn:
                warnings.warn(f"{where}: {old} is deprecated, use {new}", DeprecationWarning, stacklevel=stacklevel)
            out[new] = out.pop(old)
    return out


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a preset of ``overrides["task"]`` (default Yin-Yang) plus overrides.

    Order: dataclass defaults, the preset, the preset's entry for the chosen readout,
    then the explicit (non-``None``) overrides. Deprecated field names
    (:data:`RENAMED_FIELDS`) are accepted with a ``DeprecationWarning``.
    """
    explicit = _renamed_fields({k: v for k, v in overrides.items() if v is not None}, "preset_config")
    task = explicit.get("task", "yinyang")
    _check_choice("task", task, TASKS)
    presets = TASKS[task].presets
    _check_choice("preset", name, presets)
    readout = explicit.get("readout", TASKS[task].default_readout)
    _check_choice("readout", readout, READOUTS)
    base = {k: v for k, v in presets[name].items() if k != "readouts"}
    fields = {"readout": readout, **base, **presets[name].get("readouts", {}).get(readout, {}), **explicit}
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ValueError(f"unknown configuration fields: {', '.join(unknown)}")
    return TrainConfig(preset=name, **fields)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """The configuration saved as ``dataclasses.asdict`` (checkpoints, ``summary.json``).

    Files written before a field was renamed (:data:`RENAMED_FIELDS`) load silently: the
    user cannot edit them.
    """
    values = _renamed_fields(values, "saved configuration", warn=False)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown configuration fields: {', '.join(unknown)}")
    return TrainConfig(**values)


def cli_fields() -> list[dataclasses.Field]:
    """The fields that are command-line flags, in declaration order."""
    return [f for f in dataclasses.fields(TrainConfig) if f.metadata.get("flag")]


