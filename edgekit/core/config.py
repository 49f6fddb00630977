"""Configuration of every stage: frozen dataclasses and str enums, validated on construction."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from edgekit.core.augment import parse_augment
from edgekit.core.errors import EdgekitError


class Arch(str, Enum):
    """Built-in network architectures."""

    MLP = "mlp"
    CNN = "cnn"
    CNN_GAP = "cnn_gap"  # conv stages -> global average pooling -> softmax: no dense hidden layer


class Activation(str, Enum):
    """Fast activations the guidance recommends for low-latency models."""

    RELU = "relu"
    LEAKY_RELU = "leaky_relu"
    # The guidance's default (ELU) and self-normalizing (SELU) activations. In an int8 file an
    # ELU stays float between DEQUANTIZE/QUANTIZE (the export says so); SELU is built in a form
    # that quantizes well (edgekit.workstation.train.activations.SELU).
    ELU = "elu"
    SELU = "selu"


class Init(str, Enum):
    """Kernel initialization of the hidden layers: He (ReLU family, ELU) or LeCun (SELU)."""

    HE = "he"
    LECUN = "lecun"


class Optimizer(str, Enum):
    """Optimizer of training (pruning and clustering fine-tune with Adam)."""

    ADAM = "adam"
    NADAM = "nadam"
    MOMENTUM = "momentum"  # SGD with Nesterov momentum 0.9
    RMSPROP = "rmsprop"


class LrSchedule(str, Enum):
    """Learning-rate schedule of training; `learning_rate` is its starting (cosine, constant)
    or peak (1cycle) rate."""

    COSINE = "cosine"  # cosine decay to 2% over the epochs (edgekit's pipeline so far)
    CONSTANT = "constant"
    ONE_CYCLE = "1cycle"  # linear up over 30% of the steps, then linear down (see schedules.py)


class SparsityStructure(str, Enum):
    """Where pruning puts its zeros (TF-MOT `prune_low_magnitude`); see docs/sparsity.md."""

    UNSTRUCTURED = "unstructured"  # any weight (the smallest files after gzip)
    # Blocks of 4 consecutive input weights of one output (TFLite's 1x4): float32 files
    # sparse-encoded this way run the runtime's sparse FULLY_CONNECTED kernel. Dense only.
    BLOCK_1X4 = "1x4"
    # 2 zeros in every 4 input weights (Dense, and Conv2D with input channels a multiple of 4);
    # sparsity is then 0.5 whatever --sparsity says.
    M_BY_N_2_4 = "2:4"


def parse_sparsity_structure(value: object) -> SparsityStructure:
    """Turn a string such as '1x4' into a SparsityStructure, with a clear error otherwise."""
    return _choice(SparsityStructure, value, "sparsity structure")


class Precision(str, Enum):
    """Precision of an exported .tflite file."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    INT8 = "int8"
    DYNAMIC = "dynamic"  # int8 weights, float activations ("dynamic range")
    INT16X8 = "int16x8"  # int16 activations, int8 weights (no XNNPACK kernels: slow)
    # By Google's ai-edge-quantizer from the float32 file (pip install 'edgekit[int4]'):
    INT4 = "int4"  # int4 weights, activations quantized on the fly ("dynamic")
    INT4_WEIGHT_ONLY = "int4_weight_only"  # int4 weights widened to float at load
    INT4_INT8 = "int4_int8"  # mixed: the layers matching int4_layers int4, the rest int8


# Default accuracy budget: a file may lose at most this many points of test accuracy against the
# float Keras model it was made from, or it is not written.
DEFAULT_MAX_ACCURACY_DROP = 1.0


# Default epochs per architecture: (training, pruning fine-tuning). The cnn costs ~20x the
# mlp per epoch and converges in fewer epochs; the cnn_gap costs about as much as the cnn per
# epoch and needs more epochs (no dense head to fit the classes quickly).
DEFAULT_EPOCHS: dict[str, tuple[int, int]] = {"mlp": (20, 8), "cnn": (10, 6), "cnn_gap": (20, 8)}

# Dropout after the cnn's dense head when `dropout` is not given (the mlp has none by default).
DEFAULT_CNN_DROPOUT = 0.3

DEFAULT_PRECISIONS: tuple[Precision, ...] = (Precision.FLOAT32, Precision.FLOAT16, Precision.INT8)

# Precisions a sparse-encoded file may not have, and why (measured: docs/sparsity.md). Only
# float32 has a sparse kernel that computes right and runs faster (FULLY_CONNECTED, 1x4 blocks).
SPARSE_ENCODING_REFUSED: dict[Precision, str] = {
    Precision.FLOAT16: (
        "float16 weights sparse-encoded in 1x4 blocks feed a DEQUANTIZE that reads them as "
        "dense: the file loads and answers wrong (10% accuracy)"
    ),
    Precision.DYNAMIC: (
        "dynamic range with sparse weights answers wrong under XNNPACK (1x16 blocks: 10% "
        "accuracy) or fails to load (DENSIFY)"
    ),
    Precision.INT8: "int8 with a DENSIFY op fails to load under XNNPACK",
    Precision.INT16X8: "int16x8 has no sparse kernel",
    **dict.fromkeys(
        (Precision.INT4, Precision.INT4_WEIGHT_ONLY, Precision.INT4_INT8),
        "int4 files are made by ai-edge-quantizer, which writes no sparse encoding",
    ),
}


_E = TypeVar("_E", bound=Enum)


def _choice(enum: type[_E], value: object, what: str) -> _E:
    if isinstance(value, enum):
        return value
    try:
        return enum(str(value).strip().lower().replace("-", "_"))
    except ValueError:
        choices = ", ".join(e.value for e in enum)
        raise EdgekitError(f"unknown {what} {value!r}: expected one of {choices}") from None


def parse_precision(value: object) -> Precision:
    """Turn a string such as 'int8' into a Precision, with a clear error for unknown ones."""
    return _choice(Precision, value, "precision")


def _rate(name: str, value: float, example: str) -> None:
    if not 0.0 <= value < 1.0:
        raise EdgekitError(
            f"{name} must be in [0, 1), got {value}: it is the fraction of units dropped; "
            f"pass e.g. {example} (0 turns it off)"
        )


_C = TypeVar("_C", bound="_DictConfig")

# Names of the fields that hold a seed (ExportConfig's draws the calibration samples): a
# PipelineConfig's `seed` is handed down into each of them.
SEED_FIELDS = ("seed", "calibration_seed")


class _DictConfig:
    """to_dict / from_dict of a config dataclass (JSON-ready values; validated on the way in)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (enums become their values, tuples lists)."""
        return dict(to_dict(self))

    @classmethod
    def from_dict(cls: type[_C], d: Mapping[str, Any]) -> _C:
        """The config of a dict to_dict wrote (lists become tuples, strings enums), validated.

        Missing keys take their defaults.

        Raises:
            EdgekitError: not a dict, an unknown key, or an invalid value (one line).
        """
        return _from_dict(cls, d)


def _from_dict(cls: type[_C], d: Any, **fields: Any) -> _C:
    what = cls.__name__
    if not isinstance(d, Mapping):
        raise EdgekitError(f"{what} must be a dict of its fields, got {type(d).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [str(k) for k in d if k not in names]
    if unknown:
        raise EdgekitError(
            f"unknown key {unknown[0]!r} in {what}: expected some of {', '.join(names)}"
        )
    try:
        return cls(**{**d, **fields})
    except TypeError as e:  # a value of the wrong type (e.g. "two" for epochs)
        raise EdgekitError(f"{what}: a value has the wrong type ({e})") from None


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise EdgekitError(f"{name} must be > 0, got {value!r}: pass a positive number")


@dataclass(frozen=True)
class DataConfig(_DictConfig):
    """Where the data comes from and how much of it is used.

    Args:
        source: 'fashion_mnist', the path of a .npz with x_train, y_train, x_test, y_test, or
            a folder of images with one subfolder per class (see edgekit.core.data.images).
        data_dir: folder holding the four Fashion-MNIST IDX .gz files (searched first).
        validation_size: images held out of the training set for early stopping; None: 10%
            of the training samples, at most 5,000 (edgekit.core.data.sizes).
        train_samples: use only the first N training samples after a seeded shuffle.
        test_samples: use only the first N test samples, in file order (never shuffled).
        download: allow the last-resort download of Fashion-MNIST into the Keras cache.
        input_shape: (image folders) the sample shape the model takes, (H, W) for grayscale
            or (H, W, C); None: the first image's size and colour, or `image_size`.
        image_size: (image folders) resize every image to (height, width).
        test_split: (image folders without train/ and test/) fraction of each class tested.
        skip_bad_images: (image folders) go on without files that are not readable images.
        pixel_scale: uint8 pixels are multiplied by this before the model; None: 1/255 (the
            model takes [0, 1]). 1.0 for a model that rescales raw pixels itself.
        class_names: the model's classes in its output order; the data's labels are renumbered
            to it (see edgekit.core.data.classes). None: the data's own order.
    """

    source: str = "fashion_mnist"
    data_dir: str | None = None
    validation_size: int | None = None
    train_samples: int | None = None
    test_samples: int | None = None
    seed: int = 42
    download: bool = True
    input_shape: tuple[int, ...] | None = None
    image_size: tuple[int, int] | None = None
    test_split: float = 0.2
    skip_bad_images: bool = False
    pixel_scale: float | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        if self.pixel_scale is not None and not self.pixel_scale > 0:
            raise EdgekitError(
                f"pixel_scale must be > 0, got {self.pixel_scale}: e.g. 1 for a model that "
                "rescales raw pixels itself"
            )
        for name in ("input_shape", "image_size"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(int(d) for d in v))
                if min(getattr(self, name), default=0) < 1:
                    raise EdgekitError(f"{name} must hold positive sizes, got {v}")
        if self.input_shape is not None and len(self.input_shape) not in (2, 3):
            raise EdgekitError(
                f"an image input shape is (height, width) or (height, width, channels), got "
                f"{self.input_shape}"
            )
        if not 0.0 < self.test_split < 1.0:
            raise EdgekitError(
                f"test_split must be a fraction in (0, 1), got {self.test_split}: e.g. 0.2"
            )
        if self.validation_size is not None and self.validation_size < 1:
            raise EdgekitError(
                f"validation_size must be >= 1, got {self.validation_size}: "
                "a validation split is needed for early stopping"
            )
        for name in ("train_samples", "test_samples"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise EdgekitError(f"{name} must be > 0, got {v}: pass a positive count or omit it")


@dataclass(frozen=True)
class TrainConfig(_DictConfig):
    """The guidance's regularized network and how it is trained.

    Args:
        l1, l2: kernel regularization factors of the hidden layers (both > 0: l1_l2).
        dropout: Dropout rate after the top `dropout_layers` hidden layers; None: the
            architecture's default (0 for mlp, 0.3 after the cnn's dense head).
        dropout_layers: how many hidden Dense layers, from the top, get (alpha) dropout.
        alpha_dropout: AlphaDropout rate (keeps SELU's self-normalization; SELU only).
        max_norm: max-norm constraint on every hidden kernel's columns (None: off).
        init: 'he' (he_normal) or 'lecun' (lecun_normal) for the hidden kernels.
        optimizer: adam, nadam, momentum (SGD, Nesterov 0.9) or rmsprop.
        lr_schedule: cosine (decay to 2%), constant, or 1cycle (learning_rate is the peak).
        standardize: a Normalization layer first, adapted to the training set (mean 0, std 1).
        distributed: train (and prune) on several workers with MultiWorkerMirroredStrategy,
            as TF_CONFIG describes them (edgekit.workstation.train.distributed); the chief writes
            files.
        augment: data augmentation of every training batch (training, and the fine-tuning of
            pruning, clustering and QAT), normalized items such as ("flip:horizontal",
            "translate:0.1"); never part of the model (edgekit.core.augment).
    """

    arch: Arch = Arch.MLP
    hidden_units: tuple[int, ...] = (300, 100)
    l1: float = 1e-5
    activation: Activation = Activation.RELU
    leaky_alpha: float = 0.2
    batch_norm: bool = True
    epochs: int | None = None  # None: DEFAULT_EPOCHS of the architecture
    batch_size: int = 128
    learning_rate: float = 1e-3
    patience: int = 8
    seed: int = 42
    l2: float = 0.0
    dropout: float | None = None
    dropout_layers: int = 1
    alpha_dropout: float = 0.0
    max_norm: float | None = None
    init: Init = Init.HE
    optimizer: Optimizer = Optimizer.ADAM
    lr_schedule: LrSchedule = LrSchedule.COSINE
    standardize: bool = False
    distributed: bool = False
    augment: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch", _choice(Arch, self.arch, "architecture"))
        object.__setattr__(self, "augment", parse_augment(self.augment))
        object.__setattr__(self, "activation", _choice(Activation, self.activation, "activation"))
        object.__setattr__(self, "init", _choice(Init, self.init, "initialization"))
        object.__setattr__(self, "optimizer", _choice(Optimizer, self.optimizer, "optimizer"))
        object.__setattr__(
            self, "lr_schedule", _choice(LrSchedule, self.lr_schedule, "learning-rate schedule")
        )
        object.__setattr__(self, "hidden_units", tuple(int(u) for u in self.hidden_units))
        if not self.hidden_units or min(self.hidden_units) <= 0:
            raise EdgekitError(
                f"hidden_units must be positive sizes, got {self.hidden_units}: e.g. 300,100"
            )
        for name in ("l1", "l2"):
            if getattr(self, name) < 0:
                raise EdgekitError(
                    f"{name} must be >= 0, got {getattr(self, name)}: pass e.g. 1e-5, or 0 to "
                    f"turn {name.upper()} off"
                )
        self._check_dropout()
        if self.max_norm is not None and not self.max_norm > 0:
            raise EdgekitError(
                f"max_norm must be > 0, got {self.max_norm}: pass e.g. 1 (the largest norm a "
                "kernel column may have), or omit it"
            )
        _positive("epochs", self.max_epochs)
        _positive("batch_size", self.batch_size)
        _positive("learning_rate", self.learning_rate)
        if self.patience < 0:
            raise EdgekitError(
                f"patience must be >= 0, got {self.patience}: pass the epochs to wait, e.g. 8"
            )

    def _check_dropout(self) -> None:
        if self.dropout is not None:
            _rate("dropout", self.dropout, "0.2")
        _rate("alpha_dropout", self.alpha_dropout, "0.1")
        if self.alpha_dropout > 0 and self.activation is not Activation.SELU:
            raise EdgekitError(
                f"alpha_dropout={self.alpha_dropout:g} with the {self.activation.value} "
                "activation: alpha dropout keeps SELU's self-normalization; with "
                f"{self.activation.value} use --dropout (--alpha-dropout 0 turns it off)"
            )
        if self.alpha_dropout > 0 and (self.dropout or 0) > 0:
            raise EdgekitError(
                f"both dropout={self.dropout:g} and alpha_dropout={self.alpha_dropout:g}: pass "
                "one of them (alpha dropout for selu, dropout for the others)"
            )
        hidden = self.dense_hidden_layers
        if not 1 <= self.dropout_layers <= hidden:
            raise EdgekitError(
                f"dropout_layers must be in [1, {hidden}] (the {self.arch.value}'s hidden Dense "
                f"layers), got {self.dropout_layers}: pass e.g. 1 for the top one"
            )

    @property
    def max_epochs(self) -> int:
        """Epochs to train at most (early stopping may end sooner)."""
        return DEFAULT_EPOCHS[self.arch.value][0] if self.epochs is None else self.epochs

    @property
    def dense_hidden_layers(self) -> int:
        """Hidden Dense layers of the architecture (dropout goes after the top ones)."""
        return len(self.hidden_units) if self.arch is Arch.MLP else 1

    @property
    def dropout_rate(self) -> float:
        """The Dropout rate used: `dropout`, or the architecture's default when it is None."""
        if self.dropout is not None:
            return self.dropout
        return DEFAULT_CNN_DROPOUT if self.arch is Arch.CNN else 0.0


@dataclass(frozen=True)
class PruneConfig(_DictConfig):
    """TF-MOT magnitude pruning with a polynomial-decay schedule."""

    target_sparsity: float = 0.8
    initial_sparsity: float = 0.0
    # None: DEFAULT_EPOCHS of the architecture a PipelineConfig trains (mlp's for a given model)
    epochs: int | None = None
    batch_size: int = 128
    learning_rate: float = 5e-4
    frequency: int = 100
    # The schedule ends this fraction of the way through fine-tuning; the rest recovers accuracy.
    ramp_fraction: float = 0.6
    # Kernels smaller than this stay dense (e.g. a first 3x3x1x32 conv: 288 weights).
    min_weights: int = 512
    seed: int = 42
    # Where the zeros go: any weight, 1x4 blocks (a sparse float32 kernel) or 2:4.
    structure: SparsityStructure = SparsityStructure.UNSTRUCTURED

    def __post_init__(self) -> None:
        object.__setattr__(self, "structure", parse_sparsity_structure(self.structure))
        if not 0.0 <= self.target_sparsity < 1.0:
            raise EdgekitError(
                f"sparsity must be in [0, 1), got {self.target_sparsity}: e.g. 0.8 for 80% zeros"
            )
        if self.structure is SparsityStructure.M_BY_N_2_4 and self.target_sparsity != 0.5:
            raise EdgekitError(
                f"2:4 sparsity is 0.5 (2 zeros in every 4 weights), got sparsity "
                f"{self.target_sparsity}: pass --sparsity 0.5 or omit it"
            )
        if not 0.0 <= self.initial_sparsity <= self.target_sparsity:
            raise EdgekitError(
                f"initial_sparsity must be in [0, target_sparsity={self.target_sparsity}], "
                f"got {self.initial_sparsity}: pass e.g. 0"
            )
        _positive("prune epochs", self.max_epochs)
        _positive("batch_size", self.batch_size)
        _positive("learning_rate", self.learning_rate)
        _positive("frequency", self.frequency)
        if self.min_weights < 0:
            raise EdgekitError(
                f"min_weights must be >= 0, got {self.min_weights}: pass e.g. 512 (0 prunes all)"
            )
        if not 0.0 < self.ramp_fraction <= 1.0:
            raise EdgekitError(
                f"ramp_fraction must be in (0, 1], got {self.ramp_fraction}: pass e.g. 0.6"
            )

    @property
    def max_epochs(self) -> int:
        """Fine-tuning epochs: `epochs`, or the mlp default when it is None."""
        return DEFAULT_EPOCHS[Arch.MLP.value][1] if self.epochs is None else self.epochs


@dataclass(frozen=True)
class ExportConfig(_DictConfig):
    """Which .tflite files to write and how they are checked."""

    precisions: tuple[Precision, ...] = DEFAULT_PRECISIONS
    # None: all training samples, at most 500 (edgekit.core.data.sizes).
    calibration_samples: int | None = None
    # Seed of the draw of calibration samples from the training set (full-integer recipes);
    # None: the data seed in a PipelineConfig, else 42.
    calibration_seed: int | None = None
    # Export-time check on real test samples; None = the whole test set.
    verify_samples: int | None = None
    # Top-1 agreement with Keras every file must reach; None = no agreement floor (agreement is
    # reported; the accuracy budget below is the gate).
    min_agreement: float | None = None
    name: str | None = None  # file name stem; default derived from data + arch + sparsity
    # The gate: a file losing more than this many points of test accuracy against the float
    # Keras model is reported and not written.
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP
    # Also try the cheaper variants (int4, dynamic, int8 with float layers, QAT, int16x8, ...),
    # cheapest first, until one fits the budget; the smallest file within it is recommended.
    search: bool = False
    # Keep these layers float inside an extra int8 file: "NAME,NAME" or "auto:K" (the K worst).
    float_layers: str | None = None
    # int4_int8 files: regex of the layers given int4 weights; None = the largest layer.
    int4_layers: str | None = None
    # MC dropout: also write float32 and int8 files averaging N dropout passes, for each N.
    mc_samples: tuple[int, ...] = ()
    mc_masks: str = "fixed"  # "fixed" (seeded, stored in the file) or "random" (in the graph)
    # Also write these precisions sparse-encoded (`{stem}_sparse_{precision}.tflite`): float32
    # only (see SPARSE_ENCODING_REFUSED). None: float32 when pruned in 1x4 blocks (the build
    # rule); () none.
    sparse_encoding: tuple[Precision, ...] | None = ()
    # A sparse file is written only if its p50 at 1 thread is at least this many times faster
    # than its dense twin's, measured in the same run.
    sparse_min_speedup: float = 1.1

    def __post_init__(self) -> None:
        precisions = tuple(parse_precision(p) for p in self.precisions)
        if not precisions:
            raise EdgekitError(
                "no precision given: pass at least one of " + ", ".join(p.value for p in Precision)
            )
        object.__setattr__(self, "precisions", tuple(dict.fromkeys(precisions)))
        if self.calibration_samples is not None and self.calibration_samples < 1:
            raise EdgekitError(
                f"calibration_samples must be >= 1, got {self.calibration_samples}: "
                "int8 needs a representative sample of training data (e.g. 500)"
            )
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise EdgekitError(
                f"min_agreement must be in [0, 1], got {self.min_agreement}: e.g. 0.98"
            )
        object.__setattr__(self, "mc_samples", tuple(dict.fromkeys(self.mc_samples)))
        for n in self.mc_samples:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise EdgekitError(f"--mc-samples must be >= 1, got {n!r}: e.g. 10 or 1,5,10,30")
        if self.mc_masks not in ("fixed", "random"):
            raise EdgekitError(f"--mc-masks must be fixed or random, got {self.mc_masks!r}")
        if not (0.0 <= self.max_accuracy_drop <= 100.0):
            raise EdgekitError(
                f"max_accuracy_drop must be in [0, 100] points, got {self.max_accuracy_drop}: "
                "e.g. 1 to allow a file one point below the float model"
            )
        if self.float_layers is not None:
            from edgekit.core.float_layers import parse_float_layers

            parse_float_layers(self.float_layers)  # one-line error for a bad spec, early
        if self.int4_layers is not None:
            import re

            try:
                re.compile(self.int4_layers)
            except re.error as e:
                raise EdgekitError(
                    f"int4_layers {self.int4_layers!r} is not a regular expression ({e}): pass "
                    "e.g. 'dense1' or 'dense1|dense2'"
                ) from None
        if self.verify_samples is not None and self.verify_samples < 1:
            raise EdgekitError(
                f"verify_samples must be >= 1, got {self.verify_samples}: pass e.g. 1000"
            )
        self._check_sparse()

    def _check_sparse(self) -> None:
        if self.sparse_encoding is not None:
            sparse = tuple(dict.fromkeys(parse_precision(p) for p in self.sparse_encoding))
            object.__setattr__(self, "sparse_encoding", sparse)
            for p in sparse:
                if p in SPARSE_ENCODING_REFUSED:
                    raise EdgekitError(
                        f"--sparse-encoding {p.value} refused: {SPARSE_ENCODING_REFUSED[p]}; "
                        "sparse-encode float32 only (--sparse-encoding float32)"
                    )
        if not self.sparse_min_speedup > 0:
            raise EdgekitError(
                f"sparse_min_speedup must be > 0, got {self.sparse_min_speedup}: pass e.g. 1.1 "
                "(a sparse file must be 10% faster than its dense twin)"
            )


@dataclass(frozen=True)
class PipelineConfig(_DictConfig):
    """Everything one `edgekit export` run needs."""

    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig | None = field(default_factory=PruneConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    output_dir: str = "artifacts"
    # Also write an int8 file made by quantization-aware training (`--qat`).
    qat: QatConfig | None = None
    # Cluster the kernels after pruning, before folding and export (`--clusters N`).
    cluster: ClusterConfig | None = None
    # The run's one seed, handed down into every config's seed field (SEED_FIELDS); None:
    # each config keeps its own.
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.seed is not None:
            for f in dataclasses.fields(self):
                part = getattr(self, f.name)
                if dataclasses.is_dataclass(part) and not isinstance(part, type):
                    seeds = {n: self.seed for n in SEED_FIELDS if hasattr(part, n)}
                    object.__setattr__(self, f.name, dataclasses.replace(part, **seeds))
        if self.export.calibration_seed is None:  # calibrate with the run's seed
            export = dataclasses.replace(self.export, calibration_seed=self.data.seed)
            object.__setattr__(self, "export", export)
        if self.prune is not None and self.prune.epochs is None:  # the architecture's default
            epochs = DEFAULT_EPOCHS[self.train.arch.value][1]
            object.__setattr__(self, "prune", dataclasses.replace(self.prune, epochs=epochs))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PipelineConfig:
        """The PipelineConfig of a dict to_dict wrote, every part validated (see _DictConfig).

        Example:
            >>> config = PipelineConfig(seed=7)
            >>> PipelineConfig.from_dict(config.to_dict()) == config
            True
        """
        parts: dict[str, Any] = {}
        if isinstance(d, Mapping):
            for name, part_cls in _PARTS.items():
                if d.get(name) is not None:
                    parts[name] = part_cls.from_dict(d[name])
        return _from_dict(cls, d, **parts)


@dataclass(frozen=True)
class QatConfig(_DictConfig):
    """Quantization-aware fine-tuning with TF-MOT (edgekit.workstation.train.qat)."""

    epochs: int = 2
    batch_size: int = 128
    learning_rate: float = 1e-4
    seed: int = 42

    def __post_init__(self) -> None:
        _positive("qat epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        _positive("learning_rate", self.learning_rate)


@dataclass(frozen=True)
class ClusterConfig(_DictConfig):
    """Weight clustering with TF-MOT (workstation.train.cluster): kmeans++ centroids, fine-tuned."""

    clusters: int = 16
    epochs: int = 2
    batch_size: int = 128
    learning_rate: float = 1e-4
    seed: int = 42
    preserve_sparsity: bool | None = None  # None: when the model has zeros (it was pruned)
    # Kernels smaller than this are left unclustered (e.g. a 32x10 output kernel: 320 weights).
    min_weights: int = 512

    def __post_init__(self) -> None:
        if self.clusters < 2:
            raise EdgekitError(
                f"clusters must be >= 2, got {self.clusters}: weight clustering with one "
                "centroid makes every weight equal; pass e.g. 16"
            )
        if self.preserve_sparsity and self.clusters < 3:
            raise EdgekitError(
                f"clusters must be >= 3 when sparsity is preserved, got {self.clusters}: one "
                "centroid is held at zero; pass e.g. 16"
            )
        _positive("cluster epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        _positive("learning_rate", self.learning_rate)
        if self.min_weights < 0:
            raise EdgekitError(
                f"min_weights must be >= 0, got {self.min_weights}: pass e.g. 512 (0 clusters all)"
            )


_PARTS: dict[str, type[_DictConfig]] = {
    "data": DataConfig,
    "train": TrainConfig,
    "prune": PruneConfig,
    "export": ExportConfig,
    "qat": QatConfig,
    "cluster": ClusterConfig,
}


def to_dict(config: Any) -> Any:
    """A JSON-ready dict of a config dataclass (enums become their values)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Enum):
        return config.value
    if isinstance(config, (tuple, list)):
        return [to_dict(v) for v in config]
    return config
