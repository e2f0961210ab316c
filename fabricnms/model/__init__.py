"""Model: boxes, Sinkhorn, the detector, the differentiable NMS and the mask refinement."""
