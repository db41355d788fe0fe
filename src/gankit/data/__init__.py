"""Data: a source name in, uint8 images N x C x H x W out, then the batches training sees.

  sources.py     the source names (mnist5k, mnist, fashion-mnist, cifar10, folder:PATH, packed:DIR), torch-free
  loading.py     `load(source, ...) -> ImageData` (images, labels, class names), `prepare`, `pack`, `fit`
  folders.py     folders of image files, decoded once (in worker processes) into a pack in the cache
  workers.py     worker processes giving results in order, ended at once by a Ctrl-C (folders' decoding)
  caches.py      the rule for every cache entry (packs, evaluators, references): checked, else made again
  packs.py       packs: a decoded dataset in a folder that any number of processes memory-map
  transforms.py  resize, center-crop and grayscale of uint8 image tensors
  batches.py     `Batches`: the epoch's permutation, this rank's rows, to float in [-1, 1], rotation and flips

This file imports nothing, so that `gankit --help` (which lists the sources) stays light.
"""
