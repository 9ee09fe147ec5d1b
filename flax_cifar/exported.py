"""Runs an exported model (export.py wrote it) in its own runtime, LiteRT or ONNX Runtime:
what the deploy extra needs, without the converters.

  python main.py --mode=predict --exported WORKDIR/export/model_int8.tflite a.png b.jpg
"""
import importlib.util
import json
import os
import statistics
import time

import numpy as np
import scipy.special
from etils import epath

from flax_cifar import storage
from flax_cifar.errors import InputError
from flax_cifar.evaluation import inference

FLOAT_TFLITE, INT8_TFLITE, ONNX = 'model_float32.tflite', 'model_int8.tflite', 'model.onnx'
INFO = 'export.json'
LATENCY_RUNS = 200  # batch-1 invocations timed per model, after 20 warm-up runs


class Runtime:
    """One exported model in its own runtime (LiteRT or ONNX Runtime), one thread, fed one
    image at a time: scores(images) -> (N, classes) float32, dequantized for int8."""

    def __init__(self, path: str, model: bytes | None = None):
        """The model `path` names (its suffix the format), read from there unless given."""
        self.path = path
        if not path.endswith(('.onnx', '.tflite')):
            raise InputError(f'--exported {path}: not a .tflite or .onnx file')
        model = epath.Path(path).read_bytes() if model is None else model  # local or gs://
        runtime = 'onnxruntime' if path.endswith('.onnx') else 'ai_edge_litert'
        if importlib.util.find_spec(runtime) is None:
            raise InputError(f"--exported {path}: running it needs {runtime}, in the deploy "
                             f"extra: pip install -e '.[deploy]'")
        if path.endswith('.onnx'):
            import onnxruntime
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            self.session = onnxruntime.InferenceSession(model, options,
                                                        providers=['CPUExecutionProvider'])
            self.input_name = self.session.get_inputs()[0].name
            self.run_one = lambda image: self.session.run(None, {self.input_name: image})[0]
        else:
            from ai_edge_litert.interpreter import Interpreter  # LiteRT: no TensorFlow needed
            self.interpreter = Interpreter(model_content=model, num_threads=1)
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
            self.run_one = self._tflite_one

    def _tflite_one(self, image):
        self.interpreter.set_tensor(self.input['index'], image.astype(self.input['dtype']))
        self.interpreter.invoke()
        scores = self.interpreter.get_tensor(self.output['index'])
        scale, zero_point = self.output['quantization']
        return (scores.astype(np.float32) - zero_point) * scale if scale else scores

    def scores(self, images: np.ndarray) -> np.ndarray:
        return np.concatenate([self.run_one(image[None]) for image in images])

    def latency_ms(self, image: np.ndarray) -> float:
        """Median milliseconds of one batch-1 call."""
        for _ in range(20):
            self.run_one(image[None])
        times = []
        for _ in range(LATENCY_RUNS):
            start = time.perf_counter()
            self.run_one(image[None])
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)


def predict_files(model_path: str, paths: list[str]) -> list[tuple]:
    """(path, class name, probability) per image file, from an exported model."""
    info_path = storage.join(os.path.dirname(model_path), INFO)
    if not epath.Path(model_path).exists():
        raise InputError(f'--exported {model_path}: no such file')
    try:
        class_names = json.loads(epath.Path(info_path).read_text())['class_names']
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f'{info_path}: needed for the class names ({type(e).__name__})') from None
    images = np.stack([inference.load_image(p) for p in paths])
    scores = Runtime(model_path).scores(images)
    return inference.top_classes(paths, scipy.special.softmax(scores, axis=-1), class_names)
