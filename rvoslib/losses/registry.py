"""The registries of training criteria and of the frozen networks a criterion may use.

A criterion is a registered part built from the ``criterion`` spec of an architecture's config
(the matcher of a set criterion is inside that spec). It is called as
``criterion(outputs, batch) -> dict[str, Tensor]``: the weighted, named loss terms of a model's
outputs against a collated batch (their sum is the loss).

========================  ===========================  ==========================================
registry                  receives from the builder    provides
========================  ===========================  ==========================================
``CRITERIA``              nothing                      ``forward(outputs, batch) -> {name:
                                                       scalar}`` weighted terms
``FLOW_ESTIMATORS``       nothing                      ``forward(frames (N, 3, H, W), targets (N,
                                                       3, H, W)) -> (N, 2, H, W)`` flow in
                                                       pixels, frozen (LoSh's criterion)
========================  ===========================  ==========================================
"""

from __future__ import annotations

from rvoslib.registry import Registry

__all__ = ["CRITERIA", "FLOW_ESTIMATORS"]

#: Criteria by name; a criterion receives nothing from the model's parts.
CRITERIA = Registry("criterion")
#: Frozen optical-flow estimators (``"raft"``: :class:`~rvoslib.models.flow.FlowEstimator`).
FLOW_ESTIMATORS = Registry("flow estimator")
