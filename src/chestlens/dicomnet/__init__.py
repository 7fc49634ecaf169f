"""DICOM networking: ``chestlens listen``, a C-STORE SCP that screens what a PACS or modality sends and
returns the SR and SEG by C-STORE through a durable outbox.

Modules: :mod:`~chestlens.dicomnet.settings` (AE titles, ports, destinations, timings),
:mod:`~chestlens.dicomnet.scp` (the listener), :mod:`~chestlens.dicomnet.screening` (radiographs at once,
CT series after a quiet period), :mod:`~chestlens.dicomnet.outbox` (results on disk until delivered),
:mod:`~chestlens.dicomnet.delivery` (C-STORE with retries and backoff) and
:mod:`~chestlens.dicomnet.audit` (who sent what, where results went; hashed identifiers only).
"""
