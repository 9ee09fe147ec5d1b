"""Runs 15-epoch trainings (jobs[worker::workers] of a JSON job list); see README.md here."""
import json, os, sys, time
import jax
import numpy as np
from configs import default, seed as seed_config
from flax_cifar import evaluation, input_pipeline, models, train

jobs_path, worker, workers, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
jobs = json.load(open(jobs_path))[worker::workers]
train.use_compilation_cache()  # the seeds of one config compile once
for job in jobs:
    config = {'default': default, 'seed': seed_config}[job['config']].get_config()
    for key, value in job.get('set', {}).items():
        node = config
        *parents, leaf = key.split('.')
        for p in parents:
            node = node[p]
        node[leaf] = tuple(value) if isinstance(value, list) else value
    config.checkpoint_every_steps = -1
    if os.environ.get('DEPTHWISE'):  # the faster one on this backend, from device.sh's timing
        config.model_args.depthwise_implementation = os.environ['DEPTHWISE']
    workdir = f"/tmp/sweep/{job['name']}"
    start = time.time()
    state = train.train_and_evaluate(config, workdir)  # what main.py runs
    test = input_pipeline.load_split(config.dataset, 'test')

    def accuracy(flip, ema=True):
        log_p = evaluation.predict_log_probabilities(state, test.images, config.eval_batch_size,
                                                     flip, ema)
        return round(100 * float(np.mean(log_p.argmax(-1) == test.labels)), 2)

    records = [json.loads(line) for line in open(f'{workdir}/metrics.jsonl')]
    raw = {}  # the weights themselves, beside their moving average
    if train.ema_of(state) is not None:
        raw = {'acc_raw': accuracy(False, ema=False), 'acc_flip_raw': accuracy(True, ema=False)}
    result = dict(job, **raw, params=models.param_count(state.params), seconds=round(time.time() - start, 1),
                  acc=accuracy(False), acc_flip=accuracy(True),
                  per_epoch=[round(100 * r['test_accuracy'], 2) for r in records],
                  train_acc=round(100 * records[-1]['train_accuracy'], 2),
                  depthwise=config.model_args.get('depthwise_implementation', 'auto'),
                  device=jax.devices()[0].device_kind, jax=jax.__version__)
    print('RESULT ' + json.dumps(result), flush=True)
    with open(os.path.join(out, f'results{worker}.jsonl'), 'a') as f:
        f.write(json.dumps(result) + '\n')
