"""The data sources by name: plain data with no import, so that the command line lists them without importing
torch (gankit.data.loading loads them)."""

from __future__ import annotations

TORCHVISION_SOURCES = {
    # name -> (torchvision class name, folder under data_dir, files it needs there)
    "mnist": ("MNIST", "MNIST/raw", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                                   "data_batch_5", "test_batch", "batches.meta"]),
}
SOURCES = ["mnist5k", *TORCHVISION_SOURCES, "folder:PATH", "packed:DIR"]
