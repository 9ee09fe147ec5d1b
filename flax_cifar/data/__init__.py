"""The data path: datasets by name (sources), their decoded-array form (arrays), TFDS and
image folders (tfds_source), each process's rows on its devices (host_data), augmentation
inside the jitted step (augment). Shared types: data.types."""
