"""The training configuration: one dataclass, from a JSON/TOML file and/or command-line flags.

Flags override the file; the resolved configuration is stored in every checkpoint and in the
weights' metadata, so a run can be repeated exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["STAGES", "TrainConfig"]

#: stage names (the paper's three stages) and their aliases
STAGES = {"proxy": "proxy", "1": "proxy", "npp": "npp", "2": "npp", "npp-qa": "npp-qa", "qa": "npp-qa", "3": "npp-qa"}
_LAMBDA_MODES = ("calibrated", "paper", "fixed")


@dataclass
class TrainConfig:
    """Everything a training run depends on.

    Stage ``proxy`` (1) fine-tunes one proxy per QP in ``qps`` to imitate ``codec``; stage
    ``npp`` (2) trains NPP without QA at ``qp``; stage ``npp-qa`` (3) adds QA layers and draws
    a QP from ``qps`` per batch.
    """

    stage: str = "npp"
    out: str = "runs/npp"
    # what is trained for
    codec: str = "jpeg"
    codec_options: dict[str, Any] = field(default_factory=dict)
    task: str = "mobilenet_v2"
    task_options: dict[str, Any] = field(default_factory=dict)
    # data
    data: str = "builtin"
    annotations: str | None = None
    val_data: str | None = None
    size: int = 128
    batch_size: int = 8
    # schedule
    steps: int = 1000
    lr: float = 1e-4
    lr_final: float = 1e-5
    lr_drop: float = 0.8
    seed: int = 0
    # operating points and the objective
    qp: int = 34
    qps: list[int] = field(default_factory=lambda: [28, 31, 34, 37, 41])
    lambda_mode: str = "calibrated"
    lambdas: dict[str, float] = field(default_factory=dict)
    lambda_scale: float = 1.0
    calib_batches: int = 4
    calib_delta: int = 3
    beta: float = 1.0
    psnr_floor: float = 30.0
    # networks
    npp_config: str = "small"
    npp_init: str | None = None
    proxies: str | None = None
    proxy_arch: str = "mbt2018_mean"
    proxy_N: int = 96
    proxy_M: int = 128
    proxy_init: str | None = None
    proxy_pretrain_steps: int = 2000
    proxy_lambda: float = 0.0130
    proxy_only: bool = False
    # gradient source: the learned proxies, or an analytic surrogate (no proxy network)
    surrogate: str = "proxy"
    jacobian: str = "masked"
    check_every: int = 0
    init_blur: float = 0.0
    ema: float = 0.0
    # machinery
    checkpoint_every: int = 100
    diag_every: int = 1
    val_images: int = 16
    workers: int | None = None
    threads: int | None = None
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a ``.json`` or ``.toml`` file; ``overrides`` (non-None) win."""
        path = Path(path)
        try:
            text = path.read_text()
            if path.suffix == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                data = json.loads(text)
        except (OSError, ValueError) as exc:
            msg = f"npp train: cannot read config file {str(path)!r}: {exc}"
            raise InvalidArgumentError(msg, argument="config", allowed="a JSON or TOML file") from exc
        if not isinstance(data, dict):
            msg = f"npp train: config file {str(path)!r} must hold a table/object of options"
            raise InvalidArgumentError(msg, argument="config", allowed="a JSON object or TOML table")
        return cls.from_dict({**data, **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            msg = f"npp train: unknown option {unknown[0]!r}; options: {', '.join(sorted(known))}"
            raise InvalidArgumentError(msg, argument=unknown[0], allowed=sorted(known))
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # -- checks -----------------------------------------------------------------------------

    def validate(self) -> None:
        if str(self.stage) not in STAGES:
            msg = f"npp train: stage={self.stage!r} is not allowed; choose proxy (1) | npp (2) | npp-qa (3)"
            raise InvalidArgumentError(msg, argument="stage", allowed=sorted(set(STAGES.values())))
        self.stage = STAGES[str(self.stage)]
        for key in ("size", "batch_size", "checkpoint_every", "diag_every", "calib_batches", "calib_delta",
                    "proxy_N", "proxy_M"):
            _positive_int(key, getattr(self, key))
        for key in ("steps", "proxy_pretrain_steps", "val_images", "seed", "qp"):
            _positive_int(key, getattr(self, key), minimum=0)
        if self.size % 16:
            msg = f"npp train: size={self.size} must be a multiple of 16 (crops are square, codec-friendly)"
            raise InvalidArgumentError(msg, argument="size", allowed="multiples of 16")
        if not self.qps or not all(isinstance(q, int) and not isinstance(q, bool) for q in self.qps):
            msg = f"npp train: qps must be a non-empty list of integers, got {self.qps!r}"
            raise InvalidArgumentError(msg, argument="qps", allowed="list of integers")
        self.qps = sorted(set(self.qps))
        if self.lambda_mode not in _LAMBDA_MODES:
            msg = f"npp train: lambda_mode={self.lambda_mode!r} is not allowed; choose {' | '.join(_LAMBDA_MODES)}"
            raise InvalidArgumentError(msg, argument="lambda_mode", allowed=_LAMBDA_MODES)
        self.lambdas = {str(k): float(v) for k, v in (self.lambdas or {}).items()}
        if self.lambda_mode == "fixed":
            missing = [q for q in self.qps_used() if str(q) not in self.lambdas]
            if missing:
                msg = f"npp train: lambda_mode='fixed' needs lambdas for qps {missing} (e.g. --lambdas 34=2.0)"
                raise InvalidArgumentError(msg, argument="lambdas", allowed="qp=value pairs")
        for key in ("lr", "lr_final", "beta", "lambda_scale", "proxy_lambda"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                msg = f"npp train: {key} must be a non-negative number, got {v!r}"
                raise InvalidArgumentError(msg, argument=key, allowed="numbers >= 0")
        if self.surrogate not in ("proxy", "log", "sqlog", "sigcount"):
            msg = f"npp train: surrogate={self.surrogate!r} is not allowed; choose proxy | log | sqlog | sigcount"
            raise InvalidArgumentError(msg, argument="surrogate", allowed=["proxy", "log", "sqlog", "sigcount"])
        if self.jacobian not in ("identity", "soft", "masked"):
            msg = f"npp train: jacobian={self.jacobian!r} is not allowed; choose identity | soft | masked"
            raise InvalidArgumentError(msg, argument="jacobian", allowed=["identity", "soft", "masked"])
        if self.surrogate == "proxy" and self.check_every:
            msg = "npp train: --check-every needs an analytic --surrogate (log | sqlog | sigcount)"
            raise InvalidArgumentError(msg, argument="check_every", allowed="0 with surrogate=proxy")
        _positive_int("check_every", self.check_every, minimum=0)
        if not 0.0 <= float(self.ema) < 1.0:
            msg = f"npp train: ema={self.ema!r} must be in [0, 1) (0 = off)"
            raise InvalidArgumentError(msg, argument="ema", allowed="[0, 1)")
        if not 0.0 <= float(self.init_blur) <= 5.0:
            msg = f"npp train: init_blur={self.init_blur!r} must be a Gaussian σ in [0, 5] (0 = identity start)"
            raise InvalidArgumentError(msg, argument="init_blur", allowed=(0.0, 5.0))
        if not 0.0 <= float(self.lr_drop) <= 1.0:
            msg = f"npp train: lr_drop={self.lr_drop!r} must be a fraction of the steps in [0, 1]"
            raise InvalidArgumentError(msg, argument="lr_drop", allowed=(0.0, 1.0))

    def qps_used(self) -> list[int]:
        """The QPs this stage trains at."""
        return [self.qp] if self.stage == "npp" else list(self.qps)

    def proxies_path(self) -> Path:
        return Path(self.proxies) if self.proxies else Path(self.out) / f"proxies-{self.codec}.pt"


def _positive_int(key: str, value: Any, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        msg = f"npp train: {key} must be an integer >= {minimum}, got {value!r}"
        raise InvalidArgumentError(msg, argument=key, allowed=f"integers >= {minimum}")
