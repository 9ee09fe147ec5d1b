"""The project's default: DSResNet (depthwise-separable, dilated, residual), 195,722 parameters.

Run:
  python main.py --config configs/default.py --config.dataset=folder:/path/to/cifar10

Expected result (JPEG q75 copy of CIFAR-10): 86.90% test accuracy after 15 epochs with the
test-time flip, mean of seeds 0-2 (86.83-86.96%), 117-147 min on one core of a 2-core x86-64
CPU with jax 0.12 (docs/results.md).
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Model: a name in flax_cifar.models.MODELS, and the keyword arguments of its class.
    config.model = 'dsresnet'
    config.model_args = ml_collections.ConfigDict(dict(
        stem_features=32,              # dense 3x3 stem at 32x32
        stage_features=(96, 192, 256),  # one stage per width; each halves the resolution
        stage_depths=(1, 1, 1),        # residual separable units per stage
        stage_dilations=(2, 2, 1),     # kernel_dilation of the residual units' 3x3 convs
        depthwise=True,                # feature_group_count=in_features in the 3x3 convs
        dropout_rate=0.0,              # dropout on the residual branches
    ))

    # Data: 'cifar10' from the TFDS catalog, or 'folder:/path' (root/{train,test}/<class>/*).
    config.dataset = 'cifar10'
    # TFDS data_dir for catalog datasets (None: TFDS's default, ~/tensorflow_datasets).
    config.data_dir = ml_collections.config_dict.placeholder(str)
    # Decoded folder datasets are cached here (None: $XDG_CACHE_HOME or ~/.cache, /flax_cifar;
    # '': no cache). The cache key covers every file's name, size and mtime.
    config.data_cache_dir = ml_collections.config_dict.placeholder(str)
    config.augment = True              # random crop and flip, inside the jitted step
    config.crop_padding = 4            # padding before the random 32x32 crop
    config.crop_pad_mode = 'constant'  # pad with zeros ('constant') or reflected borders
    config.flip = True                 # random horizontal flips
    # Flips alternate instead: a fixed random half of the images is mirrored, and every image
    # is mirrored in odd epochs, so each is seen both ways every two epochs (airbench).
    config.alternating_flip = False
    # Patch whitening (airbench): the first conv's kernel is set from the covariance of the
    # training images' patches (its top eigenvectors, scaled to unit variance, and their
    # negatives) and never trained: faster early epochs and +0.5 points at 15 (docs/results.md).
    config.stem_whitening = True
    # Cutout: zero a square of this side (pixels) at a random place in each training image,
    # after normalization (so it takes the mean colour); 0: off.
    config.cutout_size = 0

    # Optimization.
    config.batch_size = 128            # global batch, split over all devices
    config.eval_batch_size = 1000      # test-set batch; the last partial batch is masked
    # Test-time augmentation: average the logits of each test image and of its mirror image.
    config.eval_flip = True
    # Also average in each image shifted this many pixels down-right and up-left (reflected
    # borders), at half the weight (airbench's multi-crop); 0: off. Triples evaluation's cost;
    # 1: +0.17 to +0.35 points on the default (3 seeds), +0.59 on the seed network (README).
    # --mode=evaluate reports it either way.
    config.eval_translate = 0
    config.num_epochs = 15
    config.num_train_steps = -1        # -1: num_epochs of full batches; >0: stop after these
    config.learning_rate = 0.2         # peak learning rate of the schedule
    config.schedule = 'onecycle'       # 'onecycle', 'warmup_cosine' or 'constant'
    config.warmup_fraction = 0.25      # share of the steps spent rising to the peak
    config.onecycle_div_factor = 25.0  # onecycle starts at learning_rate / this
    config.onecycle_final_div_factor = 1e4  # and ends at the start value / this
    config.momentum = 0.9
    config.nesterov = True
    config.weight_decay = 5e-4         # L2 on conv and dense kernels (not BN, not biases)
    config.bn_bias_lr_scale = 1.0      # BatchNorm biases' learning rate over the others'
    # > 0: Muon (optax.contrib) for dense and pointwise conv kernels at this peak learning
    # rate, on the same schedule; SGD for the rest. 0: SGD for everything.
    config.muon_learning_rate = 0.0
    config.muon_momentum = 0.6         # Muon's Nesterov momentum (airbench's Muon variant)
    config.label_smoothing = 0.1       # 0 for plain cross-entropy
    # Evaluate a moving average of the weights and BatchNorm statistics, updated every step
    # with this decay (held below (1 + step) / (10 + step) early on); 0: the weights as they are.
    config.ema_decay = 0.0
    # Lookahead (train.Lookahead): every `every` steps from epoch `start_epoch` on, a slow copy
    # of the weights moves towards them and they jump back to it; 0: off.
    config.lookahead = ml_collections.ConfigDict(dict(every=0, decay=0.95, power=3.0,
                                                      start_epoch=3))

    # Devices and hosts.
    # The training split is cut into this many equal shards; each process loads only its
    # own and every batch takes batch_size / data_shards images from each. The data order is
    # a function of (seed, data_shards): fix it (a multiple of the process count) to get the
    # same run on any number of hosts. 0: one shard per process.
    config.data_shards = 0
    config.half_precision = False      # bfloat16 activations and matmuls; float32 params
    # On CPU XLA hands convolutions (and dots and reductions) to YNNPACK. False leaves the
    # training step's convolutions to XLA's own kernels, faster here (docs/speed.md).
    # Ignored on GPU and TPU.
    config.cpu_ynnpack_convolutions = False
    config.distributed = ml_collections.ConfigDict(dict(
        # 'host:port' of process 0; None: a single process, or a TPU pod (found by JAX).
        coordinator_address=ml_collections.config_dict.placeholder(str),
        num_processes=1,               # processes in the job
        process_id=0,                  # this process's index, 0 .. num_processes - 1
    ))

    # Bookkeeping.
    config.seed = 0                    # init, data order, augmentation and dropout
    config.log_every_steps = 20        # progress bar and TensorBoard refresh
    # Training steps per call from Python, unrolled in one program: >1 hides the host's
    # per-step dispatch where a step is short, at a longer first compile. Divides
    # log_every_steps; any value gives the same run up to float rounding. Faster steps, slower
    # first compile (docs/speed.md): for long runs.
    config.steps_per_dispatch = 1
    config.checkpoint_every_steps = 200  # also checkpoint every this many steps (-1: epochs only)
    config.max_checkpoints_to_keep = 3
    return config
