namespace VirtioSharp.Queues;

/// <summary>
/// A used element (split, virtio 1.2 §2.7.8) or used descriptor (packed, §2.8.7) the device has produced but not yet
/// published, because the ring was paused while its translation was being fetched (<see cref="Memory.MemStatus.Interrupted"/>).
/// <paramref name="Id"/> is the chain's head (split) or buffer id (packed), <paramref name="Len"/> the bytes written,
/// <paramref name="Slots"/> how many ring positions it covers: 1 for split, a batch's chain count for IN_ORDER batches
/// (§2.7.9), the chain's descriptors for packed.
/// </summary>
public readonly record struct UsedElement(ushort Id, uint Len, ushort Slots);
