"""Runs 15-epoch trainings (jobs[worker::workers] of a JSON job list); see README.md here."""
import json, os, sys, time
import jax
from configs import default, seed as seed_config
from flax_cifar import models, train

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
    run, state, step, sums = train.setup_run(config, workdir)
    for epoch in range(run.total_steps // run.steps_per_epoch):
        t = time.time()
        state, step = run.train_epoch(state, step, epoch, sums, lambda: False)
        run.end_epoch(state, step, epoch, sums, time.time() - t)
        sums = train.EpochSums()
    run.checkpoints.close()
    no_flip = train.make_evaluate(run.mesh, config.eval_batch_size, False)(state, run.test)
    flip = train.make_evaluate(run.mesh, config.eval_batch_size, True)(state, run.test)
    recs = run.writer.records
    raw = {}  # the weights themselves, beside their moving average
    if train.ema_of(state) is not None:
        for name, f in (('acc_raw', False), ('acc_flip_raw', True)):
            raw_result = train.make_evaluate(run.mesh, config.eval_batch_size, f, ema=False)(state, run.test)
            raw[name] = round(100 * raw_result['accuracy'], 2)
    result = dict(job, **raw, params=models.param_count(state.params), seconds=round(time.time() - start, 1),
                  acc=round(100 * no_flip['accuracy'], 2), acc_flip=round(100 * flip['accuracy'], 2),
                  per_epoch=[round(100 * r['test_accuracy'], 2) for r in recs],
                  train_acc=round(100 * recs[-1]['train_accuracy'], 2),
                  depthwise=config.model_args.get('depthwise_implementation', 'auto'),
                  device=jax.devices()[0].device_kind, jax=jax.__version__)
    print('RESULT ' + json.dumps(result), flush=True)
    with open(os.path.join(out, f'results{worker}.jsonl'), 'a') as f:
        f.write(json.dumps(result) + '\n')
