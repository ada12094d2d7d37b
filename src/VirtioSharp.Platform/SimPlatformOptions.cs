namespace VirtioSharp.Platform;

/// <summary>Configuration of a simulated machine.</summary>
public sealed record SimPlatformOptions
{
    /// <summary>Guest RAM in bytes.</summary>
    public ulong RamSize { get; init; } = 64UL << 20;
    /// <summary>Give the machine an IOMMU.</summary>
    public bool HasIommu { get; init; }
    /// <summary>Protected guest memory; null for an ordinary guest.</summary>
    public ProtectionMode? Protection { get; init; }
    /// <summary>A write-back CPU cache that non-coherent devices do not snoop.</summary>
    public bool CpuCache { get; init; }
    /// <summary>A memory-ordering model (store buffers on CPU and device side); null: stores are seen at once.</summary>
    public OrderingOptions? Ordering { get; init; }
    /// <summary>Size of the shared swiotlb pool (0: none).</summary>
    public ulong BouncePoolSize { get; init; } = 1UL << 20;
}
