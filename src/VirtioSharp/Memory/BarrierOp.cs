namespace VirtioSharp.Memory;

/// <summary>
/// What a ring barrier orders (Linux virtio_rmb / virtio_wmb / virtio_mb). Its strength is a
/// <see cref="Dma.BarrierKind"/>: SMP orders only CPU-to-CPU, platform also toward a device (virtio 1.2 §6, ORDER_PLATFORM).
/// </summary>
public enum BarrierOp : byte
{
    /// <summary>Earlier loads before later loads.</summary>
    Read,
    /// <summary>Earlier stores visible before later stores (before a store that publishes).</summary>
    Write,
    /// <summary>Earlier loads and stores before later loads and stores (a store, then reading the peer's state).</summary>
    Full,
}
