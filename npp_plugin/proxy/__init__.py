"""Learned proxy codecs (CompressAI) that stand in for a standard codec in the backward pass.

``ProxyCodec.forward(x) -> {"x_hat", "likelihoods", "bits"}`` for any image size (inputs are
padded to a multiple of 64 and cropped back). Architectures: ``mbt2018`` (Minnen et al. 2018,
joint autoregressive + hierarchical priors, the paper's proxy), ``mbt2018_mean`` and
``bmshj2018_hyperprior`` (lighter, for CPU), with configurable ``N``/``M``.

Training (:mod:`npp_plugin.training.proxy_stage`): RD pretraining, then fine-tuning to mimic a
registered codec at one QP. One proxy per QP, as in the paper; a file holds a codec's set
(:mod:`npp_plugin.proxy.bank`).
"""

from __future__ import annotations

from .bank import load_proxies, save_proxies
from .model import ARCHS, ProxyCodec, proxy_codec

__all__ = ["ARCHS", "ProxyCodec", "load_proxies", "proxy_codec", "save_proxies"]
