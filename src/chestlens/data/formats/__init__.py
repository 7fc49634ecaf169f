"""Adapters for dataset layouts whose images users bring themselves.

Each module recognises one layout (``detect(folder)``), reads it into
:class:`~chestlens.data.records.Sample` records (``load(folder)``) and registers a
:class:`~chestlens.data.registry.SourceAdapter` on import:

* :mod:`~chestlens.data.formats.siim`: SIIM-ACR Pneumothorax (DICOM + RLE masks, see
  :mod:`chestlens.data.rle` for the exact run-length conventions).
* :mod:`~chestlens.data.formats.rsna`: RSNA Pneumonia Detection (DICOM + opacity boxes).
* :mod:`~chestlens.data.formats.covidx_ct`: COVIDx CT slices (file-name convention and label files).
* :mod:`~chestlens.data.formats.folder`: generic ``ROOT/[split/]<class>/<image>`` trees.
* :mod:`~chestlens.data.formats.manifest`: generic ``manifest.csv`` (path, label, ...).

The last two are ``generic``: the registry tries them on the data root only when no
dataset-specific layout was found there.
"""
