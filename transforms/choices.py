"""Defaults and named choices of odrecords' options, in a module without heavy imports: the
`--help` of every command shows them without loading Beam or TensorFlow."""

# Limits on one image, checked before it is decoded.
DEFAULT_MAX_IMAGE_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000

# The frames `odrecords create --exif-orientation` accepts (see `transforms.images.orientation`).
DISPLAYED = "displayed"
STORED = "stored"
AUTO = "auto"
IGNORE = "ignore"
OPTIONS = (AUTO, DISPLAYED, STORED, IGNORE)

# What `odrecords create --duplicates` does with duplicate images (see `transforms.duplicates`).
REPORT = "report"
SAME_SPLIT = "same-split"
POLICIES = (REPORT, SAME_SPLIT)

# How `odrecords create --reuse` decides that an image is unchanged since the previous build
# (see `transforms.builds.reuse`): its file's size and modification time, or its bytes' sha256.
STAT = "stat"
CONTENT = "content"
OFF = "off"
REUSE = (STAT, CONTENT, OFF)

# Versions `odrecords create --versions` keeps: the one just published and the ones before it.
DEFAULT_KEEP_VERSIONS = 3

# Images a build must have for worker processes to write its shards by default (`--processes`):
# starting them (a fork server importing Beam, then the workers) costs about a second of CPU.
POOL_MIN_IMAGES = 2000

# Shards sized from the data (`transforms.shard_count`). The size aimed at: within TFDS's
# range (64 MiB to 1 GiB), near its lower end, so medium datasets still get several files for
# the readers' interleaving and file-level shuffling.
TARGET_SHARD_BYTES = 128 << 20
# The size of a typical example: COCO 2017's JPEGs average about 160 kB (val2017: 5,000
# images, about 790 MB), and an example is its image's bytes and a few hundred more.
EXAMPLE_BYTES = 160_000
# In a split of `POOL_MIN_IMAGES` images or more, a shard per this many images, up to
# `PARALLEL_SHARDS`: 8 shards at 2,000 images, 32 (as many cores as most machines have,
# twice as many as many have) from 8,000.
PARALLEL_SHARD_IMAGES = 250
PARALLEL_SHARDS = 32
