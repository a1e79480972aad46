"""Data: the built-in data sets (Yin-Yang, 8x8 digits, Randman), the encoders that turn values into spike
times, and the adapters that turn event data (tonic's event arrays) into spike times (:mod:`.events`)."""

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .digits import DIGITS_SPLITS, digits_split, digits_split_indices, load_digits
from .mnist import MNIST_FILES, mnist_split, read_idx
from .randman import RANDMAN_CONFIG, RANDMAN_SEED, RANDMAN_SPLITS, randman, randman_split
from .yinyang import YINYANG_SPLITS, yinyang, yinyang_split

# the encoders and the event-data adapters need torch: loaded on first use
_EVENTS = ("ChannelShift", "ClassBlend", "ToSpikeTimes", "channel_count", "collate", "event_channels", "events_to_spike_times")
__getattr__, __dir__ = lazy_exports(
    __name__, {"intensity_encode": ".encoding", "latency_encode": ".encoding", "on_off_encode": ".encoding", **dict.fromkeys(_EVENTS, ".events")}
)

if TYPE_CHECKING:  # pragma: no cover - for type checkers
    from .encoding import intensity_encode, latency_encode, on_off_encode
    from .events import ChannelShift, ClassBlend, ToSpikeTimes, channel_count, collate, event_channels, events_to_spike_times

__all__ = [
    "ChannelShift",
    "ClassBlend",
    "DIGITS_SPLITS",
    "MNIST_FILES",
    "RANDMAN_CONFIG",
    "RANDMAN_SEED",
    "RANDMAN_SPLITS",
    "ToSpikeTimes",
    "YINYANG_SPLITS",
    "channel_count",
    "collate",
    "digits_split",
    "digits_split_indices",
    "event_channels",
    "events_to_spike_times",
    "intensity_encode",
    "latency_encode",
    "load_digits",
    "on_off_encode",
    "mnist_split",
    "read_idx",
    "randman",
    "randman_split",
    "yinyang",
    "yinyang_split",
]
