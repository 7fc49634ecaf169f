"""Offline mode: verified ONNX exports of bundles and the installable in-browser screener (PWA).

* the graphs themselves (preprocessing + network + outputs) are :mod:`chestlens.models.graphs`;
* :mod:`chestlens.export.onnx_export`: fp32 / fp16 / int8 ``.onnx`` files;
* :mod:`chestlens.export.verify`, :mod:`chestlens.export.images`: checks against PyTorch on real images;
* :mod:`chestlens.export.bundle_export`: export + verification (``chestlens export onnx``);
* :mod:`chestlens.export.sidecar`: the JSON sidecar of an ``.onnx`` file (no PyTorch);
* :mod:`chestlens.export.web`: the static PWA build from the bundles' own graphs (``chestlens export web``,
  no PyTorch);
* :mod:`chestlens.export.offline`: :func:`mount_offline` serves that build at ``/offline/``.
"""

from chestlens.export.offline import mount_offline

__all__ = ["mount_offline"]
