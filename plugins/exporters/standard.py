"""Built-in exporters: ONNX and TorchScript.

An exporter registers ``register(name, factory, suffixes=(...), open=EngineClass, runs_code=bool)``:
``suffixes`` name its files, ``open(path, device, threads)`` is the ``fashioncli.engines.Engine``
that runs such a file in `fashion predict`, `fashion eval` and export's parity check, and
``runs_code`` says loading a file runs code it carries (opened only with --trust-torchscript). The
factory returns an object with
  ``suffix``                                    default file suffix (else the first of ``suffixes``)
  ``save(module, example, path, metadata, opset=None) -> dict | None``
      write ``module`` (uint8 N x 3 x S x S -> the task's outputs, named as ``metadata["outputs"]``
      or ``metadata["output"]`` lists; ``example`` is a batch of 2) to ``path`` with the JSON-able
      ``metadata`` inside the file; return extra summary facts
  ``load(path)``, only for an exporter registered without ``open``: the engine for the parity check.
  ``convert(src, dst, precision, calibration)``, optional: write the file ``src`` at a reduced
      ``precision`` ("int8", "fp16") to ``dst``, with ``calibration`` (uint8 batches of the model's
      images, for int8) -> facts for the summary; `fashion export --quantize int8 / --half` needs it

torch is imported inside ``save``: fashioncli.engines reads this module's registration to open an
.onnx file where only onnxruntime is installed.
"""
import json
import warnings

from fashioncli.api import METADATA_FILE, METADATA_KEY, ExportError, OnnxEngine, TorchScriptEngine, hookimpl


class OnnxExporter:
    """ONNX for onnxruntime and friends; metadata in metadata_props["fashion"]."""

    suffix = ".onnx"

    def save(self, module, example, path, metadata, opset=None):
        import torch

        # The torch.export-based exporter (dynamo=True): the one torch >= 2.9 supports and defaults
        # to. The TorchScript-based one is faster here (~0.2 s against ~5 s) but deprecated and
        # slated for removal; the parity check guards either way.
        program = torch.onnx.export(
            module, (example,), None, dynamo=True, opset_version=opset, verbose=False,
            input_names=[metadata["input"]["name"]],
            output_names=[o["name"] for o in metadata.get("outputs") or [metadata["output"]]],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
        program.model.metadata_props[METADATA_KEY] = json.dumps(metadata)
        program.save(str(path))
        return {"opset": program.model.opset_imports.get("")}

    def load(self, path):  # for plugins that subclass this exporter and register no engine of their own
        return OnnxEngine(path, device="cpu")

    def convert(self, src, dst, precision, calibration=None):
        from .quantize import convert

        return convert(src, dst, precision, calibration)


class TorchScriptExporter:
    """TorchScript (traced) for libtorch and torch.jit.load; metadata in the extra file fashion.json."""

    suffix = ".torchscript"

    def save(self, module, example, path, metadata, opset=None):
        import torch

        if opset is not None:
            raise ExportError("--opset applies to ONNX only; drop it for torchscript")
        with warnings.catch_warnings():  # torch.jit is deprecated upstream; the format is still wanted
            warnings.simplefilter("ignore", FutureWarning)
            # check_trace=False: the parity check runs the saved file on real images instead
            traced = torch.jit.trace(module, example, check_trace=False)
            with open(path, "wb") as f:  # a file object: the archive's inner folder is not named after a temp file
                torch.jit.save(traced, f, _extra_files={METADATA_FILE: json.dumps(metadata)})

    def load(self, path):  # for plugins that subclass this exporter and register no engine of their own
        return TorchScriptEngine(path, device="cpu")


@hookimpl
def register_exporters(register):
    register("onnx", OnnxExporter, suffixes=(OnnxExporter.suffix,), open=OnnxEngine, runs_code=False)
    # A TorchScript file is a program: loading it runs its code.
    register("torchscript", TorchScriptExporter, suffixes=(TorchScriptExporter.suffix, ".ts"),
             open=TorchScriptEngine, runs_code=True)
