"""The screening pipeline: image in, explained result out (quality gate, classification, CAM, masks)."""
