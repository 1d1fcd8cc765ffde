"""Data containers shared by every task, and the task loaders."""

from mslr_utils.data.splits import ModalSplit, stratified_split_indices

__all__ = ["ModalSplit", "stratified_split_indices"]
