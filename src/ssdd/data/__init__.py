"""Data layer: every source becomes an ImageDataset of uint8 images and int64 labels."""

from ssdd.data.dataset import DataError, ImageDataset, channel_stats, resize_uint8
from ssdd.data.loaders import dataset_name, load_digits, load_image_folder, load_npz, load_split, save_npz
from ssdd.data.torchvision_sets import TORCHVISION_DATASETS, load_torchvision

__all__ = [
    "TORCHVISION_DATASETS",
    "DataError",
    "ImageDataset",
    "channel_stats",
    "dataset_name",
    "load_digits",
    "load_image_folder",
    "load_npz",
    "load_split",
    "load_torchvision",
    "resize_uint8",
    "save_npz",
]
