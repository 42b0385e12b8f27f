"""Plain numpy loops of tfboltz's train steps: the peers that `bench_all.py` times
each model's epoch against.

Each loop is the algorithm of the tfboltz step it stands beside, written the way a
careful numpy user would write it: float32 arrays, the same matrix products (same
shapes, same count, the two halves of a weight gradient stacked into one product as
tfboltz stacks them), the same Bernoulli draws, the same momentum-SGD update as
``keras.optimizers.SGD`` (``m = momentum * m - lr * g; w += m``) and the same
per-batch metric. What it leaves out is what tfboltz adds for safety only: the
batch check, the divergence guard and the running means of the metrics.

    loop = RBMLoop(784, 1024, pcd=True)
    seconds = time_epochs(loop, x)          # [first, second, ...] epoch seconds
"""

import time

import numpy as np

B = 100
F32 = np.float32


def sigmoid(a):
    """``1 / (1 + exp(-a))`` as ``0.5 tanh(a / 2) + 0.5``, in place (no overflow)."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


class _Loop:
    """Shared parts: the random generator, the parameters and their momenta."""

    lr = 0.001
    momentum = 0.9

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)

    def weights(self, *shape):
        return (0.01 * self.rng.standard_normal(shape)).astype(F32)

    def bernoulli(self, p):
        return (self.rng.random(p.shape, dtype=F32) < p).astype(F32)

    def start_momenta(self):
        self.velocities = [np.zeros_like(p) for p in self.params]

    def update(self, grads):
        for p, g, m in zip(self.params, grads, self.velocities):
            m *= self.momentum
            g *= self.lr
            m -= g
            p += m

    def epoch(self, x, y=None):
        """One pass over `x` (and labels `y`) in a fresh random order."""
        order = self.rng.permutation(len(x))
        for start in range(0, len(x), B):
            idx = order[start:start + B]
            if y is None:
                self.step(x[idx])
            else:
                self.step(x[idx], y[idx])


class RBMLoop(_Loop):
    """CD-1 or PCD-1 (`pcd`, `chains` persistent visible chains holding means, as
    ``tb.RBM``'s default ``sample_visible=False``) of a Bernoulli RBM. With
    `visible_copies` / `hidden_copies` of 2 it is a doubled RBM of DBM pretraining
    (the input to the hidden / visible units is doubled). The metric is the mean
    squared error of the one-step reconstruction, as ``tb.RBM`` logs it."""

    def __init__(self, n_visible, n_hidden, pcd=False, chains=100, visible_copies=1,
                 hidden_copies=1, seed=0):
        super().__init__(seed)
        self.w = self.weights(n_visible, n_hidden)
        self.b, self.c = np.zeros(n_visible, F32), np.zeros(n_hidden, F32)
        self.params = [self.w, self.b, self.c]
        self.start_momenta()
        self.pcd, self.vc, self.hc = pcd, F32(visible_copies), F32(hidden_copies)
        self.chains = self.rng.random((chains, n_visible), dtype=F32) if pcd else None

    def hidden_mean(self, v):
        a = v @ self.w
        if self.vc != 1:
            a *= self.vc
        a += self.c
        return sigmoid(a)

    def visible_mean(self, h):
        u = h @ self.w.T
        if self.hc != 1:
            u *= self.hc
        u += self.b
        return sigmoid(u)

    def step(self, v0):
        n = F32(len(v0))
        h0 = self.hidden_mean(v0)
        recon = self.visible_mean(self.bernoulli(h0))
        if self.pcd:
            v_neg = self.visible_mean(self.bernoulli(self.hidden_mean(self.chains)))
            self.chains = v_neg
        else:
            v_neg = recon
        h_neg = self.hidden_mean(v_neg)
        n_neg = F32(len(v_neg))
        grad_w = np.concatenate([v_neg, v0]).T @ np.concatenate([h_neg / n_neg, -h0 / n])
        grads = [grad_w, v_neg.mean(0) - v0.mean(0), h_neg.mean(0) - h0.mean(0)]
        self.update(grads)
        self.metric = float(np.mean(np.square(v0 - recon)))


class DBMLoop(_Loop):
    """The joint step of a two-hidden-layer Bernoulli DBM as ``tb.DBM`` takes it:
    `n_mean_field` mean-field iterations from the doubled bottom-up pass (their
    largest change computed, as the early stop needs), `k` Gibbs sweeps of `chains`
    sampled particles, the stacked gradients, L2 weight decay, and with `centering`
    the centered gradient (offsets subtracted, bias corrections, offsets moved
    towards the batch means). Metric: the mean squared error of the reconstruction
    from the first hidden layer's means."""

    def __init__(self, sizes=(784, 500, 1000), n_mean_field=5, k=5, chains=100,
                 centering=True, l2=2e-4, centering_rate=0.01, seed=0):
        super().__init__(seed)
        v, h1, h2 = sizes
        self.w1, self.w2 = self.weights(v, h1), self.weights(h1, h2)
        self.b0, self.b1, self.b2 = (np.zeros(s, F32) for s in sizes)
        self.params = [self.w1, self.w2, self.b0, self.b1, self.b2]
        self.start_momenta()
        self.n_mf, self.k, self.l2, self.centering = n_mean_field, k, F32(l2), centering
        self.rate = F32(centering_rate)
        self.offsets = [np.full(s, 0.5, F32) for s in sizes]
        self.particles = [self.bernoulli(np.full((chains, s), 0.5, F32)) for s in sizes]

    def step(self, v):
        w1, w2, b0, b1, b2 = self.params
        n = F32(len(v))
        from_v = v @ w1
        m1 = sigmoid(2 * from_v + b1)
        m2 = sigmoid(m1 @ w2 + b2)
        for _ in range(self.n_mf):
            new1 = sigmoid(from_v + m2 @ w2.T + b1)
            delta = np.max(np.abs(new1 - m1))
            m1 = new1
            new2 = sigmoid(m1 @ w2 + b2)
            delta = max(delta, np.max(np.abs(new2 - m2)))
            m2 = new2
        pv, p1, p2 = self.particles
        for _ in range(self.k):
            p1 = self.bernoulli(sigmoid(pv @ w1 + p2 @ w2.T + b1))
            pv = self.bernoulli(sigmoid(p1 @ w1.T + b0))
            p2 = self.bernoulli(sigmoid(p1 @ w2 + b2))
        self.particles = [pv, p1, p2]
        n_neg = F32(len(pv))
        mu = self.offsets if self.centering else [F32(0)] * 3
        pos, neg = [v, m1, m2], [pv, p1, p2]
        g_w = []
        for i in range(2):
            g_w.append((np.concatenate([neg[i], pos[i]]) - mu[i]).T
                       @ np.concatenate([(neg[i + 1] - mu[i + 1]) / n_neg,
                                         -(pos[i + 1] - mu[i + 1]) / n]))
        g_b = [q.mean(0) - p.mean(0) for p, q in zip(pos, neg)]
        if self.centering:
            g_b[0] -= g_w[0] @ mu[1]
            g_b[1] -= g_w[0].T @ mu[0] + g_w[1] @ mu[2]
            g_b[2] -= g_w[1].T @ mu[1]
        g_w[0] += self.l2 * w1
        g_w[1] += self.l2 * w2
        self.update([*g_w, *g_b])
        if self.centering:
            for o, p in zip(self.offsets, pos):
                o += self.rate * (p.mean(0) - o)
        self.metric = float(np.mean(np.square(v - sigmoid(m1 @ w1.T + b0))))


class DBNLoop(_Loop):
    """The up-down step of ``tb.DBN`` with labels at the top (Hinton, Osindero & Teh
    2006): a sampled recognition pass up, CD-`k` in the top RBM (labels sampled as a
    softmax group), a sampled generative pass down from its negative states, and the
    delta rules for the generative and the recognition weights. Metrics: the mean
    squared generative, recognition and top reconstruction errors."""

    def __init__(self, sizes=(784, 500, 500, 2000), num_classes=10, k=3, seed=0):
        super().__init__(seed)
        v, h1, h2, top = sizes
        self.k, self.n_classes, self.n_feat = k, num_classes, h2
        self.g1, self.g2 = self.weights(v, h1), self.weights(h1, h2)   # generative
        self.r1, self.r2 = self.weights(v, h1), self.weights(h1, h2)   # recognition
        self.t = self.weights(h2 + num_classes, top)
        self.gb0, self.gb1 = np.zeros(v, F32), np.zeros(h1, F32)
        self.rb1, self.rb2 = np.zeros(h1, F32), np.zeros(h2, F32)
        self.tb, self.tc = np.zeros(h2 + num_classes, F32), np.zeros(top, F32)
        self.params = [self.g1, self.g2, self.r1, self.r2, self.t, self.gb0, self.gb1,
                       self.rb1, self.rb2, self.tb, self.tc]
        self.start_momenta()
        self.eye = np.eye(num_classes, dtype=F32)

    def top_visible_sample(self, h):
        u = h @ self.t.T + self.tb
        feats = self.bernoulli(sigmoid(u[:, :self.n_feat]))
        logits = u[:, self.n_feat:]
        p = np.exp(logits - logits.max(1, keepdims=True))
        cdf = np.cumsum(p, 1)
        draw = self.rng.random((len(h), 1), dtype=F32) * cdf[:, -1:]
        labels = self.eye[np.minimum((cdf < draw).sum(1), self.n_classes - 1)]
        return np.concatenate([feats, labels], 1)

    def step(self, v, y):
        n = F32(len(v))
        wake1 = self.bernoulli(sigmoid(v @ self.r1 + self.rb1))
        wake2 = self.bernoulli(sigmoid(wake1 @ self.r2 + self.rb2))
        vis_pos = np.concatenate([wake2, self.eye[y]], 1)
        h_pos = sigmoid(vis_pos @ self.t + self.tc)
        h = self.bernoulli(h_pos)
        for _ in range(self.k):
            vis_neg = self.top_visible_sample(h)
            h_mean = sigmoid(vis_neg @ self.t + self.tc)
            h = self.bernoulli(h_mean)
        g_t = np.concatenate([vis_neg, vis_pos]).T @ np.concatenate([h_mean / n, -h_pos / n])
        g_tb, g_tc = vis_neg.mean(0) - vis_pos.mean(0), h_mean.mean(0) - h_pos.mean(0)
        # Sleep: down from the top RBM's negative states.
        sleep2 = vis_neg[:, :self.n_feat]
        sleep1 = self.bernoulli(sigmoid(sleep2 @ self.g2.T + self.gb1))
        sleep0 = sigmoid(sleep1 @ self.g1.T + self.gb0)
        # Generative weights: reconstruct the wake states from above.
        err0 = v - sigmoid(wake1 @ self.g1.T + self.gb0)
        err1 = wake1 - sigmoid(wake2 @ self.g2.T + self.gb1)
        g_g1, g_g2 = -(err0.T @ wake1) / n, -(err1.T @ wake2) / n
        g_gb0, g_gb1 = -err0.mean(0), -err1.mean(0)
        # Recognition weights: infer the sleep states from below.
        e1 = sleep1 - sigmoid(sleep0 @ self.r1 + self.rb1)
        e2 = sleep2 - sigmoid(sleep1 @ self.r2 + self.rb2)
        g_r1, g_r2 = -(sleep0.T @ e1) / n, -(sleep1.T @ e2) / n
        self.update([g_g1, g_g2, g_r1, g_r2, g_t, g_gb0, g_gb1, -e1.mean(0), -e2.mean(0),
                     g_tb, g_tc])
        self.metric = (float(np.mean(np.square(err0)) + np.mean(np.square(err1))),
                       float(np.mean(np.square(e1)) + np.mean(np.square(e2))),
                       float(np.mean(np.square(vis_pos - vis_neg))))


def time_epochs(loop, x, y=None, epochs=4):
    """Seconds of each of `epochs` epochs of `loop` over `x` (and `y`)."""
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        loop.epoch(x, y)
        seconds.append(time.perf_counter() - start)
    return seconds
