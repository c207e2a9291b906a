"""Any timm backbone as a classifier, with online, local-file or offline-package weights."""
import timm
import torch

from fashioncli.api import Preprocessing, UnknownNameError, did_you_mean, hookimpl

from fashion_plugins.models import pretrained as weights


def create_timm(backbone, pretrained=False, num_classes=0, **kwargs):
    """-> (timm model with weights, whether weights were loaded); ``timm_preprocessing`` says how
    its inputs are normalised.

    Shared by every model built on a timm backbone; ``kwargs`` go to ``timm.create_model``.
    """
    if not timm.is_model(backbone):
        raise UnknownNameError(
            f"unknown timm backbone '{backbone}'{did_you_mean(backbone, timm.list_models())}; "
            "list them with: fashion models '*name*'"
        )
    kind, file = weights.resolve(pretrained, backbone)
    # Ported weight files carry a classifier and pair tensors up in order: load them into a model
    # that has one, then drop it.
    drop_classifier = bool(file) and num_classes == 0
    model = timm.create_model(backbone, pretrained=kind == "hub", num_classes=1 if drop_classifier else num_classes, **kwargs)
    if file:
        weights.apply_state_dict(model, weights.load_state_dict_file(file), file)
    if drop_classifier:
        model.reset_classifier(0, **{k: kwargs[k] for k in ("global_pool",) if k in kwargs})
    return model, kind != "none"


def timm_preprocessing(backbone, pretrained=False):
    """The mean and std a timm backbone's weights expect: an offline source's own scaling, else
    the statistics timm's pretrained config gives for the architecture (those of the weights
    timm loads, and the ones a model trained from scratch is given too)."""
    statistics = weights.source_statistics(pretrained)
    if statistics is None:
        # A name timm knows without a pretrained config is built with timm's default config.
        cfg = timm.models.get_pretrained_cfg(backbone) or timm.models.PretrainedCfg()
        statistics = cfg.mean, cfg.std
    return Preprocessing(*statistics)


def zero_init_(layer):
    """Zero a new Linear on top of pretrained features.

    timm's head init scales with 1/sqrt(num_classes): large first logits that upset pretrained
    features. A zero layer starts fine-tuning at the uniform prediction instead.
    """
    if isinstance(layer, torch.nn.Linear):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)


def timm_classifier(backbone, num_classes, pretrained=False, drop_rate=0.0, drop_path_rate=None, in_chans=3):
    """Any timm model by name with a new classifier of num_classes."""
    kwargs = {"drop_rate": drop_rate, "in_chans": in_chans}
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    model, loaded = create_timm(backbone, pretrained, num_classes=num_classes, **kwargs)
    if loaded:
        zero_init_(model.get_classifier())
    return model


@hookimpl
def register_models(register):
    register("timm", timm_classifier, preprocessing=timm_preprocessing)
