"""Deploy a trained workdir: LiteRT (TFLite) float32 and full-integer int8 models and an ONNX
float32 model, each measured on the test split by its own runtime.

  python main.py --mode=export --workdir WORKDIR [--checkpoint=best] [--one_view]
  python main.py --mode=predict --exported WORKDIR/export/model_int8.tflite a.png b.jpg

Every model takes raw uint8 RGB images (N x 32 x 32 x 3, NHWC; the normalization is inside)
and returns the 10 class scores: float32 logits, or for int8 the quantized logits (their
argmax is the class; `export.json` has the scale and zero point). The models are the
evaluated model: the config's test-time views (flips, shifts) averaged inside the graph,
or one view with --one_view, with the weights evaluation uses (the weight average where the
run keeps one); BatchNorm runs on its statistics, which the converters fold into the convs.
Exporting needs the `export` extra and jax2onnx (pip install --no-deps jax2onnx: its own pin
of orbax-checkpoint is older than ours); running an exported model needs only `deploy`.
"""
import importlib.util
import json
import logging
import re

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from flax_cifar import models, storage
from flax_cifar.data import sources, types
from flax_cifar.errors import InputError
from flax_cifar.evaluation import inference, views
from flax_cifar.exported import FLOAT_TFLITE, INFO, INT8_TFLITE, ONNX, Runtime
from flax_cifar.state import train_state
from flax_cifar.state.train_state import inference_variables


def exported_views(config, one_view: bool) -> tuple[bool, int]:
    """(flip, translate) of the exported models: the config's test-time views, or one."""
    return (False, 0) if one_view else views.test_time_views(config.eval)


def logits_fn(state, config, num_classes: int, one_view: bool = False):
    """uint8 (or 0..255 float) NHWC images -> float32 logits: the deployed computation, its
    depthwise convs as grouped convs (what converters map to DEPTHWISE_CONV_2D), not the
    shifted multiply-adds that train faster on CPU and GPU. The config's test-time views
    are averaged inside the graph, so the model is the one evaluation measured, unless
    `one_view` (a fraction of the latency)."""
    model = train_state.model_of(config, num_classes).clone(depthwise_implementation='conv')
    variables = inference_variables(state)
    flip, translate = exported_views(config, one_view)

    def fn(images):
        normalized = types.normalize(images, config.data.normalize)
        return views.average_views(
            lambda shift, mirrored: model.apply(
                variables, views.view_images(normalized, shift, mirrored), train=False),
            flip, translate)
    return fn


def _culprit(error: Exception, layers: list[str]) -> str:
    """'layer L: first line of the converter's message', naming the first of the model's
    layers that the message mentions (the converters keep Flax's module names)."""
    # TF's ConverterError keeps each error's MLIR location (the op's name scope) apart.
    text = '\n'.join([str(error), *map(str, getattr(error, 'errors', []))])
    named = next((layer for layer in layers if re.search(rf'\b{re.escape(layer)}\b', text)),
                 'unknown layer')
    first = next((line.strip() for line in text.splitlines() if 'error' in line.lower()),
                 text.strip().splitlines()[0] if text.strip() else type(error).__name__)
    return f'{named}: {first[:200]}'


def to_tflite(fn, calibration: np.ndarray | None = None) -> bytes:
    """A LiteRT model of `fn`: float32 with a uint8 input, or, given calibration images,
    full-integer int8 (uint8 input, int8 output) quantized on them."""
    import tensorflow as tf
    from jax.experimental import jax2tf

    # Batch 1, as deployed: a fixed shape keeps strided slices static for the converter.
    converted = jax2tf.convert(fn, with_gradient=False)
    if calibration is None:
        spec = tf.TensorSpec([1, *types.IMAGE_SHAPE], tf.uint8)
        function = tf.function(converted, autograph=False, input_signature=[spec])
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [function.get_concrete_function()], function)
        return converter.convert()
    # The int8 graph reads float pixels 0..255, their range fixed by a fake-quant op, so
    # that the input is quantized to uint8 with scale 1 and zero point 0 (checked in
    # export()): the raw pixels themselves, whatever the calibration images' range.
    spec = tf.TensorSpec([1, *types.IMAGE_SHAPE], tf.float32)
    function = tf.function(lambda pixels: converted(tf.quantization.fake_quant_with_min_max_args(
        pixels, min=0.0, max=255.0, num_bits=8)), autograph=False, input_signature=[spec])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [image[None].astype(np.float32)] for image in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.int8
    return converter.convert()


def to_onnx(fn) -> bytes:
    # jax2onnx warns about each of its optional plugins whose library is not installed.
    logging.getLogger('jax2onnx').setLevel(logging.ERROR)
    import jax2onnx
    model = jax2onnx.to_onnx(fn, [jax.ShapeDtypeStruct((1, *types.IMAGE_SHAPE),
                                                       jnp.uint8)], model_name='flax_cifar')
    return model.SerializeToString()


def _require_converters():
    missing = [name for name in ('tensorflow', 'jax2onnx', 'onnxruntime', 'ai_edge_litert')
               if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"--mode=export needs {', '.join(missing)}: pip install -e "
                         f"'.[export]' && pip install --no-deps jax2onnx")


def export(workdir: str, which: str = 'best', calibration_size: int = 500,
           dataset: str | None = None, one_view: bool = False) -> dict:
    """Writes the three models into <workdir>/export, measures each on the test split and
    writes export.json; returns what it wrote there. The models average the config's
    test-time views, as evaluation does, unless `one_view`."""
    _require_converters()
    state, config, class_names, step = inference.restore_for_inference(workdir, which)
    dataset = dataset or config.data.dataset
    test = sources.load_split(dataset, 'test', config.data.tfds_data_dir,
                                     config.data.cache_dir)
    train_rows = (0, min(calibration_size, sources.num_examples(
        dataset, 'train', config.data.tfds_data_dir)))
    calibration = sources.load_split(dataset, 'train', config.data.tfds_data_dir,
                                            config.data.cache_dir, train_rows).images
    fn = logits_fn(state, config, len(class_names), one_view)
    flip, translate = exported_views(config, one_view)
    jitted = jax.jit(fn)  # one wrapper: each batch shape compiles once
    jax_scores = np.concatenate([np.asarray(jitted(test.images[i:i + 1000]))
                                 for i in range(0, len(test.images), 1000)])
    jax_accuracy = float(np.mean(jax_scores.argmax(-1) == test.labels))
    paths = [row.path for row in models.layer_table(  # the names errors point to
        train_state.model_of(config, len(class_names)))]
    layers = sorted(set(paths), key=len, reverse=True) + list(
        dict.fromkeys(p.split('/')[0] for p in paths))
    out = storage.join(workdir, 'export')
    epath.Path(out).mkdir(parents=True, exist_ok=True)
    report = {'checkpoint': {'workdir': workdir, 'which': which, 'step': step},
              'class_names': class_names, 'jax_test_accuracy': jax_accuracy,
              'views': view_names(flip, translate),
              'test_images': len(test.labels), 'calibration_images': len(calibration),
              'models': {}}
    builders = {FLOAT_TFLITE: ('LiteRT', lambda: to_tflite(fn)),
                INT8_TFLITE: ('LiteRT', lambda: to_tflite(fn, calibration)),
                ONNX: ('ONNX', lambda: to_onnx(fn))}
    for name, (converter, build) in builders.items():
        try:
            blob = build()
        except InputError:
            raise
        except Exception as e:  # the converters raise many kinds, with long messages
            raise InputError(f'export: {converter} cannot convert {name}, at layer '
                             f'{_culprit(e, layers)}') from None
        path = storage.join(out, name)
        storage.write_atomic(path, blob)
        runtime = Runtime(path, blob)
        if name == INT8_TFLITE:
            scale, zero_point = runtime.input['quantization']
            if (scale, zero_point) != (1.0, 0):
                raise InputError(f'export: the int8 model quantized its input with scale '
                                 f'{scale}, zero point {zero_point}, not the raw pixels '
                                 f'(1, 0): calibrate on more images')
        scores = runtime.scores(test.images)
        predictions = scores.argmax(-1)
        report['models'][name] = {
            'runtime': 'LiteRT (ai-edge-litert)' if converter == 'LiteRT'
                       else 'ONNX Runtime',
            'test_accuracy': float(np.mean(predictions == test.labels)),
            'agrees_with_jax': float(np.mean(predictions == jax_scores.argmax(-1))),
            'size_kb': len(blob) / 1024,
            'latency_ms': runtime.latency_ms(test.images[0]),
            **({'output_quantization': list(map(float, runtime.output['quantization']))}
               if name == INT8_TFLITE else {})}
    storage.write_atomic(storage.join(out, INFO), json.dumps(report, indent=1))
    return report


def view_names(flip: bool, translate: int) -> str:
    """The test-time views a model averages, in words."""
    names = ['the image'] + (['its mirror image'] if flip else []) + (
        [f'{translate}-pixel shifts'] if translate else [])
    return 'one view' if len(names) == 1 else ', '.join(names)


def format_report(report: dict) -> str:
    lines = [f"JAX ({report['views']}, float32): {100 * report['jax_test_accuracy']:.2f}% on "
             f"{report['test_images']} test images",
             f"{'model':<22}{'accuracy':>10}{'vs JAX':>9}{'same class':>12}{'size KB':>10}"
             f"{'ms/image':>10}"]
    for name, m in report['models'].items():
        lines.append(f"{name:<22}{100 * m['test_accuracy']:>9.2f}%"
                     f"{100 * (m['test_accuracy'] - report['jax_test_accuracy']):>+8.2f}"
                     f"{100 * m['agrees_with_jax']:>11.2f}%{m['size_kb']:>10.1f}"
                     f"{m['latency_ms']:>10.3f}")
    return '\n'.join(lines)
