"""A stored run as typed records: what pages, reports and checks read instead of the bundle's JSON
dicts (docs/interfaces.md, "Run bundle").

- `RunRecord.config`: the run's `TrainConfig`, as it trained (config.json in today's format);
- `Provenance`: what config.json records beside it (run id, when, on which weights, dataset
  and shapes, package versions);
- `SplitMetrics`: one split of metrics.json (docs/method.md §4).

metrics.json may be hand-edited or older than a metric: a value of the wrong type reads as
absent (None), never as a wrong number, and metrics a method adds stay in ``extra``."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from actscale.engine.config import TrainConfig
from actscale.engine.tasks.examples import SPLITS

Interval = tuple[float, float]


def _number(value: Any) -> float | None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value  # not NaN
    return float(value) if ok else None


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else None


def _interval(value: Any) -> Interval | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = _number(value[0]), _number(value[1])
        if low is not None and high is not None:
            return (low, high)
    return None


@dataclass(frozen=True)
class SplitMetrics:
    """One split's metrics (docs/method.md §4); None where metrics.json does not hold the value."""

    n_prompts: int | None = None
    acc_base: float | None = None
    acc_base_ci95: Interval | None = None
    flip_acc_pos: float | None = None
    flip_acc_pos_ci95: Interval | None = None
    flip_acc_neg: float | None = None
    flip_acc_neg_ci95: Interval | None = None
    logit_diff_base: float | None = None
    logit_diff_pos: float | None = None
    logit_diff_neg: float | None = None
    faithfulness_kl: float | None = None
    kl_full: float | None = None
    l1: float | None = None
    n_params: int | None = None
    n_components: int | None = None
    n_effective: int | None = None
    effective_frac: float | None = None
    n_cells: int | None = None
    n_cells_effective: int | None = None
    cells_effective_frac: float | None = None
    n_groups: int | None = None
    acc_base_cluster95: Interval | None = None
    flip_acc_pos_cluster95: Interval | None = None
    flip_acc_neg_cluster95: Interval | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SplitMetrics:
        known = {f.name: f for f in fields(cls) if f.name != "extra"}
        values: dict[str, Any] = {}
        for name in known:
            raw = data.get(name)
            if name.endswith(("_ci95", "_cluster95")):
                values[name] = _interval(raw)
            elif name in (
                "n_prompts",
                "n_params",
                "n_components",
                "n_effective",
                "n_cells",
                "n_cells_effective",
                "n_groups",
            ):
                values[name] = _count(raw)
            else:
                values[name] = _number(raw)
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        """The split as metrics.json holds it: the values present, in the fields' order."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                out.update(value)
            elif value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def rate(self, name: str) -> float | None:
        """``acc_base``, ``flip_acc_pos`` or ``flip_acc_neg``."""
        return {"acc_base": self.acc_base, "flip_acc_pos": self.flip_acc_pos, "flip_acc_neg": self.flip_acc_neg}[name]

    def interval(self, name: str) -> Interval | None:
        """The 95% interval of rate ``name``, if stored."""
        return {
            "acc_base": self.acc_base_ci95,
            "flip_acc_pos": self.flip_acc_pos_ci95,
            "flip_acc_neg": self.flip_acc_neg_ci95,
        }[name]

    def cluster_interval(self, name: str) -> Interval | None:
        """The 95% interval of rate ``name`` by group (bootstrap over groups), if stored."""
        return {
            "acc_base": self.acc_base_cluster95,
            "flip_acc_pos": self.flip_acc_pos_cluster95,
            "flip_acc_neg": self.flip_acc_neg_cluster95,
        }[name]

    def base_rate(self, name: str) -> float | None:
        """What a flip rate is read against (docs/method.md §4): ``flip_acc_pos`` against the
        share the unmodified model already answers with a+ (``acc_base``), ``flip_acc_neg``
        against 1 − ``acc_base``; None for ``acc_base`` itself or where it is not stored."""
        if self.acc_base is None:
            return None
        return {"flip_acc_pos": self.acc_base, "flip_acc_neg": 1.0 - self.acc_base}.get(name)

    @property
    def mean_flip(self) -> float | None:
        """The mean of both directions' flip rates, where both are stored."""
        if self.flip_acc_pos is None or self.flip_acc_neg is None:
            return None
        return (self.flip_acc_pos + self.flip_acc_neg) / 2


@dataclass(frozen=True)
class ModelShape:
    """The sizes of the model a run trained on (config.json's ``model_dims``)."""

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_vocab: int | None = None


@dataclass(frozen=True)
class Provenance:
    """Where a run came from: what config.json records beside the TrainConfig."""

    run_id: str
    created: str
    n_pos: int
    model_shape: ModelShape
    weights_hash: str = ""
    dataset_hash: str = ""
    dataset_path: str = ""
    device: str = ""
    dtype: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    stored_format: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any], stored_format: int) -> Provenance:
        """From a checked config.json (`bundle.verify_bundle` checked the shapes)."""
        dims = config["model_dims"]
        versions = config.get("versions")
        return cls(
            run_id=str(config.get("run_id", "")),
            created=str(config.get("created", "")),
            n_pos=int(config["n_pos"]),
            model_shape=ModelShape(
                **{k: int(dims[k]) for k in ("n_layers", "d_model", "n_heads", "d_head")},
                d_vocab=_count(dims.get("d_vocab")),
            ),
            weights_hash=str(config.get("weights_hash", "")),
            dataset_hash=str(config.get("dataset_hash", "")),
            dataset_path=str(config.get("dataset", "")),
            device=str(config.get("device", "")),
            dtype=str(config.get("dtype", "")),
            versions={str(k): str(v) for k, v in versions.items()} if isinstance(versions, dict) else {},
            stored_format=stored_format,
        )


@dataclass(frozen=True)
class RunRecord:
    """A stored run's configuration, provenance and metrics, typed."""

    config: TrainConfig
    provenance: Provenance
    splits: Mapping[str, SplitMetrics]

    @classmethod
    def from_json(
        cls, config: Mapping[str, Any], metrics: Mapping[str, Mapping[str, Any]], stored_format: int
    ) -> RunRecord:
        """From config.json in today's format (`migrations.migrate_config`) and metrics.json."""
        return cls(
            config=TrainConfig.from_bundle(dict(config)),
            provenance=Provenance.from_config(config, stored_format),
            splits={split: SplitMetrics.from_json(m) for split, m in metrics.items()},
        )

    def split(self, name: str) -> SplitMetrics:
        """The split's metrics; an empty record where the run has none for it."""
        return self.splits.get(name) or SplitMetrics()

    @property
    def split_names(self) -> list[str]:
        """The splits stored, train, val and test first."""
        return [s for s in SPLITS if s in self.splits] + sorted(set(self.splits) - set(SPLITS))

    @property
    def reported_split(self) -> str | None:
        """The split a run's result is quoted on: test, else validation, else training."""
        return next((s for s in ("test", "val", "train") if s in self.splits), None)
