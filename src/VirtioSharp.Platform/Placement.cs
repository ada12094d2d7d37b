namespace VirtioSharp.Platform;

/// <summary>Where a device sits in the simulated machine.</summary>
public sealed record Placement
{
    /// <summary>The device's DMA goes through the IOMMU.</summary>
    public bool BehindIommu { get; init; }
    /// <summary>The IOMMU passes the device's DMA through untranslated.</summary>
    public bool IommuBypass { get; init; }
    /// <summary>Whether the device really snoops the CPU cache.</summary>
    public bool Coherent { get; init; } = true;
    /// <summary>Fixed GPA→bus offset (dma-ranges) on the device's bus.</summary>
    public ulong DmaOffset { get; init; }
}
