"""Any timm backbone as a classifier, with online, local-file or offline-package weights."""
import timm
import torch

from fashioncli import hookimpl, pretrained as weights
from fashioncli.errors import UnknownNameError, did_you_mean
from fashioncli.preprocess import IMAGENET_MEAN, IMAGENET_STD


def timm_classifier(backbone, num_classes, pretrained=False, drop_rate=0.0, drop_path_rate=None, in_chans=3):
    """Any timm model by name with a new classifier of num_classes."""
    if not timm.is_model(backbone):
        raise UnknownNameError(
            f"unknown timm backbone '{backbone}'{did_you_mean(backbone, timm.list_models())}; "
            "list them with: python -c \"import timm; print(timm.list_models('*name*'))\""
        )
    kind, file, mean, std = weights.resolve(pretrained, backbone)
    kwargs = {"drop_rate": drop_rate, "in_chans": in_chans}
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    model = timm.create_model(backbone, pretrained=kind == "hub", num_classes=num_classes, **kwargs)
    if file:
        weights.apply_state_dict(model, weights.load_state_dict_file(file), file)
    if kind != "none":
        # timm's head init scales with 1/sqrt(num_classes): large first logits that upset pretrained
        # features. A zero head starts fine-tuning at the uniform prediction instead.
        head = model.get_classifier()
        if isinstance(head, torch.nn.Linear):
            torch.nn.init.zeros_(head.weight)
            torch.nn.init.zeros_(head.bias)
    cfg = model.pretrained_cfg
    # Preprocessing travels with the model into checkpoints and exports.
    model.fashion_preprocessing = {
        "mean": list(mean or cfg.get("mean", IMAGENET_MEAN)),
        "std": list(std or cfg.get("std", IMAGENET_STD)),
    }
    return model


@hookimpl
def register_models(register):
    register("timm", timm_classifier)
