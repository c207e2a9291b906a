"""What a multi-task model file (checkpoint or export) says about its heads, checked before anything
is built from it (``fashioncli.model_meta`` calls these through the task)."""
from ...model_meta import MAX_CLASSES, check_class_names, check_mapping, metadata_error, show
from .heads import HEAD_TYPES


def check_heads(meta, source):
    """-> {head: number of classes}; a damaged or edited 'heads' fails in one line naming ``source``."""
    heads = check_mapping(meta, "heads", source)
    if not heads:
        raise metadata_error(source, "'heads' is empty")
    widths = {}
    for name, head in heads.items():
        if not isinstance(head, dict) or head.get("type") not in HEAD_TYPES:
            raise metadata_error(source, f"head '{name}' must be a mapping with a type among {', '.join(HEAD_TYPES)}")
        widths[name] = len(check_class_names(head.get("classes"), f"heads.{name}.classes", source))
        if head["type"] == "binary" and widths[name] != 1:
            raise metadata_error(source, f"binary head '{name}' has {widths[name]} classes, not 1")
        if not isinstance(head.get("parent_of") or {}, dict):
            raise metadata_error(source, f"'heads.{name}.parent_of' must be a mapping")
    if sum(widths.values()) > MAX_CLASSES:
        raise metadata_error(source, f"the heads have {sum(widths.values()):,} classes together, "
                                     f"more than {MAX_CLASSES:,}")
    check_mapping(meta, "thresholds", source, required=False)
    return widths


def check_head_outputs(injected, widths, source):
    """The head widths fashion passed to the model factory are the metadata's."""
    heads = injected.get("heads")
    got = ({n: h.get("outputs") for n, h in heads.items() if isinstance(h, dict)}
           if isinstance(heads, dict) else None)
    if got != widths:
        raise metadata_error(source, f"the model is built with head outputs {show(got)}, but 'heads' has {show(widths)}")
