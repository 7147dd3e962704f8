"""The engine's options, shared by the commands that run it on a model's stream (``worker`` and ``replay``).

A replay into the live run must compute with the worker's settings, so both commands take them
the same way, with the same defaults; :func:`engine_config` builds the engine's settings from them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from driftline.stream.kafka.topics import LABEL_TOPIC_PREFIX, PREDICTION_TOPIC_PREFIX

from .arguments import UsageError, add_budget, at_least, duration_ms, positive_float, positive_int

__all__ = ["add_engine_options", "engine_config"]


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """The engine's settings, the topics' prefixes, contracts and profiles (as ``driftline worker`` takes them)."""
    parser.add_argument("--topic-prefix", default=PREDICTION_TOPIC_PREFIX,
        help=f"a model's topic is <prefix><model> (default {PREDICTION_TOPIC_PREFIX})")
    parser.add_argument("--max-message-bytes", type=positive_int, default=1_000_000, help="larger messages are rejected as oversized")
    parser.add_argument("--window-seconds", type=positive_int, default=None, help="event-time window length (default: the engine's, 60)")
    add_budget(parser)
    parser.add_argument(
        "--events-per-second", type=positive_float, default=None,
        help="each model's event rate the budget is spread over (default: its reference's, from the training "
        "data's timestamps); a floor: a busier live stream tightens the thresholds",
    )
    parser.add_argument("--allowed-lateness-seconds", type=at_least(0), default=None,
                        help="how far behind the latest event time an event still counts in its window (default: the engine's, 120)")
    parser.add_argument("--alert-quiet", type=duration_ms, default=None, metavar="DURATION",
                        help="an incident (one per model, alert kind and field) resolves once this much event time passed "
                        "without a signal, and signals closer than this extend it (default 15m)")
    labels = parser.add_argument_group("labels", "join late ground truth to the predictions: performance per window, concept "
                                        "drift, estimated performance (README, Labels and performance)")
    labels.add_argument("--label-horizon", type=duration_ms, default=None, metavar="DURATION",
        help="read <label-topic-prefix><model> and join each label to its prediction if it comes at most this long after "
        "it in event time (90s, 15m, 2h, 7d; a bare number is seconds); default: labels are not read")
    labels.add_argument("--label-grace", type=duration_ms, default=None, metavar="DURATION",
        help="how far out of event-time order predictions may arrive before a label that waits for its prediction is "
        "given up as unknown_prediction (default 1h)")
    labels.add_argument("--label-capacity", type=positive_int, default=None,
        help="most predictions and waiting labels each partition's join holds; size it as events/s x 2 x horizon "
        "(default 200000; beyond it the oldest are evicted and counted)")
    labels.add_argument("--challenger", nargs="?", const="default", default=None, metavar="MODULE:FACTORY",
        help="run an online River challenger beside a binary classifier and recommend it (a challenger_better alert, the "
        "challenger_windows table) when it is significantly better on the same labelled predictions; without a value the "
        "default (online logistic regression), else a factory returning a River classifier; needs --label-horizon")
    labels.add_argument("--challenger-sample", type=positive_float, default=None, metavar="SHARE",
        help="share of predictions the challenger scores and learns from, chosen by a hash of the event id (default 1)")
    labels.add_argument("--label-topic-prefix", default=LABEL_TOPIC_PREFIX,
        help=f"a model's labels are read from <prefix><model>, co-partitioned with its predictions (default {LABEL_TOPIC_PREFIX})")
    parser.add_argument("--schemas", type=Path, help="contract directory (default: the bundled contracts)")
    parser.add_argument("--profiles", type=Path, help="reference profiles directory (default: the database's reference_profiles)")


def engine_config(args: argparse.Namespace) -> Any:
    """The :class:`~driftline.stream.monitor.engine.EngineConfig` of the options of :func:`add_engine_options`.

    Raises
    ------
    UsageError
        A label option without ``--label-horizon``, or a value the engine refuses.
    """
    from driftline.stream.monitor.engine import EngineConfig

    engine: dict[str, Any] = {}
    if args.window_seconds is not None:
        engine["window_length_ms"] = args.window_seconds * 1000
    if args.allowed_lateness_seconds is not None:
        engine["allowed_lateness_ms"] = args.allowed_lateness_seconds * 1000
    engine["false_alarms_per_month"] = args.false_alarms_per_month
    if args.events_per_second is not None:
        engine["events_per_second"] = args.events_per_second
    if args.alert_quiet is not None:
        engine["alert_cooldown_ms"] = args.alert_quiet
    for option, name in (("label_horizon", "label_horizon_ms"), ("label_grace", "label_grace_ms"), ("label_capacity", "label_capacity"),
                         ("challenger", "challenger"), ("challenger_sample", "challenger_sample")):
        if getattr(args, option) is not None:
            engine[name] = getattr(args, option)
    if args.label_horizon is None and any(v is not None for v in (args.label_grace, args.label_capacity, args.challenger,
                                                                   args.challenger_sample)):
        raise UsageError("--label-grace, --label-capacity and --challenger need --label-horizon (labels are read only with a horizon)")
    try:
        return EngineConfig(**engine)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
