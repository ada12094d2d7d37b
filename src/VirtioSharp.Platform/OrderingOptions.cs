using VirtioSharp.Dma;

namespace VirtioSharp.Platform;

/// <summary>
/// The simulated machine's memory-ordering model (<see cref="StoreBufferModel"/>): how strong a barrier must be to order
/// stores between the CPU and the device, and how often buffered stores drain on their own. Seeded: a run repeats exactly.
/// </summary>
public sealed record OrderingOptions
{
    /// <summary>Seed of the model's choices (which buffered stores drain when, when the driver polls mid-turn).</summary>
    public int Seed { get; init; } = 1;
    /// <summary>
    /// The barrier that orders stores between CPU and device: <see cref="BarrierKind.Smp"/> for a device that is software
    /// on a CPU of the same coherence domain (vhost, QEMU), <see cref="BarrierKind.Platform"/> for a weakly ordered
    /// hardware-like device that sees only what platform barriers (dma_wmb / wmb) push out — the devices
    /// VIRTIO_F_ORDER_PLATFORM exists for (virtio 1.2 §6; Linux virtio_ring.c weak_barriers).
    /// </summary>
    public BarrierKind DeviceNeeds { get; init; } = BarrierKind.Smp;
    /// <summary>Chance that one buffered store drains at a drain point (a device access, a machine poll).</summary>
    public double DrainChance { get; init; } = 0.25;
    /// <summary>
    /// Chance that, at a device access, the driver polls its used rings right then (<see cref="StoreBufferModel.Observer"/>),
    /// as a busy-polling driver on another CPU would: what it sees between two device stores is what a real one could.
    /// </summary>
    public double ObserveChance { get; init; } = 0.2;
}
