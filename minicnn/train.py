"""Training: cross-entropy loss, SGD with momentum and weight decay, Adam, and a fit loop.

One training step is the whole story of back-propagation:
    scores = net.forward(x); loss = cross_entropy(scores, y)
    net.backward(cross_entropy_backward(scores, y)); optimizer.step()
"""
import numpy as np
from tqdm.auto import tqdm

from . import ops
from .checks import check_array, check_choice, check_int_at_least, check_labels, check_number


class SGD:
    """v <- momentum * v + (g + weight_decay * p);  p <- p - lr * v."""

    def __init__(self, net, lr=0.01, momentum=0.9, weight_decay=0.0):
        self.net, self.lr = net, check_number(lr, "lr", low=0, low_open=True)
        self.momentum = check_number(momentum, "momentum", low=0, high=1)
        self.weight_decay = check_number(weight_decay, "weight_decay", low=0)
        self.velocity = {name: np.zeros_like(p) for name, p in net.named_parameters().items()}

    def step(self):
        grads = self.net.named_gradients()
        for name, param in self.net.named_parameters().items():
            g = grads[name] + self.weight_decay * param
            self.velocity[name] = self.momentum * self.velocity[name] + g
            param -= (self.lr * self.velocity[name]).astype(param.dtype)


class Adam:
    """Adam (Kingma & Ba 2015): bias-corrected running means of g and g^2; decoupled weight decay (AdamW)."""

    def __init__(self, net, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.net, self.lr = net, check_number(lr, "lr", low=0, low_open=True)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = tuple(check_number(b, f"betas[{i}]", low=0, high=1, high_open=True) for i, b in enumerate(betas))
        self.eps = check_number(eps, "eps", low=0, low_open=True)
        self.weight_decay = check_number(weight_decay, "weight_decay", low=0)
        params = net.named_parameters()
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}
        self.t = 0

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        grads = self.net.named_gradients()
        for name, param in self.net.named_parameters().items():
            g = grads[name]
            self.m[name] = b1 * self.m[name] + (1 - b1) * g
            self.v[name] = b2 * self.v[name] + (1 - b2) * g * g
            m_hat = self.m[name] / (1 - b1 ** self.t)
            v_hat = self.v[name] / (1 - b2 ** self.t)
            update = m_hat / (np.sqrt(v_hat) + self.eps) + self.weight_decay * param
            param -= (self.lr * update).astype(param.dtype)


# loss name -> (loss, its gradient with respect to the scores): one label per image (N,) or per pixel (N, H, W)
LOSSES = {"cross_entropy": (ops.cross_entropy, ops.cross_entropy_backward),
          "pixel_cross_entropy": (ops.pixel_cross_entropy, ops.pixel_cross_entropy_backward)}


def train_step(net, optimizer, images, labels, loss="cross_entropy"):
    """One mini-batch: forward, loss, backward, update. Returns (loss, number of labels predicted right):
    images right for "cross_entropy", pixels right for "pixel_cross_entropy" (scores (N, K, H, W))."""
    loss_function, loss_gradient = LOSSES[check_choice(loss, "loss", LOSSES)]
    net.zero_grad()
    scores = net.forward(images)
    value = loss_function(scores, labels)
    net.backward(loss_gradient(scores, labels))
    optimizer.step()
    return float(value), int((scores.argmax(axis=1) == labels).sum())


def minibatches(images, labels, batch_size, rng=None):
    """Yield (images, labels) mini-batches; shuffled when an rng is given."""
    order = np.arange(len(labels)) if rng is None else rng.permutation(len(labels))
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        yield images[chosen], labels[chosen]


def train_epoch(net, optimizer, batches, total=None, description="train", progress=True, loss="cross_entropy"):
    """Train on an iterable of (images, labels) batches; returns (mean loss, accuracy). The accuracy counts
    labels: images, or pixels with loss="pixel_cross_entropy"."""
    net.train()
    loss_sum, correct, seen, labels_seen = 0.0, 0, 0, 0
    bar = tqdm(batches, total=total, desc=description, disable=not progress, leave=False)
    for images, labels in bar:
        value, right = train_step(net, optimizer, images, labels, loss)
        loss_sum += value * len(labels)
        correct += right
        seen += len(labels)
        labels_seen += labels.size
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / labels_seen:.3f}")
    net.eval()
    return loss_sum / max(seen, 1), correct / max(labels_seen, 1)


def predict(net, images, batch_size=256):
    """Pre-softmax scores for any number of images, in batches (eval mode)."""
    net.eval()
    return np.concatenate([net.forward(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def accuracy(net, images, labels, batch_size=256):
    """Fraction of images whose highest score is their label."""
    return float((predict(net, images, batch_size).argmax(axis=1) == labels).mean())


def confusion_matrix(predicted, target, num_classes):
    """counts[t, p] = how many pixels (or images) of true class t were predicted as p; (K, K) int64.
    predicted and target: integer arrays of one shape, values in [0, num_classes)."""
    num_classes = check_int_at_least(num_classes, "num_classes", 1)
    for name, values in (("predicted", predicted), ("target", target)):
        check_labels(np.ravel(values), np.size(values), num_classes, name)
    if np.shape(predicted) != np.shape(target):
        raise ValueError(f"predicted and target must have one shape, got {np.shape(predicted)} and {np.shape(target)}")
    pairs = np.ravel(target).astype(np.int64) * num_classes + np.ravel(predicted)
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion):
    """Intersection over union of every class from a confusion matrix: counts[k, k] / (row k + column k
    - counts[k, k]); NaN for a class neither present nor predicted."""
    confusion = np.asarray(confusion)
    intersection = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / np.maximum(union, 1), np.nan)


def segmentation_confusion(net, images, targets, num_classes, batch_size=64):
    """The confusion matrix of a segmentation net's per-pixel argmax over images (N, C, H, W) against
    targets (N, H, W), accumulated batch by batch (eval mode); mean IoU = np.nanmean(iou_per_class(...))."""
    net.eval()
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for start in range(0, len(images), batch_size):
        predicted = net.forward(images[start:start + batch_size]).argmax(axis=1)
        confusion += confusion_matrix(predicted, targets[start:start + batch_size], num_classes)
    return confusion


def fit(net, optimizer, images, labels, epochs, batch_size=64, seed=0, progress=True):
    """Train for `epochs` passes over (images, labels), shuffled by np.random.default_rng(seed).

    Returns a history: a list of (mean loss, training accuracy) per epoch. Same seed, same run.
    """
    check_array(images, "images", ndim=4)
    check_labels(labels, images.shape[0], np.iinfo(np.int64).max)
    if len(labels) == 0:
        raise ValueError(f"images is an empty batch (shape {images.shape}): there is nothing to train on")
    epochs = check_int_at_least(epochs, "epochs", 1)
    batch_size = check_int_at_least(batch_size, "batch_size", 1)
    if optimizer.net is not net:
        raise ValueError("optimizer was built for another network: make it with this one, e.g. Adam(net)")
    rng = np.random.default_rng(seed)
    history = []
    steps = -(-len(labels) // batch_size)
    for epoch in range(epochs):
        batches = minibatches(images, labels, batch_size, rng)
        history.append(train_epoch(net, optimizer, batches, steps, f"epoch {epoch + 1}/{epochs}", progress))
    return history
