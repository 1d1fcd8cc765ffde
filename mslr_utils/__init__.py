"""Modality-Specific Learning Rates (MSLR) for additive late fusion.

Reference implementation of Yao & Mihalcea, "Modality-specific Learning Rates for
Effective Multimodal Additive Late-fusion", Findings of ACL 2022.
"""

__version__ = "0.1.0"
