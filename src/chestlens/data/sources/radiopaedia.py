"""Radiopaedia rows of ieee8023 covid-chestxray-dataset: COVID-19 vs other pneumonias, one platform.

Layout: exactly the ieee8023 layout (:mod:`chestlens.data.sources.ieee8023`): ``<folder>/metadata.csv``
in the June 2020 columns and ``<folder>/images/<filename>``. What makes a folder this source is its
content: every row's ``url`` is a radiopaedia.org case
(:func:`~chestlens.data.sources.ieee8023.radiopaedia_only`).
The shared copy holds the 73 X-ray rows (patients 350a-383) that upstream commit 584034a still
labelled ``todo``, relabelled from a later upstream commit in the flat June 2020 vocabulary.

Why a source of its own: every image is a radiopaedia.org "jumbo" JPEG export, so COVID-19 and the
other pneumonias share one platform and one export pipeline. That makes it a within-source contrast
(COVID-19 vs other pneumonia) that the rest of the ieee8023 subset, assembled from many papers, lacks.

Patients: records come from :func:`~chestlens.data.sources.ieee8023.read_records`, so ``patient_id`` is
the ieee8023 id under the ieee8023 merge rules (``"ieee8023:350"``; the namespace is
:data:`PATIENT_NAMESPACE`, not this source's name). A patient that also appears in an ieee8023 folder
therefore has the same ``patient_id`` string there, and :func:`chestlens.data.linking.link_samples`
and :func:`chestlens.data.splits.make_splits` put both in one group. ``extra["image_key"]`` is
``"ieee8023:<filename>"``, so a later ieee8023 copy of the same file links too. Upstream quirks kept
(and merged conservatively): ``350a``/``350b``/``350c`` and ``360a``/``360b`` are different radiopaedia
cases but become one patient each (``ieee8023:350``, ``ieee8023:360``); patient 380 holds two cases.

Labels (``findings``, verbatim, split on commas): ``COVID-19``, ``Pneumonia``, ``Pneumocystis``,
``Legionella``, ``Lipoid``, ``Varicella``, ``Mycoplasma Bacterial Pneumonia``, ``Chlamydophila``,
``No Finding``. :mod:`chestlens.data.tasks` maps them with the ieee8023 rules (``Lipoid`` left out).
Caveat: ``Pneumonia`` here is heterogeneous. Besides community-acquired lobar/multilobar pneumonia it
covers non-infectious organising, eosinophilic and usual/lymphocytic/desquamative interstitial
pneumonias (SOURCE.md lists patients 360b, 364, 368, 370-372, 374, 377, 379, 380); like ieee8023's
``Pneumonia`` they count as the task class "pneumonia", so read ``extra["url"]`` before taking that
class as "bacterial or viral infection". Patient 377's lateral view is ``Chlamydophila`` while its PA
view is ``Pneumonia``; 351's ``No Finding`` image predates its COVID-19 by 120 days.

``view`` is kept as written (``PA``, ``AP``, ``AP Supine``, ``L``): lateral views are samples too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from chestlens.data.records import Sample
from chestlens.data.registry import SourceAdapter, register
from chestlens.data.sources import ieee8023

SOURCE = "radiopaedia"
FOLDER = "covid-chestxray-dataset-radiopaedia"
#: Namespace of this source's patient ids: they are ieee8023 patient ids.
PATIENT_NAMESPACE = ieee8023.SOURCE


def detect(folder: Path) -> bool:
    """An ieee8023 layout (:func:`~chestlens.data.sources.ieee8023.is_metadata_layout`) whose rows all
    come from radiopaedia.org."""
    return ieee8023.is_metadata_layout(folder) and ieee8023.radiopaedia_only(folder / ieee8023.METADATA)


def load(
    folder: Path,
    *,
    views: Iterable[str] | None = None,
    findings: Iterable[str] | None = None,
) -> list[Sample]:
    """One sample per existing X-ray image file, with the filters of
    :func:`chestlens.data.sources.ieee8023.load` (exact trimmed cell text).

    Raises:
        ChestlensInputError: missing ``metadata.csv`` or column, or a row without ``patientid``/``filename``.
    """
    return ieee8023.samples_from(folder, SOURCE, views=views, findings=findings)


ADAPTER = register(
    SourceAdapter(
        name=SOURCE,
        folder=FOLDER,
        modality="xray",
        description="ieee8023 rows from radiopaedia.org: metadata.csv + images/ (COVID-19, other pneumonias)",
        detect=detect,
        load=load,
    )
)
