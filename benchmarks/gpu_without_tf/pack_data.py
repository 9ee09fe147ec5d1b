"""Packs the CIFAR-10 folder's JPEG bytes, in ImageFolder's row order, for a machine without TFDS.

  python benchmarks/gpu_without_tf/pack_data.py /path/to/cifar10 OUT_DIR

Writes OUT_DIR/{train,test}.bin (the files' bytes, concatenated) and OUT_DIR/index.npz
(offsets, labels, class names): 55 MB, small enough to travel to a lent GPU machine.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import numpy as np  # noqa: E402

from flax_cifar import input_pipeline  # noqa: E402

root, out = sys.argv[1], sys.argv[2]
builder = input_pipeline._builder(input_pipeline.FOLDER_PREFIX + root, None)
names = builder.info.features['label']
index = {'class_names': np.array(list(names.names))}
os.makedirs(out, exist_ok=True)
for split in ('train', 'test'):
    examples = builder._split_examples[split]
    blobs = [open(e.image_path, 'rb').read() for e in examples]
    index[f'{split}_offsets'] = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    index[f'{split}_labels'] = np.array([names.str2int(e.label) for e in examples], np.int32)
    with open(os.path.join(out, f'{split}.bin'), 'wb') as f:
        f.write(b''.join(blobs))
np.savez(os.path.join(out, 'index.npz'), **index)
