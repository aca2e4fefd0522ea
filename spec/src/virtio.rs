//! Virtio 1.2 split-virtqueue structures (virtio spec v1.2 §2.7).
