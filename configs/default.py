"""The project's default: AirNet (airbench's layout and recipe, depthwise-separable and
dilated), 192,544 parameters.

Run:
  python main.py --config configs/default.py --config.data.dataset=folder:/path/to/cifar10

Expected result (JPEG q75 copy of CIFAR-10): 87.48% test accuracy after 15 epochs with the
test-time flips and 1-pixel shifts, mean of seeds 0-2 (87.55, 87.33, 87.55%), 35-47 min of
training each on a shared 2-core x86-64 CPU with jax 0.12 (docs/airnet.md).

Every field of every config is defined here, once: the code reads no other defaults. Each
section goes to the part of the code it is named after (docs/design.md).
"""
import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0                    # init, data order, augmentation and dropout

    # Model: a name in flax_cifar.models.MODELS, and the keyword arguments of its class.
    config.model = 'airnet'
    config.model_args = ml_collections.ConfigDict(dict(
        whiten_kernel=2,                  # the frozen whitening conv's patch side
        whiten_features=24,               # 2 x 2*2*3: every patch direction and its negative
        block_features=(64, 192, 256),    # one block per width; each pools 2x2
        block_depths=(2, 2, 2),           # convs per block
        block_dilations=(2, 2, 1),        # kernel_dilation of each block's later convs
        pool_after=(1, 1, 1),             # each block's 2x2 max pool follows this conv
        group_channels=1,                 # channels per group of the undilated 3x3 kernels
        block_expansions=(1, 1, 1),       # >1: inverted residuals (separable convs' inputs
                                          # widened this many times by a 1x1 conv first)
        dense_convs=1,                    # block 1's first 3x3 conv dense (24 inputs)
        depthwise=True,                   # true depthwise 3x3 convs elsewhere
        residual=False,                   # shortcuts around each block's later convs
        activation='gelu',
        dirac=True,                       # identity-initialized convs
        bn_scale=False,                   # BatchNorm scales held at 1
        bn_momentum=0.6,                  # fast running statistics (PyTorch's 0.4)
        head_scale=1 / 9,                 # logits scaled down
    ))
    config.half_precision = False      # bfloat16 activations and matmuls; float32 params

    config.data = data = ml_collections.ConfigDict()
    # 'cifar10' from the TFDS catalog, 'folder:/path' (root/{train,test}/<class>/*) or
    # 'arrays:/path' (python -m flax_cifar.data.to_arrays); paths may be gs://.
    data.dataset = 'cifar10'
    # TFDS data_dir for catalog datasets (None: TFDS's default, ~/tensorflow_datasets).
    data.tfds_data_dir = config_dict.placeholder(str)
    # Decoded folder datasets are cached here (None: $XDG_CACHE_HOME or ~/.cache, /flax_cifar;
    # '': no cache). The cache key covers every file's name, size and mtime.
    data.cache_dir = config_dict.placeholder(str)
    # The network's input: 'mean_std' (CIFAR-10's per-channel statistics) or 'centered'
    # (pixels / 255 - 0.5).
    data.normalize = 'mean_std'
    # The training split is cut into this many equal shards; each process loads only its
    # own and every batch takes train.batch_size / shards images from each. The data order is
    # a function of (seed, shards): fix it (a multiple of the process count) to get the
    # same run on any number of hosts. 0: one shard per process.
    data.shards = 0

    # Augmentation, inside the jitted step (flax_cifar/data/augment.py), in this order.
    config.augment = augment = ml_collections.ConfigDict()
    augment.enabled = True             # False: none of the ops below but mixup and cutout
    augment.crop_padding = 2           # padding before the random 32x32 crop (0: no crop)
    augment.crop_pad_mode = 'reflect'  # pad with zeros ('constant'), reflected or repeated
                                       # ('edge') borders
    augment.flip = True                # random horizontal flips
    # Flips alternate instead: a fixed random half of the images is mirrored, and every image
    # is mirrored in odd epochs, so each is seen both ways every two epochs (airbench).
    augment.alternating_flip = True
    augment.rotate_degrees = 0.0       # turn by a uniform angle in +-this (0: off)...
    augment.rotate_p = 0.95            # ...this share of the images
    augment.sharpen_p = 0.0            # sharpen this share of the images (0: off)...
    augment.sharpen_factors = (1.0, 2.2)  # ...by a factor drawn from this range (1: unchanged)
    augment.color_jiggle_p = 0.0       # jiggle this share of the images' colours (0: off)...
    augment.color_jiggle = (0.1, 0.1, 0.5, 0.05)  # ...brightness, contrast, saturation, hue
    # Mixup: each image mixed with another by a weight drawn from [0, bound), both labels
    # weighted alike in the loss; the bound rises linearly to mixup_max over mixup_ramp of
    # the schedule's epochs (0: off).
    augment.mixup_max = 0.0
    augment.mixup_ramp = 0.5
    # Cutout: zero a square of this side (pixels) at a random place in each training image,
    # after normalization (so it takes the mean colour); 0: off.
    augment.cutout_size = 0

    # Patch whitening (airbench): this layer's kernel is set from the covariance of the
    # training images' patches (its top eigenvectors, scaled to unit variance, and their
    # negatives) and frozen; '': off.
    config.whitening = whitening = ml_collections.ConfigDict()
    whitening.layer = 'whiten_conv'
    # Added to each eigenvalue before its direction is scaled by 1 / sqrt(.): the weakest
    # directions (on JPEG copies, the decoder's artefacts) are amplified less (airbench: 5e-4).
    whitening.eps = 5e-4

    config.optim = optim = ml_collections.ConfigDict()
    optim.name = 'sgd'                 # 'sgd', 'adamw' or 'muon' (state/optim.py)
    # airbench's decoupled hyperparameters, for a mean loss over 1024 images: lr 11.5 /
    # (1 + 1 / (1 - 0.85)) = 1.5 per step, L2 0.0153 / 11.5 = 0.00133.
    optim.learning_rate = 1.5          # peak learning rate of the schedule
    optim.schedule = 'triangle'        # 'onecycle', 'warmup_cosine', 'triangle' or 'constant'
    optim.warmup_fraction = 0.23       # share of the steps spent rising to the peak
    optim.start_div_factor = 5.0       # onecycle and triangle start at learning_rate / this
    optim.final_div_factor = 0.2 / 0.07  # and end at the start value / this
    optim.momentum = 0.85              # SGD's (and Muon's companion SGD's)
    optim.nesterov = True
    optim.adam_b1 = 0.9                # AdamW's moment decays and epsilon
    optim.adam_b2 = 0.999
    optim.adam_eps = 1e-8
    optim.weight_decay = 0.00133       # SGD: L2; AdamW: decoupled, learning rate x this
    # Parameter rules: regexes matching whole parameter paths ('block1_conv1_bn/bias'); each
    # must match some parameter. frozen: never updated (besides the whitened kernel);
    # lr_mults, wd_mults: ((pattern, multiplier), ...), the first match wins; parameters no
    # pair matches get learning rate x 1 and weight decay x 0.
    optim.frozen = ()
    optim.lr_mults = (('.*_bn/bias', 64.0),)  # BatchNorm biases learn 64x faster (not decayed)
    optim.wd_mults = (('.*/kernel', 1.0),)  # decay conv and dense kernels only
    optim.frozen_after_epochs = ()     # ((pattern, epoch), ...): trained until that epoch
    # Muon (optim.name='muon'): dense and pointwise conv kernels orthogonalized
    # (optax.contrib) at this peak rate on the same schedule; SGD for the rest.
    optim.muon = ml_collections.ConfigDict(dict(
        learning_rate=0.0,
        momentum=0.6,                  # its Nesterov momentum (airbench's Muon)
        ns_steps=5,                    # Newton-Schulz iterations (airbench94_muon: 3)
        normalize_weights=False,       # airbench94_muon's kernel renormalization
    ))

    config.average = average = ml_collections.ConfigDict()
    # Evaluate a moving average of the weights and BatchNorm statistics, updated every step
    # with this decay; 0: the weights as they are.
    average.ema_decay = 0.0
    average.ema_warmup = True          # hold the decay below (1 + step) / (10 + step)
    # Lookahead (airbench): every `every` steps from epoch `start_epoch` on, a slow copy of
    # the weights moves towards them and they jump back to it; 0: off. The weights also take
    # the slow copy at each epoch's end (sync_each_epoch), or at the run's end only.
    average.lookahead = ml_collections.ConfigDict(dict(every=5, decay=0.95, power=3.0,
                                                       start_epoch=3, sync_each_epoch=True))

    config.train = train = ml_collections.ConfigDict()
    train.batch_size = 1024            # global batch, split over all devices
    train.epochs = 15
    train.steps = -1                   # -1: the epochs' full batches; >0: stop after these
    # The schedule (and mixup's ramp) span this many epochs; 0: train.epochs. Larger: the
    # run is the first train.epochs of a longer one.
    train.schedule_epochs = 0
    train.label_smoothing = 0.2        # 0 for plain cross-entropy
    train.log_every_steps = 8          # progress bar and TensorBoard refresh
    # Training steps per call from Python, unrolled in one program: >1 hides the host's
    # per-step dispatch where a step is short, at a longer first compile (docs/speed.md).
    # Divides log_every_steps; any value gives the same run up to float rounding.
    train.steps_per_dispatch = 1
    # On CPU XLA hands convolutions (and dots and reductions) to YNNPACK. False leaves the
    # training step's convolutions to XLA's own kernels, faster here (docs/speed.md).
    # Ignored on GPU and TPU.
    train.cpu_ynnpack_convolutions = False

    config.eval = evaluation = ml_collections.ConfigDict()
    evaluation.batch_size = 1000       # test-set batch; the last partial batch is masked
    # Test-time augmentation: average the logits of each test image and of its mirror image.
    evaluation.flip = True
    # Also average in each image shifted this many pixels down-right and up-left (reflected
    # borders), at half the weight (airbench's multi-crop); 0: off. --mode=evaluate reports
    # every view either way.
    evaluation.translate = 1

    config.checkpoint = checkpoint = ml_collections.ConfigDict()
    checkpoint.every_steps = 48        # also checkpoint every this many steps (-1: epochs only)
    checkpoint.max_to_keep = 3

    # Devices and hosts.
    config.distributed = ml_collections.ConfigDict(dict(
        # 'host:port' of process 0; None: a single process, or a TPU pod (found by JAX).
        coordinator_address=config_dict.placeholder(str),
        num_processes=1,               # processes in the job
        process_id=0,                  # this process's index, 0 .. num_processes - 1
    ))
    return config
