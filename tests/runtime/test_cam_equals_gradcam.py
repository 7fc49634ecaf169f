"""The graph's class-activation map equals Grad-CAM at the last feature layer (global average pool +
linear head), so the heatmap of every runtime and the browser is Grad-CAM's."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import chestlens
from chestlens.io import read_image
from chestlens.models.graphs import build_graph
from chestlens.preprocess.units import to_unit_range


def test_cam_output_equals_gradcam_at_the_feature_layer(pip_dicom):
    bundle = chestlens.load("xray3-screener")
    graph = build_graph(bundle)
    unit = to_unit_range(read_image(pip_dicom("RG1_UNCR.dcm")), bundle.spec.preprocess)
    image = torch.from_numpy(np.ascontiguousarray(unit))[None, None]
    with torch.no_grad():
        _, _, cams = graph(image)
    x = graph.network_input(image)
    feature_layer = graph.network.bn2  # its output is forward_features(x), the map the head pools
    for label in range(len(bundle.spec.labels)):
        with GradCAM(model=graph.network, target_layers=[feature_layer]) as gradcam:
            expected = gradcam(input_tensor=x, targets=[ClassifierOutputTarget(label)])[0]
        assert np.abs(cams[0, label].numpy() - expected).max() < 2e-3
