"""GPU-machine shim (copied into .gpu/ there): that machine has jax+CUDA, no TensorFlow/TFDS.

With FLAX_CIFAR_GPU_SHIM=1: stub TF/TFDS imports, serve CIFAR-10 (the same JPEG q75 files,
in ImageFolder's row order, decoded with PIL) from .gpu/*.bin, write metrics.jsonl without TF.
"""
import os
if os.environ.get('FLAX_CIFAR_GPU_SHIM') == '1':
    import io, json, sys, types
    from concurrent.futures import ThreadPoolExecutor

    class _Stub(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith('__'):
                raise AttributeError(name)
            return _Stub(f'{self.__name__}.{name}')
        def __call__(self, *a, **k):
            return _Stub('call')

    import importlib.machinery
    for _name in ('tensorflow', 'tensorflow_datasets'):
        sys.modules[_name] = _Stub(_name)
        sys.modules[_name].__spec__ = importlib.machinery.ModuleSpec(_name, None)  # for find_spec

    import numpy as np
    from PIL import Image
    from flax_cifar import input_pipeline, metric_writers, plots

    _HERE = os.path.dirname(os.path.abspath(__file__))
    _INDEX = np.load(os.path.join(_HERE, 'index.npz'))
    _CACHE = {}

    def _decode(split):
        if split not in _CACHE:
            decoded = f'/tmp/flax_cifar_gpu_shim_{split}.npy'  # later processes skip the decode
            if os.path.exists(decoded):
                images = np.load(decoded)
            else:
                raw = open(os.path.join(_HERE, f'{split}.bin'), 'rb').read()
                o = _INDEX[f'{split}_offsets']
                dec = lambda i: np.asarray(Image.open(io.BytesIO(raw[o[i]:o[i + 1]])).convert('RGB'))
                with ThreadPoolExecutor(16) as pool:
                    images = np.stack(list(pool.map(dec, range(len(o) - 1))))
                if not _LIMIT:
                    np.save(decoded + '.tmp.npy', images)
                    os.replace(decoded + '.tmp.npy', decoded)
            _CACHE[split] = input_pipeline.Split(images, _INDEX[f'{split}_labels'])
        return _CACHE[split]

    _LIMIT = int(os.environ.get('FLAX_CIFAR_GPU_SHIM_ROWS', '0')) or None  # local smoke test only
    input_pipeline.num_examples = lambda dataset, split, data_dir=None: len(_INDEX[f'{split}_labels'][:_LIMIT])
    def _load_split(dataset, split, data_dir=None, cache_dir='', rows=None):
        s = _decode(split)
        a, b = rows if rows else (0, len(s.labels[:_LIMIT]))
        return input_pipeline.Split(s.images[a:b], s.labels[a:b])
    input_pipeline.load_split = _load_split
    input_pipeline.class_names = lambda dataset, data_dir=None: [str(c) for c in _INDEX['class_names']]

    class _Writer:
        def __init__(self, workdir, enabled=True, resume_step=0):
            self.enabled, self.records = enabled, []
            os.makedirs(workdir, exist_ok=True)
            self.path = os.path.join(workdir, 'metrics.jsonl')
        def write_scalars(self, step, scalars):
            pass
        def write_epoch(self, record):
            record = {k: float(v) if hasattr(v, 'dtype') else v for k, v in record.items()}
            self.records.append(record)
            with open(self.path, 'a') as f:
                f.write(json.dumps(record) + '\n')
        def close(self):
            pass
    metric_writers.MetricWriter = _Writer
    plots.plot_curves = lambda workdir: None
