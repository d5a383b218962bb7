"""Where each data set comes from: official files, URLs, checksums, and what its pool looks like.

One table, so the loaders, the downloader and `miakit datasets list` agree on every fact. Every file
lives in `<data dir>/<folder>/<file name>`, exactly as distributed (archives are read in place).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from miakit.data.pool import Pool


@dataclass(frozen=True)
class RemoteFile:
    """One file as officially distributed.

    `md5` is the published checksum of the file itself. `content_md5` is the checksum of a gzip
    file's decompressed bytes: a copy that was re-compressed (same content, other bytes) still
    passes. A file with neither is checked by its format's own integrity checks (gzip and zip CRCs).
    """

    name: str
    urls: tuple[str, ...] = ()
    md5: str | None = None
    content_md5: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """A registered data set: its files and the shape of the pool its loader builds."""

    name: str
    title: str
    folder: str
    files: tuple[RemoteFile, ...]
    homepage: str
    records: int
    test_records: int
    num_classes: int
    shape: tuple[int, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def pool(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_test: np.ndarray | None = None,
        y_test: np.ndarray | None = None,
        class_names: tuple[str, ...] = (),
    ) -> Pool:
        """The pool of these records, with this data set's name, classes and published
        normalization constants."""
        return Pool(
            self.name, x, y, self.num_classes, x_test, y_test, self.mean, self.std, class_names
        )


def _idx_files(base_urls: tuple[str, ...], sums: dict[str, tuple[str, str]]) -> tuple:
    return tuple(
        RemoteFile(name, tuple(base + name for base in base_urls), md5, content)
        for name, (md5, content) in sums.items()
    )


_MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_GTSRB_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
_SHOKRI_URLS = (
    "https://github.com/privacytrustlab/datasets/raw/master/",
    "https://www.comp.nus.edu.sg/~reza/files/",
)
_UCI_ADULT = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"


def _shokri(name: str, md5: str | None = None) -> RemoteFile:
    return RemoteFile(name, tuple(base + name for base in _SHOKRI_URLS), md5)


SOURCES: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo(
            "digits",
            "scikit-learn digits (8×8)",
            "digits",
            (),
            "shipped inside scikit-learn (sklearn.datasets.load_digits)",
            1_797,
            0,
            10,
            (64,),
        ),
        DatasetInfo(
            "breast-cancer",
            "scikit-learn breast cancer (Wisconsin diagnostic)",
            "breast-cancer",
            (),
            "shipped inside scikit-learn (sklearn.datasets.load_breast_cancer)",
            569,
            0,
            2,
            (30,),
        ),
        DatasetInfo(
            "mnist",
            "MNIST",
            "mnist",
            _idx_files(
                _MNIST_URLS,
                {
                    "train-images-idx3-ubyte.gz": (
                        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                        "6bbc9ace898e44ae57da46a324031adb",
                    ),
                    "train-labels-idx1-ubyte.gz": (
                        "d53e105ee54ea40749a09fcbcd1e9432",
                        "a25bea736e30d166cdddb491f175f624",
                    ),
                    "t10k-images-idx3-ubyte.gz": (
                        "9fb629c4189551a2d022fa330f9573f3",
                        "2646ac647ad5339dbf082846283269ea",
                    ),
                    "t10k-labels-idx1-ubyte.gz": (
                        "ec29112dd5afa0611ce80d1b7f02629c",
                        "27ae3e4e09519cfbb04c329615203637",
                    ),
                },
            ),
            "http://yann.lecun.com/exdb/mnist/",
            60_000,
            10_000,
            10,
            (28, 28, 1),
            (0.1307,),
            (0.3081,),
        ),
        DatasetInfo(
            "fashion-mnist",
            "Fashion-MNIST",
            "fashion_mnist",
            _idx_files(
                _FASHION_URLS,
                {
                    "train-images-idx3-ubyte.gz": (
                        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                        "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                    ),
                    "train-labels-idx1-ubyte.gz": (
                        "25c81989df183df01b3e8a0aad5dffbe",
                        "9018921c3c673c538a1fc5bad174d6f9",
                    ),
                    "t10k-images-idx3-ubyte.gz": (
                        "bef4ecab320f06d8554ea6380940ec79",
                        "8181f5470baa50b63fa0f6fddb340f0a",
                    ),
                    "t10k-labels-idx1-ubyte.gz": (
                        "bb300cfdad3c16e7a12a480ee83cd310",
                        "15d484375f8d13e6eb1aabb0c3f46965",
                    ),
                },
            ),
            "https://github.com/zalandoresearch/fashion-mnist",
            60_000,
            10_000,
            10,
            (28, 28, 1),
            (0.2860,),
            (0.3530,),
        ),
        DatasetInfo(
            "cifar10",
            "CIFAR-10",
            "cifar10",
            (
                RemoteFile(
                    "cifar-10-python.tar.gz",
                    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                    "c58f30108f718f92721af3b95e74349a",
                ),
            ),
            "https://www.cs.toronto.edu/~kriz/cifar.html",
            50_000,
            10_000,
            10,
            (32, 32, 3),
            (0.4914, 0.4822, 0.4465),
            (0.2470, 0.2435, 0.2616),
        ),
        DatasetInfo(
            "cifar100",
            "CIFAR-100",
            "cifar100",
            (
                RemoteFile(
                    "cifar-100-python.tar.gz",
                    ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                    "eb9058c3a382ffc7106e4002c42a8d85",
                ),
            ),
            "https://www.cs.toronto.edu/~kriz/cifar.html",
            50_000,
            10_000,
            100,
            (32, 32, 3),
            (0.5071, 0.4865, 0.4409),
            (0.2673, 0.2564, 0.2762),
        ),
        DatasetInfo(
            "cifar10-jpeg",
            "CIFAR-10 (JPEG q75)",
            "cifar10_jpeg_lossy",
            (
                RemoteFile("cifar10-images-jpg-q75.tar.gz", md5="39eeb9170fa04bc0bc4643091ee1f95e"),
                RemoteFile(
                    "cifar10_labels_original_order.npz", md5="6b2ab5f879aa02aad07c443de1b79977"
                ),
            ),
            "no public download: a lossy JPEG copy of CIFAR-10 shared with the project",
            50_000,
            10_000,
            10,
            (32, 32, 3),
            (0.4914, 0.4822, 0.4465),
            (0.2470, 0.2435, 0.2616),
        ),
        DatasetInfo(
            "cinic10",
            "CINIC-10",
            "cinic10",
            (
                RemoteFile(
                    "CINIC-10.tar.gz",
                    ("https://datashare.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz",),
                ),
            ),
            "https://github.com/BayesWatch/cinic-10",
            90_000,
            90_000,
            10,
            (32, 32, 3),
            (0.47889522, 0.47227842, 0.43047404),
            (0.24205776, 0.23828046, 0.25874835),
        ),
        DatasetInfo(
            "gtsrb",
            "GTSRB (resized to 32×32)",
            "gtsrb",
            (
                RemoteFile(
                    "GTSRB_Final_Training_Images.zip",
                    (_GTSRB_URL + "GTSRB_Final_Training_Images.zip",),
                    "f33fd80ac59bff73c82d25ab499e03a3",
                ),
                RemoteFile(
                    "GTSRB_Final_Test_Images.zip",
                    (_GTSRB_URL + "GTSRB_Final_Test_Images.zip",),
                    "c7e4e6327067d32654124b0fe9e82185",
                ),
                RemoteFile(
                    "GTSRB_Final_Test_GT.zip",
                    (_GTSRB_URL + "GTSRB_Final_Test_GT.zip",),
                    "fe31e9c9270bbcd7b84b7f21a9d9d9e5",
                ),
            ),
            "https://benchmark.ini.rub.de/gtsrb_dataset.html",
            39_209,
            12_630,
            43,
            (32, 32, 3),
            (0.3403, 0.3121, 0.3214),
            (0.2724, 0.2608, 0.2669),
        ),
        DatasetInfo(
            "purchase100",
            "Purchase-100",
            "purchase100",
            (_shokri("dataset_purchase.tgz"),),
            "https://github.com/privacytrustlab/datasets",
            197_324,
            0,
            100,
            (600,),
        ),
        DatasetInfo(
            "texas100",
            "Texas-100",
            "texas100",
            (_shokri("dataset_texas.tgz"),),
            "https://github.com/privacytrustlab/datasets",
            67_330,
            0,
            100,
            (6169,),
        ),
        DatasetInfo(
            "location",
            "Location (Foursquare, Bangkok)",
            "location",
            (_shokri("dataset_location.tgz", "66851c781a61f51b35ead292b5f303e3"),),
            "https://github.com/privacytrustlab/datasets",
            5_010,
            0,
            30,
            (446,),
        ),
        DatasetInfo(
            "adult",
            "UCI Adult (Census Income)",
            "adult",
            (
                RemoteFile(
                    "adult.data", (_UCI_ADULT + "adult.data",), "5d7c39d7b8804f071cdd1f2a7c460872"
                ),
                RemoteFile(
                    "adult.test", (_UCI_ADULT + "adult.test",), "35238206dfdf7f1fe215bbb874adecdc"
                ),
            ),
            "https://archive.ics.uci.edu/dataset/2/adult",
            32_561,
            16_281,
            2,
            (108,),
        ),
    ]
}
