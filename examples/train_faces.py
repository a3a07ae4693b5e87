"""Train a face-embedding network, evaluate it on unseen identities, export it (a SavedModel, or ONNX on PyTorch).

The whole path a face-recognition user takes, on a folder of identities (one
sub-folder per person), an insightface `.rec` training set (e.g. MS1MV2
`faces_emore`, read without MXNet) or a tensorflow-datasets name:

1. split the identities into training identities and held-out identities
   (open set: no held-out person is seen in training);
2. train a backbone (`--backbone`: a small CNN, IResNet or MobileFaceNet) with a
   margin head (`--head`), optionally with center loss (`--center-loss`), or with
   the triplet loss on P×K batches (`--triplet`); `--optimizer sgd` is
   arcface_torch's recipe;
3. evaluate verification on balanced pairs of held-out identities: 10-fold
   accuracy, AUC, EER and TAR at FAR 1e-3 / 1e-2; and / or on insightface's
   `.bin` verification sets during training (`--val lfw.bin,cfp_fp.bin`);
4. export the embedding network alone as a TensorFlow SavedModel serving
   L2-normalized embeddings (`keras_margin.export`; an ONNX file on the PyTorch
   backend, which cannot write SavedModels), check that the reloaded one gives
   the same embeddings, and write a JSON report.

Run, e.g. on the ORL faces (40 people × 10 images, grayscale):

    python examples/train_faces.py --data ../shared/data/faces/orl --channels 1 \\
        --head arcface --epochs 30 --output-dir faces_output

or the field's recipe on the CelebA crops: an insightface backbone, arcface_torch's SGD, training on
the identities of folds 0-6 of pairs.csv and verifying on the pairs of folds 7-9:

    python examples/train_faces.py --data ../shared/data/faces/celeba_subset/aligned_112 \\
        --pairs-csv ../shared/data/faces/celeba_subset/pairs.csv --backbone mobilefacenet \\
        --image-size 112 --optimizer sgd --batch-size 64 --epochs 20 --head arcface

or on an insightface training set, evaluated on its bins every 2,000 steps:

    python examples/train_faces.py --data faces_emore --image-size 112 \\
        --val faces_emore/lfw.bin,faces_emore/cfp_fp.bin --val-every-steps 2000
"""

import argparse
import contextlib
import csv
import json
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

import keras_margin  # noqa: E402
from keras_margin import data, evaluation  # noqa: E402
from keras_margin.serving import Embedder  # noqa: E402

HEADS = ("arcface", "cosface", "combined", "sphereface", "lsoftmax", "curricularface", "magface", "adaface",
         "elasticface-arc", "elasticface-cos", "softmax")
BACKBONES = ("small", "iresnet18", "iresnet50", "mobilefacenet")
# --scale when it is not given: the s = 16 this script's documented runs were measured with (the package's default
# in 0.1; the package now defaults to the papers' s = 64). The other heads take their own default (64).
SCRIPT_SCALES = {"arcface": 16.0, "cosface": 16.0, "combined": 16.0}


def make_head(name, num_classes, args):
    """The head `name` with the package defaults, except where an option overrides them.

    Two exceptions: without `--scale` ArcFace, CosFace and the combined head train at s = 16
    (`SCRIPT_SCALES`), the scale this script's documented runs used; and at its defaults
    `CombinedMarginHead` is ArcFace, so here it takes insightface's combined margin,
    cos(θ + 0.3) − 0.2 (`--margin` sets the 0.3).
    """
    if name == "softmax":
        return keras.layers.Dense(num_classes, name="softmax")
    options = {}
    if name not in ("sphereface", "lsoftmax"):
        if args.scale is not None:
            options["scale"] = args.scale
        elif name in SCRIPT_SCALES:
            options["scale"] = SCRIPT_SCALES[name]
        if args.margin_warmup_steps is not None:
            options["margin_warmup_steps"] = args.margin_warmup_steps
    if name.startswith("elasticface"):
        options.update(seed=args.seed, sorted_margins=args.sorted_margins)
        if args.margin_std is not None:
            options["margin_std"] = args.margin_std
    if args.margin is not None and name != "magface":
        options["margin"] = int(args.margin) if name in ("sphereface", "lsoftmax") else args.margin
    if name == "combined":
        options.update(m1=1.0, m2=options.pop("margin", 0.3), m3=0.2)  # insightface's combined setting
    layer = {
        "arcface": keras_margin.ArcMarginHead,
        "cosface": keras_margin.CosMarginHead,
        "combined": keras_margin.CombinedMarginHead,
        "sphereface": keras_margin.SphereMarginHead,
        "lsoftmax": keras_margin.LargeMarginHead,
        "curricularface": keras_margin.CurricularFaceHead,
        "magface": keras_margin.MagFaceHead,
        "adaface": keras_margin.AdaFaceHead,
        "elasticface-arc": keras_margin.ElasticArcMarginHead,
        "elasticface-cos": keras_margin.ElasticCosMarginHead,
    }[name]
    return layer(num_classes, **options)


def scale_argument(text):
    """`--scale`: a positive number, "auto" or "adaptive"."""
    return text if text in ("auto", "adaptive") else float(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--data", required=True,
                        help="a folder with one sub-folder per identity, an insightface .rec (or a folder "
                             "holding train.rec), or a tfds name")
    parser.add_argument("--val", default=None,
                        help="comma-separated insightface .bin verification sets to evaluate during training")
    parser.add_argument("--val-every-steps", type=int, default=None,
                        help="evaluate the --val sets every this many steps (default: every epoch)")
    parser.add_argument("--data-dir", default=None, help="tfds data_dir (also where a folder is prepared)")
    parser.add_argument("--split", default="train", help="tfds split to use (tfds names only)")
    parser.add_argument("--head", choices=sorted(HEADS), default="arcface",
                        help="the margin head, at the package defaults except --scale; combined: insightface's "
                             "m1 = 1, m2 = 0.3, m3 = 0.2 (at its defaults the combined head is arcface)")
    parser.add_argument("--scale", type=scale_argument, default=None,
                        help="s of the normalized heads: a number, auto or adaptive (default: 16 for arcface, "
                             "cosface and combined, as this script's documented runs; the head's own, 64, for "
                             "the others)")
    parser.add_argument("--margin", type=float, default=None,
                        help="the head's margin (default: the head's; magface: its margin range is kept)")
    parser.add_argument("--margin-warmup-steps", type=int, default=None,
                        help="the normalized heads: steps over which the margin ramps up (default: the head's)")
    parser.add_argument("--margin-std", type=float, default=None,
                        help="elasticface-*: σ of the drawn margins (default: the head's, 0.05)")
    parser.add_argument("--sorted-margins", action="store_true",
                        help="elasticface-*: the '+' variant, the largest margin to the smallest target cosine")
    parser.add_argument("--center-loss", action="store_true", help="add a CenterLossLayer on the embeddings")
    parser.add_argument("--center-loss-weight", type=float, default=0.01,
                        help="λ of the center loss (CenterLossLayer's default)")
    parser.add_argument("--triplet", action="store_true", help="train with TripletLoss on P×K batches, no head")
    parser.add_argument("--identities-per-batch", type=int, default=8, help="P of the P×K batches (--triplet)")
    parser.add_argument("--images-per-identity", type=int, default=4, help="K of the P×K batches (--triplet)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbone", choices=BACKBONES, default="small",
                        help="small: a 6-conv CNN for CPUs; the others: keras_margin.backbones")
    parser.add_argument("--optimizer", choices=("adam", "sgd", "momentum"), default="adam",
                        help="adam; sgd: arcface_torch's SGD (momentum 0.9, linear warm-up and polynomial decay "
                             "to 0, weight decay on kernels, the head's too, gradient norm clipped at --clip-norm); "
                             "momentum: plain SGD with momentum 0.9 at a constant learning rate")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="default: 1e-3 for adam, 0.1 × batch / 512 for sgd (arcface_torch's rule); for a "
                             "short run on a few hundred identities a margin head at --scale auto needs about 4× "
                             "that (docs/results/recipes.md)")
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="L2 weight decay on kernels (default: 5e-4 for sgd, 0 for adam)")
    parser.add_argument("--head-weight-decay", type=float, default=None,
                        help="L2 weight decay on the head's kernel (default: --weight-decay)")
    parser.add_argument("--embedding-bn", choices=("affine", "fixed-scale", "none"), default="affine",
                        help="--backbone small: the last layer, a BatchNormalization with learned scale and "
                             "offset, one whose scale is fixed at 1 (as insightface's backbones), or none")
    parser.add_argument("--clip-norm", type=float, default=5.0,
                        help="sgd: clip the global gradient norm at this value (arcface_torch: 5; 0: no clipping)")
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="sgd: epochs of linear learning-rate warm-up")
    parser.add_argument("--jit-compile", choices=("auto", "on", "off"), default="auto",
                        help="XLA for the training step; auto: off for iresnet / mobilefacenet on a machine "
                             "without GPU (TensorFlow's oneDNN convolutions are faster there), on otherwise")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="train under mixed_bfloat16 (the embedding and logits stay float32); for a GPU, "
                             "TPU or a CPU with AMX / AVX512-BF16: CPUs without them emulate bfloat16, slower")
    parser.add_argument("--pairs-csv", default=None,
                        help="a pairs.csv (fold,path1,path2,same; paths relative to its folder): train on the "
                             "identities of --train-folds, verify on the pairs of --test-folds")
    parser.add_argument("--train-folds", default="0-6", help="folds of --pairs-csv whose identities train")
    parser.add_argument("--test-folds", default="7-9", help="folds of --pairs-csv whose pairs are verified")
    parser.add_argument("--curves", action="store_true",
                        help="with --pairs-csv: verify the test pairs after every epoch, and log angle quantiles "
                             "(training features to class weights, genuine and impostor pairs; "
                             "keras_margin.callbacks.AngleStatistics) into the history")
    parser.add_argument("--litert-int8", action="store_true",
                        help="with --pairs-csv: also export an int8 LiteRT model (calibrated on 256 training "
                             "images) and verify the test pairs with it, to report what quantization costs")
    parser.add_argument("--export-bfloat16", action="store_true",
                        help="with --pairs-csv: also export a SavedModel that serves the trunk in bfloat16 "
                             "(export_embedding_model(precision='bfloat16')) and verify the test pairs with it")
    parser.add_argument("--max-images", type=int, default=None,
                        help="use only the first this many images of the dataset (e.g. to subsample MNIST)")
    parser.add_argument("--image-size", type=int, default=64, help="images are cropped and resized to this square")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3)
    parser.add_argument("--embedding-dim", type=int, default=128)
    parser.add_argument("--test-identities", type=float, default=None,
                        help="fraction of identities held out (default 0.2; 0 with --val: train on all)")
    parser.add_argument("--num-pairs", type=int, default=600, help="verification pairs of held-out identities")
    parser.add_argument("--output-dir", default="train_faces_output")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny settings, for tests")
    parser.add_argument("--mock-data", action="store_true", help="random tfds data (tfds.testing.mock_data)")
    args = parser.parse_args(argv)
    if args.test_identities is None:
        args.test_identities = 0.0 if args.val or args.pairs_csv else 0.2
    if args.learning_rate is None:
        args.learning_rate = 0.1 * args.batch_size / 512 if args.optimizer == "sgd" else 1e-3
    if args.weight_decay is None:
        args.weight_decay = 5e-4 if args.optimizer == "sgd" else 0.0
    args.val = [path for path in (args.val or "").split(",") if path]
    if args.smoke:
        args.epochs, args.image_size, args.embedding_dim, args.num_pairs = 1, 32, 16, 40
    return args


def load_identities(args):
    if args.data.endswith(".rec") or os.path.isfile(os.path.join(args.data, "train.rec")):
        return data.from_insightface_rec(args.data, channels=args.channels)
    if os.path.isdir(args.data):
        return data.from_folder(args.data, data_dir=args.data_dir, channels=args.channels)
    return data.from_tfds(args.data, split=args.split, data_dir=args.data_dir)


def embedding_network(image_size, channels, dim, embedding_bn="affine"):
    """A small residual-free CNN in insightface's output style: ... → BN → dropout → FC → BN.

    `embedding_bn`: the last BN learns scale and offset (`"affine"`), only the
    offset (`"fixed-scale"`, insightface's), or is left out (`"none"`).
    """
    images = keras.Input((image_size, image_size, channels), name="images")
    x = images
    for filters in (32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.PReLU(shared_axes=[1, 2])(x)
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.PReLU(shared_axes=[1, 2])(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.2)(x)
    x = keras.layers.Flatten()(x)
    if embedding_bn == "none":
        embeddings = keras.layers.Dense(dim, name="embedding")(x)
    else:
        x = keras.layers.Dense(dim, use_bias=False)(x)
        embeddings = keras.layers.BatchNormalization(scale=embedding_bn == "affine", name="embedding")(x)
    return keras.Model(images, embeddings, name="embedder")


def make_backbone(args):
    if args.backbone == "small":
        return embedding_network(args.image_size, args.channels, args.embedding_dim, args.embedding_bn)
    if args.channels != 3:
        raise SystemExit(f"--backbone {args.backbone} takes RGB images: use --channels 3")
    shape = (args.image_size, args.image_size, 3)
    if args.backbone == "mobilefacenet":
        return keras_margin.backbones.mobilefacenet(args.embedding_dim, input_shape=shape, name="embedder")
    return keras_margin.backbones.iresnet(int(args.backbone[len("iresnet"):]), args.embedding_dim,
                                          input_shape=shape, name="embedder")


class WarmupPolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """arcface_torch's PolyScheduler: linear warm-up from 0, then (1 − progress)² decay to 0."""

    def __init__(self, learning_rate, total_steps, warmup_steps):
        self.learning_rate = learning_rate
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = min(int(warmup_steps), self.total_steps - 1)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = self.learning_rate * step / max(self.warmup_steps, 1)
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        decay = self.learning_rate * keras.ops.square(1.0 - keras.ops.clip(progress, 0.0, 1.0))
        return keras.ops.where(step < self.warmup_steps, warmup, decay)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}


def use_xla(args):
    if args.jit_compile != "auto":
        return args.jit_compile == "on"
    return args.backbone == "small" or bool(tf.config.list_physical_devices("GPU"))


def make_optimizer(args, steps_per_epoch):
    if args.optimizer == "adam":
        return keras.optimizers.Adam(args.learning_rate)
    if args.optimizer == "momentum":
        return keras.optimizers.SGD(args.learning_rate, momentum=0.9)
    schedule = WarmupPolynomialDecay(args.learning_rate, args.epochs * steps_per_epoch,
                                     args.warmup_epochs * steps_per_epoch)
    return keras.optimizers.SGD(schedule, momentum=0.9, global_clipnorm=args.clip_norm or None)


def add_weight_decay(model, weight_decay, head=None, head_weight_decay=None):
    """PyTorch-style (coupled) L2 decay: weight_decay·w added to the gradient of every kernel.

    Kernels of convolutions, dense layers and the margin head get it; BN and
    PReLU parameters do not, as in arcface_torch. `head_weight_decay`, when
    given, replaces it for the kernel of `head`.
    """
    head_variables = {id(v) for v in head.trainable_variables} if head is not None else set()
    for variable in model.trainable_variables:
        if not variable.path.endswith("kernel"):  # also depthwise_kernel
            continue
        decay = weight_decay
        if id(variable) in head_variables and head_weight_decay is not None:
            decay = head_weight_decay
        if decay:
            variable.regularizer = keras.regularizers.L2(decay / 2)


def curve_callbacks(args, embedder, head, train_set, test_pairs):
    """Per-epoch verification of the test pairs and angle statistics (`--curves`)."""
    preprocess = data.face_preprocessing(args.image_size, args.channels)
    images, labels = next(iter(train_set.batches(1024, preprocess, labels_as_input=False, shuffle=True,
                                                 seed=args.seed)))
    first, second = (load_images(args, paths) for paths in list(zip(*test_pairs))[:2])
    same = np.array([s for _, _, s in test_pairs])
    pairs = tf.data.Dataset.from_tensor_slices((first, second, same)).batch(256)
    return [
        keras_margin.callbacks.VerificationCallback({"test_pairs": pairs}, embedder, flip=True, num_folds=10,
                                                    far_targets=(1e-3, 1e-2)),
        keras_margin.callbacks.AngleStatistics(embedder, head, images.numpy(), labels.numpy(),
                                               pairs=(first, second, same)),
    ]


def train(args, train_set, test_pairs=None):
    """Returns the trained embedding network, the History and the .bin verification callback (or None)."""
    embedder = make_backbone(args)
    preprocess = data.face_preprocessing(args.image_size, args.channels, flip=True, seed=args.seed)
    num_images = len(train_set.labels())
    steps_per_epoch = max(num_images // (args.identities_per_batch * args.images_per_identity
                                         if args.triplet else args.batch_size), 1)
    optimizer = make_optimizer(args, steps_per_epoch)
    callbacks = []
    if args.val:
        callbacks.append(keras_margin.callbacks.VerificationCallback(
            args.val, embedder, every_steps=args.val_every_steps, num_folds=10,
            far_targets=(1e-3, 1e-2), verbose=1,
        ))
    if args.triplet:
        batches = data.pk_batches(
            train_set, args.identities_per_batch, args.images_per_identity, preprocess=preprocess, seed=args.seed,
            labels_as_input=False,
        )
        add_weight_decay(embedder, args.weight_decay)
        embedder.compile(optimizer=optimizer, loss=keras_margin.losses.TripletLoss(), jit_compile=use_xla(args))
        history = embedder.fit(batches, epochs=args.epochs, verbose=2, callbacks=callbacks)
        return embedder, history, (callbacks or [None])[0]

    images = keras.Input(embedder.input_shape[1:], name="images")
    labels = keras.Input((), dtype="int32", name="labels")
    embeddings = embedder(images)
    if args.center_loss:
        embeddings = keras_margin.CenterLossLayer(
            train_set.num_classes, weight=args.center_loss_weight, name="center_loss_layer"
        )(embeddings, labels=labels)
    head = make_head(args.head, train_set.num_classes, args)
    logits = head(embeddings) if args.head == "softmax" else head(embeddings, labels=labels)
    model = keras.Model([images, labels], logits, name="train_model")
    add_weight_decay(model, args.weight_decay, head, args.head_weight_decay)
    if args.curves and test_pairs:
        callbacks += curve_callbacks(args, embedder, head, train_set, test_pairs)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=use_xla(args),
    )
    batches = train_set.batches(
        args.batch_size, preprocess=preprocess, shuffle_buffer=10_000, seed=args.seed, drop_remainder=True
    )
    history = model.fit(batches, epochs=args.epochs, verbose=2, callbacks=callbacks)
    return embedder, history, (callbacks or [None])[0]


def evaluate(args, embedder, test_set):
    preprocess = data.face_preprocessing(args.image_size, args.channels)
    pairs = test_set.verification_pairs(args.num_pairs, seed=args.seed, preprocess=preprocess).batch(256)
    first, second, same = [], [], []
    # NumPy batches serve every Keras backend; copied, because torch.compile (a PyTorch model compiled with
    # jit_compile=True) rejects NumPy views of TensorFlow's memory, which is what as_numpy_iterator yields
    for a, b, s in pairs.as_numpy_iterator():
        first.append(embedder.predict_on_batch(np.array(a)))
        second.append(embedder.predict_on_batch(np.array(b)))
        same.append(s)
    report = evaluation.verification_report(
        np.concatenate(first), np.concatenate(second), np.concatenate(same),
        num_folds=min(10, args.num_pairs // 2), far_targets=(1e-3, 1e-2),
    )
    return report, next(pairs.as_numpy_iterator())[0]


def export(embedder, output_dir, sample_images):
    """Writes the embedding network; returns `(format, path, max |difference| after reloading it)`.

    A SavedModel where the Keras backend can write one, else (PyTorch) an ONNX file; either is reloaded and
    served by `keras_margin.serving.Embedder` (TensorFlow, onnxruntime).
    """
    file_format = keras_margin.export.FORMATS_BY_BACKEND[keras.backend.backend()][0]
    path = output_dir / ("embedder_savedmodel" if file_format == "tf_saved_model" else "embedder.onnx")
    exported = keras_margin.export.export_embedding_model(embedder, path, normalize=True, format=file_format)
    sample_images = np.asarray(sample_images, np.float32)
    served = Embedder(path)(sample_images)
    expected = np.asarray(exported.predict_on_batch(sample_images))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    return file_format, path, float(np.max(np.abs(served - expected)))


def folds(text):
    """"0-6" → {0, ..., 6}; "7,9" → {7, 9}."""
    chosen = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        chosen.update(range(int(low), int(high or low) + 1))
    return chosen


def read_pairs_csv(args):
    """`(train identity names, test pairs)` of a fold-split pairs.csv; paths made absolute."""
    folder = os.path.dirname(os.path.abspath(args.pairs_csv))
    with open(args.pairs_csv) as f:
        rows = list(csv.DictReader(f))
    train_folds, test_folds = folds(args.train_folds), folds(args.test_folds)
    train_names = sorted({os.path.basename(os.path.dirname(r[key])) for r in rows if int(r["fold"]) in train_folds
                          for key in ("path1", "path2")})
    test_pairs = [(os.path.join(folder, r["path1"]), os.path.join(folder, r["path2"]), r["same"] == "1")
                  for r in rows if int(r["fold"]) in test_folds]
    test_names = {os.path.basename(os.path.dirname(p)) for a, b, _ in test_pairs for p in (a, b)}
    if test_names & set(train_names):
        raise SystemExit(f"--train-folds and --test-folds share identities: {sorted(test_names & set(train_names))[:5]}")
    return train_names, test_pairs


def evaluate_pairs_csv(args, embedder, test_pairs):
    """Flip-fused embeddings of both images of every pair, then the k-fold verification report."""
    first, second, same = zip(*test_pairs)
    embeddings = [evaluation.flip_embeddings(embedder, load_images(args, paths)) for paths in (first, second)]
    report = evaluation.verification_report(*embeddings, np.array(same), num_folds=10, far_targets=(1e-3, 1e-2))
    return report, load_images(args, first[:8])


def evaluate_litert_int8(args, embedder, train_set, test_pairs, output_dir):
    """Exports an int8 LiteRT embedder and runs the verification of the test pairs with it."""
    path = output_dir / "embedder_int8.tflite"
    preprocess = data.face_preprocessing(args.image_size, args.channels)
    calibration = next(iter(train_set.batches(256, preprocess, labels_as_input=False, shuffle=True, seed=args.seed)))
    keras_margin.export.export_embedding_model(embedder, path, format="litert", quantize="int8",
                                               representative_images=calibration[0].numpy())
    return verify_with_export(args, path, test_pairs), path


def evaluate_bfloat16_export(args, embedder, test_pairs, output_dir):
    """Exports a bfloat16-trunk SavedModel and runs the verification of the test pairs with it."""
    path = output_dir / "embedder_bfloat16_savedmodel"
    keras_margin.export.export_embedding_model(embedder, path, precision="bfloat16")
    return verify_with_export(args, path, test_pairs), path


def verify_with_export(args, path, test_pairs):
    """The verification report of the test pairs, embedded by the exported model at `path` as it is served.

    `keras_margin.serving.Embedder` runs the export in its runtime; the embeddings are flip-fused, as in
    `evaluate_pairs_csv`.
    """
    served = Embedder(path)

    def embed(paths):
        images = load_images(args, paths)
        both = served(images) + served(images[:, :, ::-1])
        return both / np.linalg.norm(both, axis=1, keepdims=True)

    first, second, same = zip(*test_pairs)
    return evaluation.verification_report(embed(first), embed(second), np.array(same), num_folds=10,
                                          far_targets=(1e-3, 1e-2))


def load_images(args, paths):
    """The images at `paths` as the model's input, one array (`keras_margin.data.load_image_batch`)."""
    return data.load_image_batch(paths, args.image_size, args.channels)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision:
        keras.config.set_dtype_policy("mixed_bfloat16")
    output_dir = pathlib.Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report = None
    with tfds.testing.mock_data(num_examples=200) if args.mock_data else contextlib.nullcontext():
        identities = load_identities(args)
        if args.max_images:
            identities = identities.take(args.max_images)
        if args.pairs_csv:
            train_names, test_pairs = read_pairs_csv(args)
            index = {name: i for i, name in enumerate(identities.class_names)}
            missing = [name for name in train_names if name not in index]
            if missing:
                raise SystemExit(f"{args.pairs_csv} names identities that {args.data} lacks, e.g. {missing[:3]}")
            train_set = identities.select_identities([index[n] for n in train_names], name="train folds")
            test_set, held_out = None, []
            print(f"{identities}: {train_set.num_classes} identities of folds {args.train_folds} train, "
                  f"{len(test_pairs)} pairs of folds {args.test_folds} verify", flush=True)
        elif args.test_identities > 0:
            train_set, test_set = identities.split_identities(test_fraction=args.test_identities, seed=args.seed)
            held_out = test_set.class_names
            print(f"{identities}: {train_set.num_classes} training identities, "
                  f"{len(held_out)} held out for verification", flush=True)
        else:
            train_set, test_set, held_out = identities, None, []
            print(f"{identities}: {train_set.num_classes} training identities, "
                  f"verification on {', '.join(args.val) or 'nothing'}", flush=True)
        if args.curves and not args.pairs_csv:
            raise SystemExit("--curves needs --pairs-csv (the pairs it verifies after every epoch)")
        embedder, history, bin_callback = train(args, train_set, test_pairs if args.pairs_csv else None)
        if args.pairs_csv:
            report, sample_images = evaluate_pairs_csv(args, embedder, test_pairs)
        elif test_set is not None:
            report, sample_images = evaluate(args, embedder, test_set)
        else:
            preprocess = data.face_preprocessing(args.image_size, args.channels)
            sample_images = next(train_set.batches(8, preprocess, labels_as_input=False).as_numpy_iterator())[0]

    summary = {
        "args": vars(args),
        "dataset": identities.name,
        "training_identities": train_set.num_classes,
        "held_out_identities": held_out,
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
    }
    if report is not None:
        tar = ", ".join(f"TAR@FAR={far:g}: {value:.4f}" for far, value in report["tar_at_far"].items())
        print(f"verification on {report['num_pairs']} pairs of unseen identities: "
              f"accuracy {report['accuracy']:.4f} ± {report['accuracy_std']:.4f}, AUC {report['auc']:.4f}, "
              f"EER {report['eer']:.4f}, {tar}")
        summary["verification"] = json_report(report)
        if args.litert_int8 and args.pairs_csv:
            quantized, path = evaluate_litert_int8(args, embedder, train_set, test_pairs, output_dir)
            summary["litert_int8"] = {**json_report(quantized), "path": str(path),
                                      "accuracy_change": quantized["accuracy"] - report["accuracy"]}
            print(f"int8 LiteRT ({path}): accuracy {quantized['accuracy']:.4f} "
                  f"({quantized['accuracy'] - report['accuracy']:+.4f}), "
                  f"TAR@FAR=0.01: {quantized['tar_at_far'][0.01]:.4f}")
        if args.export_bfloat16 and args.pairs_csv:
            low, path = evaluate_bfloat16_export(args, embedder, test_pairs, output_dir)
            summary["bfloat16_export"] = {**json_report(low), "path": str(path),
                                          "accuracy_change": low["accuracy"] - report["accuracy"]}
            print(f"bfloat16 SavedModel ({path}): accuracy {low['accuracy']:.4f} "
                  f"({low['accuracy'] - report['accuracy']:+.4f}), TAR@FAR=0.01: {low['tar_at_far'][0.01]:.4f}")
    if bin_callback is not None:
        summary["bin_verification"] = {name: json_report(r) for name, r in bin_callback.reports.items()}
    file_format, path, difference = export(embedder, output_dir, sample_images)
    print(f"exported the embedding network to {path} (reloaded: max |difference| {difference:.2e})")
    summary.update(export_format=file_format, exported=str(path), export_max_abs_difference=difference,
                   seconds=time.perf_counter() - start)
    (output_dir / "report.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {output_dir / 'report.json'}")


def json_report(report):
    """A verification report without its ROC arrays, with string FAR keys."""
    summary = {key: value for key, value in report.items() if key != "roc"}
    summary["tar_at_far"] = {str(k): v for k, v in report["tar_at_far"].items()}
    return summary


if __name__ == "__main__":
    main()
