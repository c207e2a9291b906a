"""An engine seen as a PyTorch model, so that the task code scoring a checkpoint in `fashion eval` scores
an exported file (ONNX, TorchScript, a plugin's format) too, with no code per format.

Eval hands a model normalised float batches (``inference.iter_outputs``, segmentation's eval) and reads
what the model returns; an engine takes uint8 images and returns its task's activated outputs.
``EngineModel`` undoes both: the batch back to the uint8 images it was made from (exactly: normalising
is an affine map of integers), the engine's outputs back to logits by the task's ``raw_outputs``.
"""
import torch


class EngineModel(torch.nn.Module):
    """``engine`` (engines.py) as a model: normalised N x 3 x S x S floats -> what its task's eval
    reads from a model (``Task.raw_outputs``), on the batch's device."""

    def __init__(self, engine):
        super().__init__()
        self.engine = engine
        pre = engine.meta["preprocessing"]
        # Plain tensors, not buffers: they stay on the CPU, where the engine takes its images.
        self.mean = torch.tensor(pre["mean"], dtype=torch.float32).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(pre["std"], dtype=torch.float32).view(1, -1, 1, 1) * 255

    def forward(self, x):
        images = (x.float().cpu() * self.std + self.mean).round().clamp(0, 255).to(torch.uint8)
        outputs = self.engine.task.raw_outputs(self.engine.meta, self.engine.run(images.numpy()))
        if isinstance(outputs, dict):
            return {k: v.to(x.device) for k, v in outputs.items()}
        return outputs.to(x.device)
